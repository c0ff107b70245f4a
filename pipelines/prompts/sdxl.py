"""SDXL prompts as A1111 encodes them: the weighted 75-token chunks of pipelines.prompts.encoding read by both text
encoders (CLIP ViT-L and OpenCLIP ViT-bigG, each chunking the text with its own tokenizer), each chunk a 77-token
window. Each encoder gives the hidden states of the layer diffusers uses (the penultimate; clip skip N goes N - 1
layers further down, with no final layer norm, as diffusers' `encode_prompt(clip_skip=N - 1)`), weighted per token
with each chunk's mean restored; the two are laid side by side and the chunks end to end. The pooled embedding is
the second encoder's projection of the first chunk, as A1111 takes it. torch is imported where it runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.prompts.encoding import (
    Chunk,
    Conditioning,
    clip_conditioning,
    end_to_end,
    hidden_layer,
    weighted,
    window_ids,
)

if TYPE_CHECKING:
    import torch


def sdxl_conditioning(pipe: Any, prompt: str, negative: str, steps: int, clip_skip: int, warnings: list[str], *,
                      expand: Callable[[str, Any], str] | None = None) -> Conditioning:
    """clip_conditioning with SDXL's encoders: every stretch's embeddings and pooled embeddings."""
    tokenizers = [tokenizer for tokenizer, _ in _encoders(pipe)]
    return clip_conditioning(pipe, prompt, negative, steps, clip_skip, warnings, tokenizers=tokenizers,
                             encode_chunks=encode_sdxl, expand=expand)


def encode_sdxl(pipe: Any, chunks: Sequence[Sequence[Chunk]], clip_skip: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One text's chunks (one list per encoder, of one length) → ((1, 77 × chunks, D1 + D2), (1, P))."""
    import torch

    states = []
    for (tokenizer, encoder), own in zip(_encoders(pipe), chunks, strict=True):
        out = encoder(window_ids(tokenizer, own, encoder.device), output_hidden_states=True)
        states.append(weighted(hidden_layer(out, clip_skip, below=1), own))
    pooled = out.text_embeds[:1]  # the last encoder is the one with the projection; its first chunk's, as A1111
    dtype = pipe.unet.dtype
    return end_to_end(torch.cat(states, dim=-1)).to(dtype), pooled.to(dtype)


def _encoders(pipe: Any) -> list[tuple[Any, Any]]:
    """(tokenizer, text encoder) pairs: CLIP ViT-L then OpenCLIP ViT-bigG; a refiner has the second alone."""
    pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
    return [(tokenizer, encoder) for tokenizer, encoder in pairs if encoder is not None]
