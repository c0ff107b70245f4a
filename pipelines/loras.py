"""LoRAs (kohya/A1111 or diffusers/PEFT files, SD 1.x and SDXL) on a loaded text-to-image pipeline, through
diffusers' PEFT integration: each file is loaded once as a named adapter and kept for later jobs; a job switches on
the adapters its prompt names at their weights, and they are switched off again when it ends, so no job's LoRAs
reach the next one. LyCORIS files (LoHa, LoKr, (IA)³, full diffs), which diffusers cannot map, are told apart by
their tensor names and applied as weight changes for the job (pipelines/lycoris_slots.py); both kinds may be used
in one job."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines import lycoris
from pipelines.base import PipelineError
from pipelines.lycoris_slots import LycorisSlots, Patch
from pipelines.models import kinds
from pipelines.prompts.networks import NetworkTag

logger = logging.getLogger(__name__)

MAX_LOADED = 8  # adapters kept in memory per model; the least recently used goes first


class LoraSlots:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._loaded: OrderedDict[str, str] = OrderedDict()  # path → adapter name
        self._count = 0
        self.lycoris = LycorisSlots(pipe)

    @contextmanager
    def applied(self, tags: Sequence[NetworkTag], files: Mapping[str, str]) -> Iterator[None]:
        """The tags' LoRAs (`files`: "lora:NAME" → path) switched on at their weights for the duration."""
        if not tags:
            yield
            return
        names, weights = [], []
        patched: list[tuple[list[Patch], NetworkTag]] = []
        for tag in tags:
            path = files.get(f"{kinds.LORA}:{tag.name}")
            if path is None:
                raise PipelineError(f"the LoRA {tag.name!r} was not sent with the job")
            if self._is_lycoris(path):
                patched.append((self.lycoris.load(path), tag))
            else:
                names.append(self._adapter(path))
                weights.append(self._weights(tag))
        if names:
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, adapter_weights=weights)
        try:
            with self.lycoris.applied(patched):
                yield
        finally:
            if names:
                self.pipe.disable_lora()

    def _is_lycoris(self, path: str) -> bool:
        if path in self._loaded or path in self.lycoris:
            return path in self.lycoris
        try:
            return lycoris.is_lycoris(lycoris.read_keys(path))
        except Exception as e:  # noqa: BLE001 -- safetensors and torch.load raise many types for a bad file
            raise PipelineError(f"cannot load the LoRA {Path(path).name}: {type(e).__name__}: {e}"[:500]) from None

    def _weights(self, tag: NetworkTag) -> dict[str, float]:
        parts = {"unet": tag.unet, "text_encoder": tag.text_encoder, "text_encoder_2": tag.text_encoder}
        loadable = self.pipe._lora_loadable_modules
        return {k: v for k, v in parts.items() if k in loadable and getattr(self.pipe, k, None) is not None}

    def _adapter(self, path: str) -> str:
        if path in self._loaded:
            self._loaded.move_to_end(path)
            return self._loaded[path]
        self._count += 1
        name = f"lora_{self._count}"
        try:
            # low_cpu_mem_usage: PEFT makes the new layers empty instead of initialising them randomly only to
            # overwrite them (0.74 s instead of 1.24 s for a rank-16 SD 1.5 LoRA here)
            self.pipe.load_lora_weights(path, adapter_name=name, low_cpu_mem_usage=True)
        except Exception as e:  # noqa: BLE001 -- diffusers and peft raise many types for a file they cannot map
            raise PipelineError(f"cannot load the LoRA {Path(path).name}: {type(e).__name__}: {e}"[:500]) from None
        self._loaded[path] = name
        while len(self._loaded) > MAX_LOADED:
            _, oldest = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(oldest)
        logger.info("loaded LoRA %s as %s", path, name)
        return name
