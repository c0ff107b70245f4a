"""A reader for ncnn model files (Tencent's ncnn inference framework): the text `.param` graph and the binary `.bin`
weights, turned into plain layers with numpy arrays so that a PyTorch port can take the weights by position.

The `.param` format (ncnn wiki, "param and model file structure"):
- line 1: the magic number 7767517; line 2: the layer count and the blob count;
- then one line per layer: `type name n_inputs n_outputs input_blobs... output_blobs... key=value...`. A key k
  holds an int, or a float when the value has a '.' or an exponent; a key written `-23300-k` holds an array
  `count,v1,v2,...` (e.g. `-23310=1,2.000000e-01` is key 10 of a Convolution, the activation parameters).

The `.bin` format: the layers' weights concatenated in layer order, no header and no names. Each layer type reads
its own arrays, each either *tagged* (a 4-byte tag, then the data: tag 0x01306B47 = float16, 0 or 0x0002C056 =
float32; other tags mean ncnn's int8 or 256-entry-table quantisation, which this reader refuses) or *raw* float32
without a tag. Every array is padded to a multiple of 4 bytes. Which arrays a layer type reads is listed in
`_WEIGHT_SPECS`; any other type is taken to read none, and a file whose byte count does not come out exact (a type
with weights this reader does not know, or a truncated file) is refused rather than read out of step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAGS_FP32 = (0, 0x0002C056)
ARRAY_KEY_BASE = -23300  # key -23300-k is the array form of key k

ParamValue = int | float | tuple[int | float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One line of the `.param` file with the arrays its layer read from the `.bin`."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue]
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # float32, flat as stored

    def param(self, key: int, default: ParamValue = 0) -> ParamValue:
        return self.params.get(key, default)


@dataclass(frozen=True)
class NcnnNet:
    layers: list[NcnnLayer]
    blob_count: int

    def of_type(self, *types: str) -> list[NcnnLayer]:
        return [layer for layer in self.layers if layer.type in types]

    def weighted(self) -> list[NcnnLayer]:
        """The layers that read weights, in file order (the order a port maps them in)."""
        return [layer for layer in self.layers if layer.weights]


def conv_arrays(layer: NcnnLayer) -> tuple[np.ndarray, np.ndarray]:
    """A Convolution layer's weight as (out, in, kh, kw), the order ncnn stores it in (as PyTorch), and its bias
    (zeros without bias_term)."""
    out, kw = int(layer.param(0)), int(layer.param(1))
    kh = int(layer.param(11, kw))  # key 11 (kernel_h) defaults to key 1
    weight = layer.weights["weight"]
    if weight.size % (out * kh * kw):
        raise ValueError(f"layer {layer.name}: {weight.size} weights do not split into {out}×in×{kh}×{kw}")
    bias = layer.weights.get("bias", np.zeros(out, dtype=np.float32))
    return weight.reshape(out, -1, kh, kw).copy(), bias.copy()


def _conv_like(layer: NcnnLayer) -> list[tuple[str, int, bool]]:
    """Convolution, ConvolutionDepthWise, Deconvolution, InnerProduct: a tagged weight of key 6 values, then
    key 0 raw float32 biases when key 5 (bias_term) is set."""
    if layer.param(8):  # int8_scale_term: further arrays of scales follow
        raise ValueError(f"layer {layer.name}: int8-quantised {layer.type} is not supported")
    specs = [("weight", int(layer.param(6)), True)]
    if layer.param(5):
        specs.append(("bias", int(layer.param(0)), False))
    return specs


_WEIGHT_SPECS = {
    "Convolution": _conv_like,
    "ConvolutionDepthWise": _conv_like,
    "Deconvolution": _conv_like,
    "InnerProduct": _conv_like,
    "PReLU": lambda layer: [("slope", int(layer.param(0)), False)],
    "BatchNorm": lambda layer: [(n, int(layer.param(0)), False) for n in ("slope", "mean", "var", "bias")],
}


def _value(text: str) -> int | float:
    return float(text) if re.search(r"[.eE]", text) else int(text)


def _parse_params(tokens: list[str]) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for token in tokens:
        key_text, _, value = token.partition("=")
        key = int(key_text)
        if key <= ARRAY_KEY_BASE:
            count, *items = value.split(",")
            if int(count) != len(items):
                raise ValueError(f"array parameter {token!r} says {count} values but has {len(items)}")
            params[ARRAY_KEY_BASE - key] = tuple(_value(item) for item in items)
        else:
            params[key] = _value(value)
    return params


def parse_param(text: str) -> tuple[list[NcnnLayer], int]:
    """The layers (without weights) and the blob count of a `.param` file's text."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise ValueError(f"not an ncnn .param file (the first line must be the magic {MAGIC})")
    layer_count, blob_count = (int(v) for v in lines[1])
    layers = []
    for tokens in lines[2:]:
        kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        blobs = tokens[4:4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise ValueError(f"layer {name}: expected {n_in + n_out} blob names, got {len(blobs)}")
        layers.append(NcnnLayer(kind, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]),
                                _parse_params(tokens[4 + n_in + n_out:])))
    if len(layers) != layer_count:
        raise ValueError(f"the header says {layer_count} layers, the file has {len(layers)}")
    return layers, blob_count


def _padded(nbytes: int) -> int:
    return (nbytes + 3) // 4 * 4


def _read_array(data: memoryview, offset: int, count: int, tagged: bool) -> tuple[np.ndarray, int]:
    """`count` values at `offset` as float32, and the offset after them."""
    dtype: type[np.floating] = np.float32
    if tagged:
        if offset + 4 > len(data):
            raise ValueError(f"the file ends at byte {len(data)}, inside a weight tag")
        tag = int.from_bytes(data[offset:offset + 4], "little")
        offset += 4
        if tag == TAG_FP16:
            dtype = np.float16
        elif tag not in TAGS_FP32:
            raise ValueError(f"weight tag {tag:#010x} at byte {offset - 4} (quantised weights) is not supported")
    nbytes = count * np.dtype(dtype).itemsize
    if offset + nbytes > len(data):
        raise ValueError(f"the file ends at byte {len(data)}, {offset + nbytes - len(data)} bytes short of a weight")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float32)
    return array, offset + _padded(nbytes)


def read_ncnn(param_path: str | Path, bin_path: str | Path) -> NcnnNet:
    """The graph of `param_path` with each layer's weights read from `bin_path`.

    Raises ValueError naming the file when either is not a readable ncnn file or the weights do not use up the
    `.bin` exactly.
    """
    param_path, bin_path = Path(param_path), Path(bin_path)
    try:
        layers, blob_count = parse_param(param_path.read_text(encoding="ascii"))
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"{param_path}: not a readable ncnn .param file: {e}") from e
    data = memoryview(bin_path.read_bytes())
    offset = 0
    loaded = []
    try:
        for layer in layers:
            spec = _WEIGHT_SPECS.get(layer.type)
            weights = {}
            for name, count, tagged in spec(layer) if spec else []:
                weights[name], offset = _read_array(data, offset, count, tagged)
            loaded.append(NcnnLayer(layer.type, layer.name, layer.inputs, layer.outputs, layer.params, weights))
    except ValueError as e:
        raise ValueError(f"{bin_path}: {e} (layer {layer.name})") from e
    if offset != len(data):
        raise ValueError(f"{bin_path}: the layers of {param_path.name} read {offset} bytes but the file has "
                         f"{len(data)}; it is not the weights of this graph")
    return NcnnNet(loaded, blob_count)
