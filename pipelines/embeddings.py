"""Textual-inversion embeddings (A1111's `.pt`/`.safetensors`, diffusers' files; one or many vectors; SDXL's
`clip_l`/`clip_g` pairs) on a loaded text-to-image pipeline: each is added once to the tokenizer and text encoder
under its file name, as A1111 names them, and a prompt uses it by writing that name. Multi-vector names are
expanded before the prompt is chunked, for each tokenizer that chunks it (`expand`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.base import PipelineError

logger = logging.getLogger(__name__)


class EmbeddingSlots:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._loaded: dict[str, str] = {}  # name → path

    def ensure(self, files: Mapping[str, str]) -> None:
        """Load the embeddings `files` names (name → path) that are not loaded yet."""
        for name, path in files.items():
            if self._loaded.get(name) == path:
                continue
            if name in self._loaded:
                raise PipelineError(f"the embedding {name!r} is loaded from {self._loaded[name]} already; two "
                                    "embeddings of one name cannot both be used by one model")
            self._load(name, path)
            self._loaded[name] = path

    def expand(self, text: str, tokenizer: Any = None) -> str:
        """`text` with each multi-vector embedding's name written as its tokens (name, name_1, …) in `tokenizer`
        (the first one by default; SDXL's embeddings are in both)."""
        convert = getattr(self.pipe, "maybe_convert_prompt", None)
        return convert(text, tokenizer or self.pipe.tokenizer) if convert and self._loaded and text else text

    def _load(self, name: str, path: str) -> None:
        try:
            state = _read(Path(path))
            if "clip_l" in state and "clip_g" in state:
                if getattr(self.pipe, "text_encoder_2", None) is None:
                    raise ValueError("it is an SDXL embedding (clip_l and clip_g), and this model is not SDXL")
                self.pipe.load_textual_inversion(state["clip_l"], token=name, text_encoder=self.pipe.text_encoder,
                                                 tokenizer=self.pipe.tokenizer)
                self.pipe.load_textual_inversion(state["clip_g"], token=name, text_encoder=self.pipe.text_encoder_2,
                                                 tokenizer=self.pipe.tokenizer_2)
            else:
                self.pipe.load_textual_inversion(_vectors(state), token=name)
        except PipelineError:
            raise
        except Exception as e:  # noqa: BLE001 -- torch, safetensors and diffusers raise many types for a bad file
            why = f"{type(e).__name__}: {e}"[:400]
            raise PipelineError(f"cannot load the embedding {Path(path).name}: {why}") from None
        logger.info("loaded embedding %s from %s", name, path)


def _read(path: Path) -> dict[str, Any]:
    if path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    import torch  # a pickle: the studio lets it through only with --allow-pickle, and then as plain tensors

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if isinstance(state, dict) else {"emb_params": state}


def _vectors(state: Mapping[str, Any]) -> Any:
    """The (vectors, width) tensor of a one-encoder embedding, in A1111's, its safetensors' or diffusers' layout."""
    if "emb_params" in state:
        return state["emb_params"]
    if "string_to_param" in state:
        return next(iter(state["string_to_param"].values()))
    if len(state) == 1:
        return next(iter(state.values()))
    raise ValueError(f"no embedding vectors in it (keys: {', '.join(sorted(state)[:5])})")
