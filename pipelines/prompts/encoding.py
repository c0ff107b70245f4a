"""Prompts to text-encoder conditioning as A1111 builds it for CLIP models: the emphasis weights applied per token,
75-token chunks (a BREAK or a comma near the end starts the next one), clip skip, and one conditioning per stretch
of steps for prompt editing and alternation. torch is imported where it runs: the server imports the module too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.prompts.syntax import emphasis, schedule

if TYPE_CHECKING:
    import torch

MAX_TOKENS = 75  # CLIP's 77-token window minus the start and end tokens
MAX_CHUNKS = 8  # up to 600 tokens
COMMA_BACKTRACK = 20  # a chunk that fills up ends after its last comma when that is this close to the end (A1111's)


@dataclass(frozen=True)
class Chunk:
    ids: list[int]
    weights: list[float]


def plain_text(prompt: str, steps: int) -> str:
    """What the words of a prompt are without its syntax (for encoders that take no weights): the text of its
    first step, unweighted."""
    return "".join(run.text for run in emphasis(schedule(prompt, steps)[0][1]) if not run.is_break)


def weighted_chunks(tokenizer: Any, text: str, name: str, warnings: list[str]) -> list[Chunk]:
    """`text` (one step's prompt) as chunks of at most 75 tokens with each token's emphasis weight."""
    comma = tokenizer.convert_tokens_to_ids(",</w>") if hasattr(tokenizer, "convert_tokens_to_ids") else None
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    total = 0

    def close() -> None:
        chunks.append(Chunk(list(ids), list(weights)))
        ids.clear()
        weights.clear()

    for run in emphasis(text):
        if run.is_break:
            close()
            continue
        for token in (tokenizer(run.text, add_special_tokens=False).input_ids if run.text else []):
            total += 1
            if len(ids) == MAX_TOKENS:
                last_comma = max((i for i, t in enumerate(ids) if t == comma), default=-1)
                if last_comma >= 0 and MAX_TOKENS - 1 - last_comma <= COMMA_BACKTRACK:
                    rest, rest_weights = ids[last_comma + 1:], weights[last_comma + 1:]
                    del ids[last_comma + 1:], weights[last_comma + 1:]
                    close()
                    ids += rest
                    weights += rest_weights
                else:
                    close()
            ids.append(token)
            weights.append(run.weight)
    if ids or not chunks:
        close()
    if len(chunks) > MAX_CHUNKS:
        warnings.append(f"the {name} is {total} tokens; only the first {MAX_CHUNKS * MAX_TOKENS} were used")
        chunks = chunks[:MAX_CHUNKS]
    return chunks


def encode(pipe: Any, chunks: Sequence[Chunk], clip_skip: int) -> torch.Tensor:
    """Each chunk as its own 77-token window (start, tokens, end, padding), encoded, weighted and laid end to end:
    (1, 77 × chunks, D). Clip skip N takes the N-th layer from the end through the final layer norm, as A1111. The
    weights multiply each token's vector; the chunk's mean is then restored, as A1111's default emphasis does."""
    import torch

    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [[tokenizer.bos_token_id, *c.ids, tokenizer.eos_token_id] + [pad] * (MAX_TOKENS - len(c.ids))
            for c in chunks]
    ids = torch.tensor(rows, device=encoder.device)  # (chunks, 77)
    out = encoder(ids, output_hidden_states=clip_skip > 1)
    hidden = out.last_hidden_state
    if clip_skip > 1:
        layers = len(out.hidden_states) - 1  # the embeddings come first
        if clip_skip > layers:
            raise ValueError(f"`clip_skip` is {clip_skip}, but this model's text encoder has {layers} layers: "
                             f"use at most {layers}")
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers 4 and 5 layouts
        hidden = final_norm(out.hidden_states[-clip_skip])
    multipliers = [[1.0, *c.weights, 1.0] + [1.0] * (MAX_TOKENS - len(c.ids)) for c in chunks]
    if any(w != 1.0 for row in multipliers for w in row):
        scale = torch.tensor(multipliers, device=hidden.device, dtype=hidden.dtype)[..., None]
        before = hidden.mean(dim=(1, 2), keepdim=True)
        hidden = hidden * scale
        hidden = hidden * (before / hidden.mean(dim=(1, 2), keepdim=True))
    return hidden.reshape(1, -1, hidden.shape[-1]).to(pipe.unet.dtype)  # (1, 77 × chunks, D)


@dataclass(frozen=True)
class Conditioning:
    """The prompt and negative prompt embeddings for each stretch of steps: (last step, positive, negative), steps
    counted from 1. One stretch unless the prompts edit or alternate."""

    stretches: list[tuple[int, torch.Tensor, torch.Tensor]]

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return next(((p, n) for end, p, n in self.stretches if step <= end), self.stretches[-1][1:])

    @property
    def changes(self) -> bool:
        return len(self.stretches) > 1


def clip_conditioning(pipe: Any, prompt: str, negative: str, steps: int, clip_skip: int,
                      warnings: list[str]) -> Conditioning:
    """Both prompts, every stretch of steps, encoded with the same number of chunks (the shorter ones padded with
    empty chunks: classifier-free guidance and the UNet need one length)."""
    import torch

    positive, negatives = schedule(prompt, steps), schedule(negative, steps)
    ends = sorted({end for end, _ in positive} | {end for end, _ in negatives})
    texts = [(_text_at(positive, end), _text_at(negatives, end)) for end in ends]
    chunked: dict[tuple[str, str], tuple[list[Chunk], list[Chunk]]] = {}
    for pos, neg in texts:
        if (pos, neg) not in chunked:
            chunked[(pos, neg)] = (weighted_chunks(pipe.tokenizer, pos, "prompt", warnings),
                                   weighted_chunks(pipe.tokenizer, neg, "negative prompt", warnings))
    length = max(len(c) for pair in chunked.values() for c in pair)
    encoded: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.no_grad():
        for key, (pos_chunks, neg_chunks) in chunked.items():
            encoded[key] = (encode(pipe, _padded(pos_chunks, length), clip_skip),
                            encode(pipe, _padded(neg_chunks, length), clip_skip))
    stretches: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for end, key in zip(ends, texts, strict=True):
        if stretches and stretches[-1][1] is encoded[key][0] and stretches[-1][2] is encoded[key][1]:
            stretches[-1] = (end, *encoded[key])
        else:
            stretches.append((end, *encoded[key]))
    return Conditioning(stretches)


def _text_at(pairs: list[tuple[int, str]], step: int) -> str:
    return next((text for end, text in pairs if step <= end), pairs[-1][1])


def _padded(chunks: list[Chunk], length: int) -> list[Chunk]:
    return chunks + [Chunk([], []) for _ in range(length - len(chunks))]
