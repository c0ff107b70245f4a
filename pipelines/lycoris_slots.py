"""LyCORIS files (pipelines/lycoris.py) on a loaded text-to-image pipeline, as weight changes: each file's ΔW per
layer is computed once and kept (in the layer's dtype, on its device; the least recently used file goes first), and
a job adds weight × ΔW to the layers' weights in place, then puts the original tensors back exactly when it ends,
so the next job's picture is bit-identical to one made before.

Module names are kohya's: the diffusers module path with dots written as underscores, after `lora_unet_`,
`lora_te_`/`lora_te1_` (first text encoder) or `lora_te2_`. UNet names in the original LDM layout
(`input_blocks_4_1_…`, SDXL's kohya files) are mapped with diffusers' own kohya/SGM conversion helpers.

Names the model lacks: a file is refused when none of its modules for a part it trains (UNet, text encoder, second
text encoder) is in the model, naming the first such key: a LoRA for another architecture. Within a part that
matched, a few stray modules are skipped and logged, as A1111 does. A layer whose shape does not fit is an error.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipelines import lycoris
from pipelines.base import PipelineError
from pipelines.prompts.networks import NetworkTag

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MAX_FILES = 8  # files whose deltas are kept per model, as LoraSlots keeps adapters
# A LoHa of every SDXL layer is a second UNet (2.6 GB in fp16); beyond this sum the oldest files' deltas go, and
# the newest is kept even when it alone is larger.
MAX_BYTES = 3 << 30

PREFIXES = {"unet": ("lora_unet_",), "text_encoder": ("lora_te_", "lora_te1_"), "text_encoder_2": ("lora_te2_",)}
ALL_PREFIXES = tuple(prefix for prefixes in PREFIXES.values() for prefix in prefixes)
_LDM_BLOCKS = ("input_blocks", "middle_block", "output_blocks", "time_embed", "label_emb", "lora_unet_out_")
# LDM names diffusers' LoRA conversion does not rename (LoRA never trains norms; LyCORIS's norm modules do)
_LDM_NORMS = ((re.compile(r"\.in\.layers\.0$"), ".norm1"), (re.compile(r"\.out\.layers\.0$"), ".norm2"),
              (re.compile(r"^out\.0$"), "conv_norm_out"))


class Patch(NamedTuple):
    part: str  # "unet" | "text_encoder" | "text_encoder_2": which tag weight scales it
    module: Any  # the torch layer whose weight (and bias) change
    weight: torch.Tensor
    bias: torch.Tensor | None


class _Deltas(NamedTuple):
    patches: list[Patch]
    nbytes: int


class LycorisSlots:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._deltas: OrderedDict[str, _Deltas] = OrderedDict()  # path → its patches
        self._index: dict[str, tuple[str, Any]] | None = None  # kohya module name → (part, layer)

    def __contains__(self, path: str) -> bool:
        return path in self._deltas

    def load(self, path: str) -> list[Patch]:
        """The file's patches, computed on first use. PipelineError naming the file for one it cannot apply."""
        if path in self._deltas:
            self._deltas.move_to_end(path)
            return self._deltas[path].patches
        start = time.perf_counter()
        try:
            patches = self._patches(path)
        except PipelineError:
            raise
        except Exception as e:  # noqa: BLE001 -- safetensors, torch.load and the math raise many types
            raise PipelineError(f"cannot load the LoRA {Path(path).name}: {type(e).__name__}: {e}"[:500]) from None
        nbytes = sum(t.numel() * t.element_size() for p in patches for t in (p.weight, p.bias) if t is not None)
        self._deltas[path] = _Deltas(patches, nbytes)
        while len(self._deltas) > 1 and (len(self._deltas) > MAX_FILES or self._bytes() > MAX_BYTES):
            self._deltas.popitem(last=False)
        logger.info("computed the LyCORIS deltas of %s: %d layers, %.1f MB, in %.2f s", path, len(patches),
                    nbytes / 1e6, time.perf_counter() - start)
        return patches

    @contextmanager
    def applied(self, jobs: Sequence[tuple[list[Patch], NetworkTag]]) -> Iterator[None]:
        """Each (patches, tag) added at the tag's weights for the duration; the originals are put back after."""
        if not jobs:
            yield
            return
        import torch

        originals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(param) → (param, its original copy)
        try:
            with torch.no_grad():
                for patches, tag in jobs:
                    for patch in patches:
                        scale = tag.unet if patch.part == "unet" else tag.text_encoder
                        if scale:  # weight 0 leaves the layer untouched, not just unchanged
                            _add(patch, scale, originals)
            yield
        finally:
            with torch.no_grad():
                for param, original in originals.values():
                    param.copy_(original)

    def _bytes(self) -> int:
        return sum(d.nbytes for d in self._deltas.values())

    def _patches(self, path: str) -> list[Patch]:
        modules = lycoris.modules_of(lycoris.read_tensors(path))
        found = self._resolve(modules)
        patches = []
        for name, (part, layer) in found.items():
            weight = layer.weight
            delta, bias = lycoris.weight_delta(name, modules[name], weight.detach(), layer.bias is not None)
            patches.append(Patch(part, layer, delta.to(weight.dtype),
                                 None if bias is None else bias.to(layer.bias.dtype)))
        return patches

    def _resolve(self, modules: Iterable[str]) -> dict[str, tuple[str, Any]]:
        """Each of the file's module names that the model has → (part, layer); ValueError as the module says."""
        index = self._module_index()
        found = {name: index[name] for name in modules if name in index}
        missing = [name for name in modules if name not in index]
        unet = getattr(self.pipe, "unet", None)
        ldm = [n for n in missing if n.startswith("lora_unet_") and any(b in n for b in _LDM_BLOCKS)]
        if ldm and unet is not None:
            for old, new in ldm_to_diffusers(ldm, unet.config).items():
                if new in index:
                    found[old] = index[new]
        missing = [name for name in missing if name not in found]
        for part, prefixes in PREFIXES.items():
            mine = [name for name in modules if name.startswith(prefixes)]
            if mine and not any(name in found for name in mine):
                raise ValueError(f"none of its {len(mine)} modules for the {part} is in this model "
                                 f"(the first: {mine[0]})")
        unknown = [name for name in missing if not name.startswith(ALL_PREFIXES)]
        if unknown:
            raise ValueError(f"the module {unknown[0]} belongs to no part of the model (lora_unet_, lora_te_, …)")
        if missing:
            logger.warning("%d modules of a LyCORIS file are not in this model and are skipped (the first: %s)",
                           len(missing), missing[0])
        return found

    def _module_index(self) -> dict[str, tuple[str, Any]]:
        if self._index is None:
            self._index = module_index(self.pipe)
        return self._index


def module_index(pipe: Any) -> dict[str, tuple[str, Any]]:
    """kohya module name → (part, layer) for every linear, convolution and norm layer of the pipeline's UNet and
    text encoders. PEFT's wrappers (left by diffusers LoRAs) are looked through: their base layer is the layer."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.LayerNorm, torch.nn.GroupNorm)
    index: dict[str, tuple[str, Any]] = {}
    for part, prefixes in PREFIXES.items():
        model = getattr(pipe, part, None)
        if model is None:
            continue
        for name, layer in model.named_modules():
            steps = name.split(".")
            if not isinstance(layer, kinds) or any(step.startswith("lora_") for step in steps):
                continue
            path = ".".join(step for step in steps if step != "base_layer")
            names = [path]
            if part != "unet" and not path.startswith("text_model."):
                names.append(f"text_model.{path}")  # transformers ≥ 5.6 dropped the level kohya's names keep
            for prefix in prefixes:
                index.update({prefix + n.replace(".", "_"): (part, layer) for n in names})
    return index


def ldm_to_diffusers(names: Iterable[str], unet_config: Any) -> dict[str, str]:
    """kohya UNet module names in the LDM layout → the same modules' kohya names in the diffusers layout, by
    diffusers' helpers for kohya LoRA keys; a name they cannot place is left out."""
    from diffusers.loaders.lora_conversion_utils import _convert_unet_lora_key, _maybe_map_sgm_blocks_to_diffusers

    try:
        blocks = _maybe_map_sgm_blocks_to_diffusers({name: name for name in names}, unet_config)  # new → old
    except (ValueError, IndexError, KeyError):
        return {}
    mapped = {}
    for new, old in blocks.items():
        # the helper renames within a LoRA key (…to_q.lora → to_q_lora, attn1 → attn1.processor): give it one
        dotted = _convert_unet_lora_key(f"{new}.lora_down.weight")
        dotted = re.sub(r"[._]lora\.down\.weight$", "", dotted).replace(".processor", "")
        if dotted.endswith("to_out"):
            dotted += ".0"
        for pattern, replacement in _LDM_NORMS:
            dotted = pattern.sub(replacement, dotted)
        mapped[old] = "lora_unet_" + dotted.replace(".", "_")
        # SD 1.x: a level without attention has its upsampler at index 1, which the helper reads as an attention
        mapped[old] = re.sub(r"(up_blocks_\d+)_attentions_\d+_conv$", r"\1_upsamplers_0_conv", mapped[old])
    return mapped


def _add(patch: Patch, scale: float, originals: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for param, delta in ((patch.module.weight, patch.weight), (patch.module.bias, patch.bias)):
        if delta is None:
            continue
        if id(param) not in originals:
            originals[id(param)] = (param, param.detach().clone())
        param.add_(delta.to(param.device, param.dtype), alpha=scale)
