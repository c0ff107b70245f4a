"""SRVGGNetCompact, the compact VGG-style super-resolution network of Real-ESRGAN (Wang et al., "Real-ESRGAN:
Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW 2021; the realesr-animevideov3 and
realesr-general models).

A plain stack at the input resolution: a 3×3 convolution to `num_feat` channels, then `num_conv` more 3×3
convolutions, each convolution followed by a PReLU with one slope per channel; a last 3×3 convolution to
out_ch·scale² channels, a pixel shuffle to the output size, and the nearest-upsampled input added, so the network
only learns the residual over nearest-neighbour upscaling.

Keys as the official .pth files have them: `body.0` (first convolution), `body.1` (its PReLU), `body.2`, `body.3`,
…, `body.<2·num_conv + 2>` (the last convolution); `srvgg_config` reads the architecture off the tensors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.nets.ncnn import NcnnNet, conv_arrays


@dataclass(frozen=True)
class SRVGGConfig:
    in_ch: int = 3
    out_ch: int = 3
    num_feat: int = 64
    num_conv: int = 16  # realesr-animevideov3; realesr-general-x4v3 has 32
    scale: int = 4


class SRVGGNetCompact(nn.Module):
    """image (B, in_ch, H, W) in [0, 1] → (B, out_ch, H·scale, W·scale), not clamped."""

    def __init__(self, config: SRVGGConfig = SRVGGConfig()) -> None:
        super().__init__()
        self.config = config
        self.scale = config.scale
        self.input_multiple = 1  # any H and W
        layers: list[nn.Module] = [nn.Conv2d(config.in_ch, config.num_feat, 3, padding=1), nn.PReLU(config.num_feat)]
        for _ in range(config.num_conv):
            layers += [nn.Conv2d(config.num_feat, config.num_feat, 3, padding=1), nn.PReLU(config.num_feat)]
        layers.append(nn.Conv2d(config.num_feat, config.out_ch * config.scale**2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pixel_shuffle(self.body(x), self.scale)  # (B, out_ch, H·s, W·s)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def is_srvgg(state: dict[str, torch.Tensor]) -> bool:
    return "body.0.weight" in state and "body.1.weight" in state and state["body.1.weight"].ndim == 1


def srvgg_config(state: dict[str, torch.Tensor]) -> SRVGGConfig:
    """The architecture of a state dict, read from its tensors' shapes; ValueError when it is not this network."""
    convs = sorted(int(m.group(1)) for k, v in state.items()
                   if (m := re.fullmatch(r"body\.(\d+)\.weight", k)) and v.ndim == 4)
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        raise ValueError("not an SRVGGNetCompact state dict: body convolutions must be body.0, body.2, body.4, …")
    first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
    in_ch = first.shape[1]
    scale = math.isqrt(last.shape[0] // in_ch)
    if scale < 1 or in_ch * scale * scale != last.shape[0]:
        raise ValueError(f"SRVGGNetCompact's last convolution has {last.shape[0]} channels, not {in_ch}·scale²")
    return SRVGGConfig(in_ch=in_ch, out_ch=in_ch, num_feat=first.shape[0], num_conv=len(convs) - 2, scale=scale)


def srvgg_state_from_ncnn(net: NcnnNet) -> dict[str, torch.Tensor]:
    """The state dict of an ncnn export of SRVGGNetCompact (realesr-animevideov3): its weighted layers alternate
    Convolution and PReLU and end with a Convolution; the i-th of them is `body.i`."""
    layers = net.weighted()
    kinds = [layer.type for layer in layers]
    if len(layers) < 3 or kinds != ["Convolution", "PReLU"] * (len(layers) // 2) + ["Convolution"]:
        raise ValueError("not an SRVGGNetCompact graph: the weighted layers do not alternate Convolution, PReLU")
    state = {}
    for i, layer in enumerate(layers):
        if layer.type == "PReLU":
            state[f"body.{i}.weight"] = torch.from_numpy(layer.weights["slope"].copy())
        else:
            weight, bias = conv_arrays(layer)
            state[f"body.{i}.weight"], state[f"body.{i}.bias"] = torch.from_numpy(weight), torch.from_numpy(bias)
    return state
