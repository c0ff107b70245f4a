"""LyCORIS files (LoHa, LoKr, (IA)³, full diffs) on the tiny SD model: ΔW matches the published formulas and peft's
layers, a file changes the picture by its weight in linear and convolution layers, kohya's LDM and diffusers module
names give the same picture, a LyCORIS file and a plain LoRA combine, and after every job the model's weights are
the originals bit for bit."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pipelines import lycoris, lycoris_slots
from pipelines.base import PipelineError
from pipelines.lycoris_slots import LycorisSlots, ldm_to_diffusers, module_index
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.ldm_checkpoint import unet_key_to_ldm
from tests.support.tiny_sd import save_tiny_lora, save_tiny_sd

BASE = {"prompt": "a cat", "width": 64, "height": 64, "num_steps": 3, "sampler": "Euler"}
RANK = 2


def _split(n: int) -> tuple[int, int]:
    """n = m · k with m the largest divisor not above √n (LyCORIS's factorization with factor -1)."""
    m = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    return m, n // m


def _targets(pipe, ldm: bool = False):
    """(kohya name, layer) for the attention projections, MLPs and resnet/projection convolutions of the tiny model
    (kohya's names: diffusers module paths, or the UNet's LDM paths; CLIP's under text_model as 4.x named it)."""
    for name, layer in pipe.unet.named_modules():
        wanted = (isinstance(layer, torch.nn.Linear) and "attn" in name) or name.endswith(
            ("conv1", "conv2", "proj_in", "ff.net.2", "conv_shortcut"))
        if wanted:
            path = unet_key_to_ldm(f"{name}.weight", pipe.unet).removesuffix(".weight") if ldm else name
            yield f"lora_unet_{path.replace('.', '_')}", layer
    for name, layer in pipe.text_encoder.named_modules():
        if isinstance(layer, torch.nn.Linear):
            path = name if name.startswith("text_model.") else f"text_model.{name}"
            yield f"lora_te_{path.replace('.', '_')}", layer


def _loha(layer, g: torch.Generator, s: float) -> dict[str, torch.Tensor]:
    out, *rest = layer.weight.shape
    if len(rest) == 3 and rest[1] > 1 and out % 16 == 0:  # wider k×k convolutions: Tucker cores (r, r, k, k)
        factors = {"hada_t1": (RANK, RANK, *rest[1:]), "hada_w1_a": (RANK, out), "hada_w1_b": (RANK, rest[0]),
                   "hada_t2": (RANK, RANK, *rest[1:]), "hada_w2_a": (RANK, out), "hada_w2_b": (RANK, rest[0])}
    else:  # linear, or a convolution flattened to (out, in·k·k)
        flat = int(np.prod(rest))
        factors = {"hada_w1_a": (out, RANK), "hada_w1_b": (RANK, flat), "hada_w2_a": (out, RANK),
                   "hada_w2_b": (RANK, flat)}
    return {k: torch.randn(shape, generator=g) * s for k, shape in factors.items()} | {"alpha": torch.tensor(4.0)}


def _lokr(layer, g: torch.Generator, s: float) -> dict[str, torch.Tensor]:
    out, inp, *kernel = layer.weight.shape
    (a, b), (c, d) = _split(out), _split(inp)
    if kernel and kernel[0] > 1 and layer.weight.shape[0] % 16 == 0:  # Tucker w2 for the wider convolutions
        factors = {"lokr_w1": (a, c), "lokr_t2": (RANK, RANK, *kernel), "lokr_w2_a": (RANK, b),
                   "lokr_w2_b": (RANK, d)}
    elif kernel and kernel[0] > 1:  # both factors full: scale 1 whatever alpha says
        factors = {"lokr_w1": (a, c), "lokr_w2": (b, d, *kernel)}
    elif out == inp:  # both factors decomposed
        factors = {"lokr_w1_a": (a, RANK), "lokr_w1_b": (RANK, c), "lokr_w2_a": (b, RANK),
                   "lokr_w2_b": (RANK, d * int(np.prod(kernel or [1])))}
    else:
        factors = {"lokr_w1": (a, c), "lokr_w2_a": (b, RANK), "lokr_w2_b": (RANK, d * int(np.prod(kernel or [1])))}
    return {k: torch.randn(shape, generator=g) * s for k, shape in factors.items()} | {"alpha": torch.tensor(1.0)}


def _ia3(layer, g: torch.Generator, s: float) -> dict[str, torch.Tensor]:
    on_input = layer.weight.shape[0] == layer.weight.shape[1]
    channels = layer.weight.shape[1 if on_input else 0]
    shape = (channels,) if layer.weight.dim() == 2 else (1, channels, 1, 1)  # LyCORIS's shapes
    return {"weight": torch.randn(shape, generator=g) * s, "on_input": torch.tensor(int(on_input))}


def _full(layer, g: torch.Generator, s: float) -> dict[str, torch.Tensor]:
    parts = {"diff": torch.randn(layer.weight.shape, generator=g) * s}
    return parts | ({"diff_b": torch.randn(layer.bias.shape, generator=g) * s} if layer.bias is not None else {})


MAKERS = {"loha": (_loha, 0.3), "lokr": (_lokr, 0.3), "ia3": (_ia3, 0.5), "full": (_full, 0.05)}


def save_lycoris(path, pipe, kind: str, *, seed: int = 0, ldm: bool = False) -> str:
    make, s = MAKERS[kind]
    g = torch.Generator().manual_seed(seed)
    tensors = {f"{name}.{k}": v.contiguous()
               for name, layer in _targets(pipe, ldm) for k, v in make(layer, g, s).items()}
    save_file(tensors, str(path), {"ss_network_module": "lycoris.kohya", "ss_base_model_version": "sd_v1"})
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextToImagePipeline, dict[str, str]]:
    root = tmp_path_factory.mktemp("models")
    pipe = TextToImagePipeline.load(str(save_tiny_sd(root / "tiny-sd")), device="cpu")
    files = {f"lora:{kind}": save_lycoris(root / f"{kind}.safetensors", pipe.pipe, kind) for kind in MAKERS}
    files["lora:loha_ldm"] = save_lycoris(root / "loha_ldm.safetensors", pipe.pipe, "loha", ldm=True)
    torch.save(load_file(files["lora:lokr"]), root / "lokr_pickle.pt")
    files["lora:lokr_pickle"] = str(root / "lokr_pickle.pt")
    files["lora:ink"] = str(save_tiny_lora(root / "ink.safetensors", pipe.pipe, seed=1))
    tensors = load_file(files["lora:loha"])
    bad = dict(tensors)
    bad[next(k for k in bad if k.endswith("hada_w1_b"))] = torch.zeros(RANK, 3)
    save_file(bad, str(root / "bad_loha.safetensors"))
    save_file({k.replace("lora_unet_", "lora_unet_nowhere_"): v for k, v in tensors.items()
               if k.startswith("lora_unet_")}, str(root / "other_model.safetensors"))
    stray = dict(tensors) | {"lora_unet_no_such_layer.diff": torch.zeros(2, 2)}
    save_file(stray, str(root / "stray.safetensors"))
    (root / "truncated.safetensors").write_bytes((root / "loha.safetensors").read_bytes()[:300])
    for name in ("bad_loha", "other_model", "stray", "truncated"):
        files[f"lora:{name}"] = str(root / f"{name}.safetensors")
    return pipe, files


def picture(tiny, prompt: str) -> np.ndarray:
    pipe, files = tiny
    result = pipe(TextToImageParams.from_dict({**BASE, "prompt": prompt}), seed=1, files=files)
    return np.asarray(result.images[0], dtype=np.int16)


def weights(pipe: TextToImagePipeline) -> dict[str, torch.Tensor]:
    """The UNet's and text encoder's own tensors (a loaded plain LoRA wraps layers: `….base_layer.weight`)."""
    return {f"{part}.{k.replace('.base_layer', '')}": v.clone() for part in ("unet", "text_encoder")
            for k, v in getattr(pipe.pipe, part).state_dict().items() if ".lora_" not in k}


def test_loha_lokr_and_ia3_deltas_are_the_formulas() -> None:
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    loha = {"hada_w1_a": torch.tensor([[1.0], [2.0]]), "hada_w1_b": torch.tensor([[3.0, 4.0]]),
            "hada_w2_a": torch.tensor([[1.0], [1.0]]), "hada_w2_b": torch.tensor([[1.0, 2.0]]),
            "alpha": torch.tensor(2.0)}
    # (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · alpha / rank, rank 1
    assert torch.equal(lycoris.weight_delta("m", loha, w, True)[0], torch.tensor([[6.0, 16.0], [12.0, 32.0]]))
    lokr = {"lokr_w1": torch.tensor([[1.0, 2.0]]), "lokr_w2": torch.tensor([[1.0], [3.0]]), "alpha": torch.tensor(8.0)}
    # kron((1, 2), (2, 1)); both factors full: scale 1, alpha ignored
    assert torch.equal(lycoris.weight_delta("m", lokr, w, True)[0], torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    lokr_ab = {"lokr_w1": torch.tensor([[2.0]]), "lokr_w2_a": torch.tensor([[1.0], [2.0]]),
               "lokr_w2_b": torch.tensor([[1.0, 1.0]]), "alpha": torch.tensor(0.5)}
    assert torch.equal(lycoris.weight_delta("m", lokr_ab, w, True)[0], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    scales = torch.tensor([0.5, -1.0])
    out = lycoris.weight_delta("m", {"weight": scales, "on_input": torch.tensor(0)}, w, True)[0]
    assert torch.equal(out, torch.tensor([[0.5, 1.0], [-3.0, -4.0]]))  # each output row by its scale
    inp = lycoris.weight_delta("m", {"weight": scales, "on_input": torch.tensor(1)}, w, True)[0]
    assert torch.equal(inp, torch.tensor([[0.5, -2.0], [1.5, -4.0]]))  # each input column by its scale


@pytest.mark.parametrize("kind", ["loha", "lokr"])
@pytest.mark.parametrize("layer", ["linear", "conv", "conv_tucker"])
def test_our_delta_is_peft_s_get_delta_weight(kind: str, layer: str) -> None:
    from peft.tuners.loha import LoHaConfig
    from peft.tuners.loha import layer as loha_layers
    from peft.tuners.lokr import LoKrConfig
    from peft.tuners.lokr import layer as lokr_layers

    torch.manual_seed(0)
    base = torch.nn.Linear(64, 48) if layer == "linear" else torch.nn.Conv2d(32, 16, 3, padding=1)
    config = (LoHaConfig if kind == "loha" else LoKrConfig)(
        r=2, alpha=6, init_weights=False, use_effective_conv2d=layer == "conv_tucker",
        **({"decompose_both": True} if kind == "lokr" else {}))
    layers = loha_layers if kind == "loha" else lokr_layers
    peft = (layers.Linear if layer == "linear" else layers.Conv2d)(base, "default", config, r=2, alpha=6)
    parts = {name: getattr(peft, name)["default"].detach() for name in peft.adapter_layer_names
             if "default" in getattr(peft, name)} | {"alpha": torch.tensor(6.0)}
    assert ("hada_t1" in parts or "lokr_t2" in parts) == (layer == "conv_tucker")
    ours = lycoris.weight_delta("m", parts, base.weight.detach(), True)[0]
    torch.testing.assert_close(ours, peft.get_delta_weight("default").detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["loha", "lokr"])
def test_a_lycoris_file_changes_the_picture_by_its_weight_and_leaves_nothing_behind(tiny, kind: str) -> None:
    pipe, _ = tiny
    before = weights(pipe)
    base = picture(tiny, "a cat")
    assert np.array_equal(picture(tiny, f"a cat <lora:{kind}:0>"), base)  # weight 0: the base picture exactly
    full, half = picture(tiny, f"a cat <lora:{kind}:1>"), picture(tiny, f"a cat <lora:{kind}:0.5>")
    assert np.abs(full - base).mean() > np.abs(half - base).mean() > 0.5
    assert np.array_equal(picture(tiny, "a cat"), base)
    after = weights(pipe)
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, not merely close
    encoder_only, unet_only = picture(tiny, f"a cat <lora:{kind}:1:0>"), picture(tiny, f"a cat <lora:{kind}:0:1>")
    assert not np.array_equal(encoder_only, unet_only) and not np.array_equal(encoder_only, base)
    assert not np.array_equal(unet_only, base)


def test_ldm_names_and_a_pickle_give_the_same_picture_as_diffusers_names(tiny) -> None:
    assert np.array_equal(picture(tiny, "a cat <lora:loha_ldm:1>"), picture(tiny, "a cat <lora:loha:1>"))
    assert np.array_equal(picture(tiny, "a cat <lora:lokr_pickle:0.7>"), picture(tiny, "a cat <lora:lokr:0.7>"))


def test_ia3_and_full_diff_files_change_the_picture(tiny) -> None:
    base = picture(tiny, "a cat")
    for kind in ("ia3", "full"):
        assert np.array_equal(picture(tiny, f"a cat <lora:{kind}:0>"), base)
        assert np.abs(picture(tiny, f"a cat <lora:{kind}:1>") - base).mean() > 0.5
    assert np.array_equal(picture(tiny, "a cat"), base)


def test_a_loha_and_a_plain_lora_combine_in_one_job(tiny) -> None:
    pipe, _ = tiny
    before = weights(pipe)
    base, loha, ink = picture(tiny, "a cat"), picture(tiny, "a cat <lora:loha:1>"), picture(tiny, "a cat <lora:ink:1>")
    both = picture(tiny, "a cat <lora:loha:1> <lora:ink:1>")
    assert not np.array_equal(both, loha) and not np.array_equal(both, ink)
    assert np.array_equal(picture(tiny, "a cat <lora:ink:1> <lora:loha:0>"), ink)
    two = picture(tiny, "a cat <lora:loha:1> <lora:lokr:0.5>")  # two LyCORIS files on the same layers
    assert not np.array_equal(two, loha) and not np.array_equal(two, picture(tiny, "a cat <lora:lokr:0.5>"))
    assert np.array_equal(picture(tiny, "a cat"), base)
    after = weights(pipe)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_bad_lycoris_file_fails_its_job_by_name_and_the_next_job_runs(tiny, caplog) -> None:
    base = picture(tiny, "a cat")
    with pytest.raises(PipelineError, match=r"cannot load the LoRA bad_loha\.safetensors: .*do not fit together"):
        picture(tiny, "a cat <lora:loha:1> <lora:bad_loha:1>")
    with pytest.raises(PipelineError, match=r"cannot load the LoRA truncated\.safetensors"):
        picture(tiny, "a cat <lora:truncated:1>")
    with pytest.raises(PipelineError, match=r"other_model\.safetensors: .*none of its \d+ modules for the unet .*"
                                            r"lora_unet_nowhere_"):
        picture(tiny, "a cat <lora:other_model:1>")
    assert np.array_equal(picture(tiny, "a cat"), base)
    with caplog.at_level(logging.WARNING, logger="pipelines.lycoris_slots"):
        stray = picture(tiny, "a cat <lora:stray:1>")  # one module the model lacks: skipped and logged
    assert "lora_unet_no_such_layer" in caplog.text
    assert np.array_equal(stray, picture(tiny, "a cat <lora:loha:1>"))


def test_lycoris_files_are_told_apart_from_plain_loras(tiny) -> None:
    _, files = tiny
    assert lycoris.is_lycoris(lycoris.read_keys(files["lora:loha"]))
    assert lycoris.is_lycoris(lycoris.read_keys(files["lora:lokr_pickle"]))
    assert all(lycoris.is_lycoris(lycoris.read_keys(files[f"lora:{kind}"])) for kind in ("lokr", "ia3", "full"))
    assert not lycoris.is_lycoris(lycoris.read_keys(files["lora:ink"]))


def test_deltas_are_computed_once_and_the_oldest_file_goes(tiny, monkeypatch) -> None:
    pipe, files = tiny
    slots = LycorisSlots(pipe.pipe)
    first = slots.load(files["lora:loha"])
    assert slots.load(files["lora:loha"]) is first
    assert all(p.weight.dtype == p.module.weight.dtype for p in first)
    monkeypatch.setattr(lycoris_slots, "MAX_FILES", 1)
    slots.load(files["lora:lokr"])
    assert files["lora:lokr"] in slots and files["lora:loha"] not in slots


@pytest.mark.parametrize("down, up", [(("CrossAttnDownBlock2D", "DownBlock2D"), ("UpBlock2D", "CrossAttnUpBlock2D")),
                                      (("DownBlock2D", "CrossAttnDownBlock2D"), ("CrossAttnUpBlock2D", "UpBlock2D"))])
def test_every_ldm_unet_name_maps_to_its_diffusers_layer(down, up) -> None:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=2, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=down, up_block_types=up, cross_attention_dim=8,
                                attention_head_dim=2, norm_num_groups=4)
    index = module_index(type("Pipe", (), {"unet": unet})())
    ldm = {f"lora_unet_{unet_key_to_ldm(f'{name}.weight', unet).removesuffix('.weight').replace('.', '_')}": name
           for name, layer in unet.named_modules() if getattr(layer, "weight", None) is not None}
    mapped = ldm_to_diffusers(list(ldm), unet.config)
    assert {old: index[new][1] for old, new in mapped.items() if new in index} == {
        old: unet.get_submodule(name) for old, name in ldm.items()}
