"""LyCORIS network files (KohakuBlueleaf's LyCORIS library, also written by kohya's sd-scripts and read by A1111):
which files need this loader, and the weight change ΔW each of their modules makes to its layer.

A file holds, per layer, tensors under the kohya module name (`lora_unet_…`, `lora_te_…`, `lora_te1_…`,
`lora_te2_…`) with a suffix that names the algorithm:

- LoHa (FedPara, Hyeon-Woo et al. 2022): `hada_w1_a/b`, `hada_w2_a/b`, optional `hada_t1/t2` (Tucker cores of a
  convolution): ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · alpha/rank.
- LoKr (Kronecker product, KohakuBlueleaf 2023): `lokr_w1` or `lokr_w1_a/b`, `lokr_w2` or `lokr_w2_a/b`, optional
  `lokr_t2`: ΔW = w1 ⊗ w2 · alpha/rank, and scale 1 when neither factor is decomposed (no rank; LyCORIS does so).
- (IA)³ (Liu et al. 2022): `weight` + `on_input`: the layer's output channels (or input channels) scaled by 1 + w,
  that is ΔW = W ⊙ w broadcast over the other dimension; the bias is left alone, as LyCORIS merges it.
- full: `diff` (+ `diff_b`), ΔW itself; norm layers: `w_norm` + `b_norm`, the same for a norm's weight and bias.
- LoCon with a Tucker core: `lora_down`/`lora_up` + `lora_mid`, ΔW = einsum(mid, up, down) · alpha/rank
  (diffusers loads the plain `lora_down`/`lora_up` kind; a module of that kind inside a LyCORIS file is also read).

The rank is the inner dimension: the first dimension of the `_b` (or `lora_down`) factor. A missing or zero alpha
means scale 1. The formulas and tensor layouts follow LyCORIS's modules and peft's `tuners/loha`, `tuners/lokr` and
`tuners/ia3` (Apache-2.0); tests/pipelines/test_lycoris.py checks our ΔW against peft's `get_delta_weight`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# A key ending in one of these makes a file LyCORIS (the delta loader); anything else goes to diffusers first.
LYCORIS_SUFFIXES = (".hada_w1_a", ".lokr_w1", ".lokr_w1_a", ".on_input", ".diff", ".w_norm", ".b_norm",
                    ".lora_mid.weight", ".oft_blocks", ".oft_diag", ".a1.weight")
_UNSUPPORTED = {"oft_blocks": "OFT", "oft_diag": "OFT", "a1.weight": "GLoRA", "dora_scale": "DoRA"}


def is_lycoris(keys: Collection[str]) -> bool:
    """Whether a file's tensor names are LyCORIS's (not a plain kohya or diffusers LoRA)."""
    return any(key.endswith(LYCORIS_SUFFIXES) for key in keys)


def read_keys(path: str | Path) -> list[str]:
    """The tensor names of a LoRA file, from a safetensors header or a weights-only unpickle."""
    path = Path(path)
    if _is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    return list(read_tensors(path))


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a LoRA file on the CPU; a pickle is read as plain tensors only (weights_only=True)."""
    import torch

    path = Path(path)
    if _is_safetensors(path):
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"it holds a {type(state).__name__}, not a dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"its entry {str(key)[:80]!r} is not a named tensor")
    return state


def modules_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The tensors grouped by kohya module name (the part before the first dot: kohya names hold no dots)."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, dot, part = key.partition(".")
        if not dot:
            raise ValueError(f"the key {key[:120]!r} names no module part (expected NAME.PART)")
        modules.setdefault(module, {})[part] = tensor
    return modules


def weight_delta(name: str, parts: Mapping[str, torch.Tensor], weight: torch.Tensor,
                 has_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ΔW in `weight`'s shape, Δbias or None) for one module at multiplier 1, in float32 on `weight`'s device.
    ValueError naming the module for an algorithm this loader does not know, a stray key or a shape that does not
    fit the layer."""
    import torch

    parts = {key: value.to(weight.device, torch.float32) for key, value in parts.items()}
    for part, algorithm in _UNSUPPORTED.items():
        if part in parts:
            raise ValueError(f"{name}: {algorithm} modules are not supported (key {name}.{part})")
    try:
        delta, bias, used = _delta(name, parts, weight)
    except KeyError as e:
        raise ValueError(f"{name}: the key {name}.{e.args[0]} is missing") from None
    except RuntimeError as e:  # a matmul, einsum or kron of factors whose shapes do not fit together
        raise ValueError(f"{name}: its factors do not fit together ({e})"[:300]) from None
    stray = sorted(set(parts) - used - {"alpha"})
    if stray:
        raise ValueError(f"{name}: unexpected key {name}.{stray[0]} beside its {sorted(used & set(parts))[0]}")
    if bias is not None and not has_bias:
        raise ValueError(f"{name}: the file changes a bias, and the model's layer has none")
    return _fitted(name, delta, weight.shape), None if bias is None else _fitted(name, bias, (weight.shape[0],))


def _delta(name: str, parts: Mapping[str, torch.Tensor],
           weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, set[str]]:
    bias = None
    if "hada_w1_a" in parts:
        delta, used = _loha(parts), {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"}
    elif "lokr_w1" in parts or "lokr_w1_a" in parts:
        delta, used = _lokr(parts), {"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b",
                                     "lokr_t2"}
    elif "on_input" in parts:
        delta, used = _ia3(name, parts, weight), {"weight", "on_input"}
    elif "diff" in parts or "w_norm" in parts:
        key, bias_key = ("diff", "diff_b") if "diff" in parts else ("w_norm", "b_norm")
        delta, bias, used = parts[key], parts.get(bias_key), {key, bias_key}
    elif "lora_down.weight" in parts:
        delta, used = _lora(parts), {"lora_down.weight", "lora_up.weight", "lora_mid.weight"}
    else:
        raise ValueError(f"{name}: no LyCORIS algorithm has the parts {sorted(parts)[:6]}")
    return delta, bias, used


def _scale(parts: Mapping[str, torch.Tensor], rank: int | None) -> float:
    alpha = parts.get("alpha")
    if rank is None or alpha is None or float(alpha) == 0:
        return 1.0
    return float(alpha) / rank


def _tucker(core: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """A convolution weight (out, in, k1, k2) from a Tucker core (r, r, k1, k2), up (r, out) and down (r, in)."""
    import torch

    return torch.einsum("i j k l, i p, j r -> p r k l", core, up, down)


def _loha(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    w1a, w1b, w2a, w2b = (parts[f"hada_{w}"] for w in ("w1_a", "w1_b", "w2_a", "w2_b"))
    if "hada_t1" in parts:  # Tucker: w*_a is (r, out), w*_b (r, in)
        w1, w2 = _tucker(parts["hada_t1"], w1a, w1b), _tucker(parts["hada_t2"], w2a, w2b)
    else:  # w*_a (out, r) @ w*_b (r, in·k1·k2)
        w1, w2 = w1a @ w1b, w2a @ w2b
    return w1 * w2 * _scale(parts, w1b.shape[0])


def _lokr(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    import torch

    w1 = parts["lokr_w1"] if "lokr_w1" in parts else parts["lokr_w1_a"] @ parts["lokr_w1_b"]  # (a, c)
    if "lokr_w2" in parts:
        w2 = parts["lokr_w2"]  # (b, d) or (b, d, k1, k2)
    elif "lokr_t2" in parts:
        w2 = _tucker(parts["lokr_t2"], parts["lokr_w2_a"], parts["lokr_w2_b"])
    else:
        w2 = parts["lokr_w2_a"] @ parts["lokr_w2_b"]  # (b, d·k1·k2): the kron keeps that flat layout reshapable
    rank = next((parts[k].shape[0] for k in ("lokr_w1_b", "lokr_w2_b") if k in parts), None)
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    return torch.kron(w1, w2.contiguous()) * _scale(parts, rank)  # (a·b, c·d[, k1, k2])


def _ia3(name: str, parts: Mapping[str, torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    scales = parts["weight"].flatten()
    on_input = bool(parts["on_input"].item())
    dim = 1 if on_input else 0
    if scales.numel() != weight.shape[dim]:
        raise ValueError(f"{name}: (IA)³ has {scales.numel()} scales for the layer's {weight.shape[dim]} "
                         f"{'input' if on_input else 'output'} channels")
    shape = [1] * weight.dim()
    shape[dim] = -1
    return weight.float() * scales.view(shape)


def _lora(parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    down, up = parts["lora_down.weight"], parts["lora_up.weight"]
    if "lora_mid.weight" in parts:
        delta = _tucker(parts["lora_mid.weight"], up.flatten(1).T, down.flatten(1))
    else:
        delta = up.flatten(1) @ down.flatten(1)
    return delta * _scale(parts, down.shape[0])


def _fitted(name: str, delta: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """`delta` in the layer's shape: a flat (out, in·k1·k2) factor product, or a 1×1 convolution's weight for a
    linear layer (SD 2 / SDXL `proj_in`), is reshaped; a different number of outputs or elements is refused."""
    if tuple(delta.shape) == tuple(shape):
        return delta
    if delta.numel() == _numel(shape) and delta.shape[0] == shape[0]:
        return delta.reshape(shape)
    raise ValueError(f"{name}: the file's change has shape {tuple(delta.shape)}, the model's layer "
                     f"{tuple(shape)} (a LoRA for another model?)")


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _is_safetensors(path: Path) -> bool:
    return path.suffix.lower() in (".safetensors", ".sft")
