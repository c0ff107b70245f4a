"""RRDBNet, the generator of ESRGAN (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
Networks", ECCV workshops 2018) as Real-ESRGAN (Wang et al., ICCVW 2021) ships it.

Residual-in-residual dense blocks (paper, section 3.1): each dense block has five 3×3 convolutions, every one
seeing the concatenation of the block's input and all earlier outputs (growth `num_grow_ch` channels), LeakyReLU
0.2 after the first four; a dense block returns x + 0.2·out, and three of them in a row again x + 0.2·out
(residual scaling, section 3.1). After the trunk a convolution and a long skip from the first convolution, then two
nearest-neighbour ×2 upsamplings, each followed by a convolution and LeakyReLU, and two output convolutions. For
scale 2 and 1 Real-ESRGAN pixel-unshuffles the input first (×4 and ×16 the channels), so the body always
upsamples ×4.

State-dict keys follow the files users have: the "new" layout (conv_first, body.N.rdb1.conv1 … conv5, rdb2, rdb3,
conv_body, conv_up1, conv_up2, conv_hr, conv_last) as this module names them, and the old ESRGAN layout
(`model.0`, `model.1.sub.N.RDB1.conv1.0`, `model.1.sub.<num_block>` for the trunk convolution, then `model.3`,
`model.6`, `model.8`, `model.10`), which `from_old_layout` renames. `rrdb_config` reads the architecture off the
tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.nets.ncnn import NcnnNet, conv_arrays

RESIDUAL_SCALE = 0.2  # paper, section 3.1: scale each residual by 0.2 before adding it (stabilises deep nets)
SLOPE = 0.2  # LeakyReLU negative slope
UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # output scale → pixel-unshuffle factor of the input
_OLD_TAIL = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr",
             "model.10": "conv_last"}


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convolutions; returns x + 0.2·conv5([x, x1, x2, x3, x4])."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for i in range(5):
            out = num_feat if i == 4 else num_grow_ch
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(1, 5):
            conv = getattr(self, f"conv{i}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), SLOPE))  # (B, G, H, W)
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(features, 1))  # (B, F, H, W)


class RRDB(nn.Module):
    """Three dense blocks in a residual: x + 0.2·rdb3(rdb2(rdb1(x)))."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


@dataclass(frozen=True)
class RRDBConfig:
    in_ch: int = 3
    out_ch: int = 3
    scale: int = 4  # 4, 2 or 1 (2 and 1 pixel-unshuffle the input)
    num_feat: int = 64
    num_block: int = 23  # RealESRGAN_x4plus; the anime 6B model has 6
    num_grow_ch: int = 32


class RRDBNet(nn.Module):
    """image (B, in_ch, H, W) in [0, 1] → (B, out_ch, H·scale, W·scale), not clamped."""

    def __init__(self, config: RRDBConfig = RRDBConfig()) -> None:
        super().__init__()
        if config.scale not in UNSHUFFLE:
            raise ValueError(f"`scale` must be one of {sorted(UNSHUFFLE)}, got {config.scale}")
        self.config = config
        self.scale = config.scale
        self.input_multiple = UNSHUFFLE[config.scale]  # H and W must be multiples of it
        feat, unshuffle = config.num_feat, UNSHUFFLE[config.scale]
        self.conv_first = nn.Conv2d(config.in_ch * unshuffle**2, feat, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(feat, config.num_grow_ch) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(feat, feat, 3, padding=1)
        self.conv_last = nn.Conv2d(feat, config.out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unshuffle = UNSHUFFLE[self.scale]
        if unshuffle > 1:
            x = F.pixel_unshuffle(x, unshuffle)  # (B, C·f², H/f, W/f)
        feat = self.conv_first(x)  # (B, F, h, w)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), SLOPE)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), SLOPE))  # (B, out_ch, 4h, 4w)


def is_old_layout(state: dict[str, torch.Tensor]) -> bool:
    return "model.0.weight" in state and any(k.startswith("model.1.sub.") for k in state)


def from_old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The old ESRGAN keys (`model.1.sub.3.RDB2.conv4.0.weight`, …) renamed to this module's."""
    trunk = [int(m.group(1)) for k in state if (m := re.fullmatch(r"model\.1\.sub\.(\d+)\.weight", k))]
    renamed = {}
    for key, tensor in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in _OLD_TAIL:
            renamed[f"{_OLD_TAIL[prefix]}.{leaf}"] = tensor
        elif trunk and prefix == f"model.1.sub.{trunk[0]}":
            renamed[f"conv_body.{leaf}"] = tensor
        elif m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0", prefix):
            renamed[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{leaf}"] = tensor
        else:  # left for load_state_dict to report as unexpected
            renamed[key] = tensor
    return renamed


def rrdb_config(state: dict[str, torch.Tensor]) -> RRDBConfig:
    """The architecture of a new-layout state dict, read from its tensors' shapes; ValueError when it does not fit."""
    try:
        first, last = state["conv_first.weight"], state["conv_last.weight"]
        grow = state["body.0.rdb1.conv1.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"not an RRDBNet state dict: no {e.args[0]}") from None
    blocks = {int(m.group(1)) for k in state if (m := re.fullmatch(r"body\.(\d+)\.rdb1\.conv1\.weight", k))}
    if first.ndim != 4 or last.ndim != 4 or blocks != set(range(len(blocks))):
        raise ValueError("not an RRDBNet state dict: odd conv_first/conv_last shapes or body block numbers")
    out_ch = last.shape[0]
    ratio = {out_ch * f * f: s for s, f in UNSHUFFLE.items()}
    if first.shape[1] not in ratio:
        raise ValueError(f"RRDBNet with {first.shape[1]} input channels for {out_ch} output channels is neither "
                         "scale 4, 2 nor 1")
    return RRDBConfig(in_ch=out_ch, out_ch=out_ch, scale=ratio[first.shape[1]], num_feat=first.shape[0],
                      num_block=len(blocks), num_grow_ch=grow)


def rrdb_state_from_ncnn(net: NcnnNet) -> dict[str, torch.Tensor]:
    """The state dict of an ncnn export of RRDBNet (realesrgan-x4plus and -anime): its convolutions in file order
    are conv_first, 15 per RRDB (rdb1.conv1 … rdb3.conv5), conv_body, conv_up1, conv_up2, conv_hr, conv_last. The
    LeakyReLUs are fused into the convolutions (key 9 = 2, slope in key 10), which confirms the order."""
    convs = net.of_type("Convolution")
    num_block, extra = divmod(len(convs) - 6, 15)
    if extra or num_block < 1 or len(net.weighted()) != len(convs):
        raise ValueError(f"not an RRDBNet graph: {len(convs)} convolutions is not 6 + 15·blocks, or other weights")
    names = ["conv_first", *(f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3)
                             for c in range(1, 6)), "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    state = {}
    for name, layer in zip(names, convs, strict=True):
        leaky = name.endswith(("conv1", "conv2", "conv3", "conv4", "up1", "up2", "hr"))
        activation = (layer.param(9), layer.param(10, ()))
        if activation != ((2, (SLOPE,)) if leaky else (0, ())):
            raise ValueError(f"not an RRDBNet graph: {layer.name} ({name}) has activation {activation}")
        weight, bias = conv_arrays(layer)
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.from_numpy(weight), torch.from_numpy(bias)
    return state
