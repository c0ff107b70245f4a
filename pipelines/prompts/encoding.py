"""Prompts to text-encoder conditioning as A1111 builds it for CLIP models: the emphasis weights applied per token,
75-token chunks (a BREAK or a comma near the end starts the next one), clip skip, and one conditioning per stretch
of steps for prompt editing and alternation. SD 1.x's encoder is here; SDXL's two are in pipelines.prompts.sdxl, which
reuses the chunks, the weighting and the stretches. torch is imported where it runs: the server imports the module
too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        warning = f"the {name} is {total} tokens; only the first {MAX_CHUNKS * MAX_TOKENS} were used"
        if warning not in warnings:  # said once, however many tokenizers or stretches read the text
            warnings.append(warning)
        chunks = chunks[:MAX_CHUNKS]
    return chunks


def encode(pipe: Any, chunks: Sequence[Chunk], clip_skip: int) -> torch.Tensor:
    """SD 1.x: each chunk as its own 77-token window, encoded, weighted and laid end to end: (1, 77 × chunks, D).
    Clip skip N takes the N-th layer from the end through the final layer norm, as A1111."""
    encoder = pipe.text_encoder
    out = encoder(window_ids(pipe.tokenizer, chunks, encoder.device), output_hidden_states=clip_skip > 1)
    hidden = out.last_hidden_state
    if clip_skip > 1:
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm  # transformers 4 and 5 layouts
        hidden = final_norm(hidden_layer(out, clip_skip))
    return end_to_end(weighted(hidden, chunks)).to(pipe.unet.dtype)


def window_ids(tokenizer: Any, chunks: Sequence[Chunk], device: Any) -> torch.Tensor:
    """The chunks' 77-token windows (start, tokens, end, the tokenizer's padding): (chunks, 77)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [[tokenizer.bos_token_id, *c.ids, tokenizer.eos_token_id] + [pad] * (MAX_TOKENS - len(c.ids))
            for c in chunks]
    return torch.tensor(rows, device=device)


def hidden_layer(out: Any, clip_skip: int, below: int = 0) -> torch.Tensor:
    """The hidden states of the layer `clip_skip` from the end (1: the last), `below` layers further down (SDXL
    reads the penultimate layer at clip skip 1)."""
    layers = len(out.hidden_states) - 1  # the embeddings come first
    if clip_skip + below > layers:
        raise ValueError(f"`clip_skip` is {clip_skip}, but this model's text encoder has {layers} layers: "
                         f"use at most {layers - below}")
    return out.hidden_states[-(clip_skip + below)]


def weighted(hidden: torch.Tensor, chunks: Sequence[Chunk]) -> torch.Tensor:
    """(chunks, 77, D) hidden states with each token's vector multiplied by its weight and each chunk's mean then
    restored, as A1111's default emphasis does."""
    import torch

    multipliers = [[1.0, *c.weights, 1.0] + [1.0] * (MAX_TOKENS - len(c.ids)) for c in chunks]
    if all(w == 1.0 for row in multipliers for w in row):
        return hidden
    # in float32 whatever the model runs in: a chunk's mean is near 0, and bf16's rounding would move it
    scale = torch.tensor(multipliers, device=hidden.device, dtype=torch.float32)[..., None]
    before = hidden.float().mean(dim=(1, 2), keepdim=True)
    scaled = hidden.float() * scale
    return (scaled * (before / scaled.mean(dim=(1, 2), keepdim=True))).to(hidden.dtype)


def end_to_end(hidden: torch.Tensor) -> torch.Tensor:
    """(chunks, 77, D) → (1, 77 × chunks, D): the chunks one after another, as the UNet reads a long prompt."""
    return hidden.reshape(1, -1, hidden.shape[-1])


@dataclass(frozen=True)
class Embeds:
    """What the UNet is conditioned on for a stretch of steps: the prompt's and negative prompt's embeddings, and
    for SDXL their pooled embeddings too."""

    positive: torch.Tensor  # (1, 77 × chunks, D)
    negative: torch.Tensor
    pooled: torch.Tensor | None = None  # (1, P)
    negative_pooled: torch.Tensor | None = None

    def kwargs(self) -> dict[str, torch.Tensor]:
        """As a diffusers pipeline takes them."""
        named = {"prompt_embeds": self.positive, "negative_prompt_embeds": self.negative,
                 "pooled_prompt_embeds": self.pooled, "negative_pooled_prompt_embeds": self.negative_pooled}
        return {name: tensor for name, tensor in named.items() if tensor is not None}


@dataclass(frozen=True)
class Conditioning:
    """The embeddings for each stretch of steps: (last step, embeddings), steps counted from 1. One stretch unless
    the prompts edit or alternate."""

    stretches: list[tuple[int, Embeds]]

    def at(self, step: int) -> Embeds:
        return next((embeds for end, embeds in self.stretches if step <= end), self.stretches[-1][1])

    @property
    def changes(self) -> bool:
        return len(self.stretches) > 1


# One text's chunks, one list per tokenizer (clip_conditioning's `tokenizers`), to (1, 77 × chunks, D) embeddings
# and, for SDXL, a pooled embedding.
EncodeChunks = Callable[[Any, Sequence[Sequence[Chunk]], int], "tuple[torch.Tensor, torch.Tensor | None]"]


def _encode_sd(pipe: Any, chunks: Sequence[Sequence[Chunk]], clip_skip: int) -> tuple[torch.Tensor, None]:
    return encode(pipe, chunks[0], clip_skip), None


def clip_conditioning(pipe: Any, prompt: str, negative: str, steps: int, clip_skip: int, warnings: list[str], *,
                      tokenizers: Sequence[Any] | None = None, encode_chunks: EncodeChunks = _encode_sd,
                      expand: Callable[[str, Any], str] | None = None) -> Conditioning:
    """Both prompts, every stretch of steps, encoded with the same number of chunks (the shorter ones padded with
    empty chunks: classifier-free guidance and the UNet need one length). Each text is chunked by each of
    `tokenizers` (SD 1.x's one by default), after `expand` wrote the multi-vector embeddings' names out for that
    tokenizer. A pipeline with diffusers' `force_zeros_for_empty_prompt` (SDXL) gets zeros for an empty negative
    prompt, as diffusers and A1111 give it."""
    import torch

    tokenizers = tokenizers or [pipe.tokenizer]
    positive, negatives = schedule(prompt, steps), schedule(negative, steps)
    ends = sorted({end for end, _ in positive} | {end for end, _ in negatives})
    texts = [(_text_at(positive, end), _text_at(negatives, end)) for end in ends]
    chunked: dict[str, list[list[Chunk]]] = {}  # text → its chunks by each tokenizer
    for pair in texts:
        for text, name in zip(pair, ("prompt", "negative prompt"), strict=True):
            if text not in chunked:
                chunked[text] = [weighted_chunks(t, expand(text, t) if expand else text, name, warnings)
                                 for t in tokenizers]
    length = max(len(c) for per_tokenizer in chunked.values() for c in per_tokenizer)
    zero_empty = bool(pipe.config.get("force_zeros_for_empty_prompt", False))
    with torch.no_grad():
        encoded = {text: encode_chunks(pipe, [_padded(c, length) for c in per_tokenizer], clip_skip)
                   for text, per_tokenizer in chunked.items()}
    stretches: list[tuple[int, Embeds]] = []
    pairs: dict[tuple[str, str], Embeds] = {}
    for end, (pos, neg) in zip(ends, texts, strict=True):
        if (pos, neg) not in pairs:
            (hidden, pooled), (negative_hidden, negative_pooled) = encoded[pos], encoded[neg]
            if zero_empty and neg == "":
                negative_hidden = torch.zeros_like(hidden)
                negative_pooled = None if pooled is None else torch.zeros_like(pooled)
            pairs[(pos, neg)] = Embeds(hidden, negative_hidden, pooled, negative_pooled)
        if stretches and stretches[-1][1] is pairs[(pos, neg)]:
            stretches[-1] = (end, pairs[(pos, neg)])
        else:
            stretches.append((end, pairs[(pos, neg)]))
    return Conditioning(stretches)


def _text_at(pairs: list[tuple[int, str]], step: int) -> str:
    return next((text for end, text in pairs if step <= end), pairs[-1][1])


def _padded(chunks: list[Chunk], length: int) -> list[Chunk]:
    return chunks + [Chunk([], []) for _ in range(length - len(chunks))]
