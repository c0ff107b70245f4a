"""Single-file (A1111/Civitai) checkpoints: the shipped config folders, the generated CLIP tokenizer files, and
offline loading through diffusers' `from_single_file` (pipelines/single_file.py).

Loading is checked end to end with tiny random components saved in the original LDM key layout
(tests/support/ldm_checkpoint.py): every weight must come back bit for bit and a seeded generation must equal the
one from the components the checkpoint was made from, with every network connection refused.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from pipelines import clip_vocab
from pipelines.single_file import CONFIGS_DIR, detect_family, family_from_keys, load_single_file
from tests.support.ldm_checkpoint import (
    SDXL_OPEN_CLIP_PREFIX,
    diffusers_to_ldm_sdxl_state_dict,
    diffusers_to_ldm_state_dict,
)

PROMPT = "a photo of a cat"
CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat" through OpenAI CLIP's own tokenizer
# Parameter counts of the official SD 1.5 and SDXL base 1.0 weights.
PARAMETER_COUNTS = {
    ("sd15", "unet"): 859_520_964,
    ("sd15", "vae"): 83_653_863,
    ("sd15", "text_encoder"): 123_060_480,
    ("sdxl", "unet"): 2_567_463_684,
    ("sdxl", "vae"): 83_653_863,
    ("sdxl", "text_encoder"): 123_060_480,
    ("sdxl", "text_encoder_2"): 694_659_840,
}
# Key names found in the official single-file checkpoints (v1-5-pruned-emaonly, sd_xl_base_1.0): where the
# up-sampling convolutions sit after a level with and without attention, VAE levels, the OpenCLIP tower.
REAL_KEYS = {
    "sd15": [
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight",
        "first_stage_model.encoder.down.0.downsample.conv.weight",
        "first_stage_model.decoder.up.1.upsample.conv.weight",
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight",
        "first_stage_model.decoder.mid.attn_1.proj_out.weight",
        "first_stage_model.post_quant_conv.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    ],
    "sdxl": [
        "model.diffusion_model.label_emb.0.2.weight",
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
        "conditioner.embedders.1.model.ln_final.weight",
        "conditioner.embedders.1.model.text_projection",
    ],
}
GENERATION = {"prompt": PROMPT, "num_inference_steps": 2, "height": 64, "width": 64, "output_type": "np"}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny networks gain nothing from intra-op threads, and on a busy 2-core machine OpenMP workers wait on each
    # other: the two 2-step generations below took ~30 s instead of ~1.5 s while another process held one core.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Hub offline mode, and every socket connection refused and recorded (a library may swallow the error)."""
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object, *args: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"test forbids network access, tried {address!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import, which may have happened before this test.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


# ---------------------------------------------------------------------------------------------------------------
# Tiny components (the diffusers test recipe: seed before each network), shaped like SD 1.5 / SDXL base.
# ---------------------------------------------------------------------------------------------------------------

def tiny_sd15_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    # Three levels in SD 1.5's block order, so both upsampler positions of the LDM layout are exercised
    # (`output_blocks.N.1.conv` after a plain level, `.2.conv` after a level with attention).
    return UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32, 64), layers_per_block=2, in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )


def tiny_clip_config(hidden_size: int, **changes: object) -> CLIPTextConfig:
    # bos/eos/pad ids 0/2/1 as in the official SD configs (eos_token_id 2 selects transformers' legacy pooling).
    values: dict[str, object] = {
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "hidden_size": hidden_size,
        "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 49408,
        "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": hidden_size,
    }
    values.update(changes)
    return CLIPTextConfig(**values)


def tiny_text_encoder() -> CLIPTextModel:
    torch.manual_seed(0)
    return CLIPTextModel(tiny_clip_config(32))


def distinct_weights(module: nn.Module) -> nn.Module:
    # Fresh norm layers are all ones and zeros, so a checkpoint that swapped two of them would still load
    # "exactly"; seeded noise makes every tensor unique, and the module is put in eval mode like a loaded one.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return module.eval()


@dataclass(frozen=True)
class TinyCheckpoint:
    path: Path  # model.safetensors in the LDM layout
    configs: Path  # a folder laid out like assets/configs, holding this family's tiny configs
    components: dict[str, nn.Module]


def write_configs(configs: Path, family: str, components: dict[str, nn.Module]) -> None:
    """The shipped config folder (real model_index, scheduler, tokenizers) with the tiny models' configs."""
    folder = configs / family
    shutil.copytree(CONFIGS_DIR / family, folder)
    for name, module in components.items():
        if isinstance(module, UNet2DConditionModel | AutoencoderKL):
            module.save_config(folder / name)
        else:
            module.config.save_pretrained(folder / name)


@pytest.fixture(scope="module")
def sd15(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoint:
    root = tmp_path_factory.mktemp("sd15")
    components = {"unet": tiny_sd15_unet(), "vae": tiny_vae(), "text_encoder": tiny_text_encoder()}
    components = {name: distinct_weights(module) for name, module in components.items()}
    save_file(diffusers_to_ldm_state_dict(**components), root / "model.safetensors")
    write_configs(root / "configs", "sd15", components)
    return TinyCheckpoint(root / "model.safetensors", root / "configs", components)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoint:
    root = tmp_path_factory.mktemp("sdxl")
    torch.manual_seed(0)
    # SDXL base's shape: linear projections, added size/crop embeddings, text embeddings of both encoders
    # concatenated (32 + 64 = 96), pooled projection + 6 × 8 time ids = 80 inputs to the added embedding.
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        cross_attention_dim=96,
    )
    torch.manual_seed(0)
    # The two encoders must differ in width: diffusers tells them apart in a checkpoint by that width.
    text_encoder_2 = CLIPTextModelWithProjection(
        tiny_clip_config(64, hidden_act="gelu", projection_dim=32, dtype="float16")
    ).float()  # its config says float16, like the official one; see load_single_file
    components = {
        "unet": unet, "vae": tiny_vae(), "text_encoder": tiny_text_encoder(), "text_encoder_2": text_encoder_2,
    }
    components = {name: distinct_weights(module) for name, module in components.items()}
    save_file(diffusers_to_ldm_sdxl_state_dict(**components), root / "model.safetensors")
    write_configs(root / "configs", "sdxl", components)
    return TinyCheckpoint(root / "model.safetensors", root / "configs", components)


def assert_same_weights(pipe: object, components: dict[str, nn.Module]) -> None:
    for name, original in components.items():
        loaded = getattr(pipe, name).state_dict()
        expected = original.state_dict()
        assert loaded.keys() == expected.keys(), f"{name}: {sorted(loaded.keys() ^ expected.keys())[:5]}"
        differing = [key for key in expected if not torch.equal(loaded[key], expected[key])]
        assert differing == [], f"{name}: {len(differing)} tensors differ, e.g. {differing[:3]}"


def generate(pipe: object) -> np.ndarray:
    return pipe(generator=torch.Generator().manual_seed(0), **GENERATION).images


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer files
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("folder", "pad_token", "pad_id"), [
    ("sd15/tokenizer", "<|endoftext|>", 49407),
    ("sdxl/tokenizer", "<|endoftext|>", 49407),
    ("sdxl/tokenizer_2", "!", 0),  # open_clip pads with id 0, which is "!"
])
def test_shipped_tokenizers_give_the_real_clip_ids(folder: str, pad_token: str, pad_id: int) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(CONFIGS_DIR / folder, local_files_only=True)
    assert len(tokenizer) == 49408
    assert tokenizer(PROMPT).input_ids == CAT_IDS
    assert (tokenizer.pad_token, tokenizer.pad_token_id, tokenizer.model_max_length) == (pad_token, pad_id, 77)
    padded = tokenizer(PROMPT, padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[len(CAT_IDS):] == [pad_id] * (77 - len(CAT_IDS))


def test_write_clip_tokenizer_reproduces_the_shipped_files(tmp_path: Path) -> None:
    # The merge list is recoverable from merges.txt, so the generator is checked without the open_clip wheel:
    # same merges in → byte-identical vocab.json, merges.txt and configs out.
    merges = (CONFIGS_DIR / "sd15/tokenizer/merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert len(merges) == clip_vocab.NUM_MERGES
    bpe_gz = tmp_path / clip_vocab.BPE_FILE_NAME
    bpe_gz.write_bytes(gzip.compress(("\n".join(["#version: 0.2", *merges, "extra merges are ignored"])).encode()))
    for relative, pad_token in clip_vocab.TOKENIZER_FOLDERS:
        clip_vocab.write_clip_tokenizer(tmp_path / relative, bpe_gz, pad_token=pad_token)
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            assert (tmp_path / relative / name).read_bytes() == (CONFIGS_DIR / relative / name).read_bytes(), name

    vocab = json.loads((tmp_path / "sd15/tokenizer/vocab.json").read_text(encoding="utf-8"))
    base = list(clip_vocab.bytes_to_unicode().values())
    assert list(vocab.values()) == list(range(clip_vocab.VOCAB_SIZE))
    assert list(vocab)[:512] == base + [symbol + "</w>" for symbol in base]
    assert list(vocab)[512] == "".join(merges[0].split())
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (49406, 49407)


def test_bytes_to_unicode_maps_every_byte_to_a_printable_character() -> None:
    mapping = clip_vocab.bytes_to_unicode()
    assert sorted(mapping) == list(range(256))
    assert len(set(mapping.values())) == 256
    assert all(character.isprintable() and not character.isspace() for character in mapping.values())
    assert (mapping[ord("a")], mapping[0], mapping[ord(" ")]) == ("a", chr(256), "Ġ")  # GPT-2's scheme


def test_write_clip_tokenizer_refuses_a_file_that_is_not_clips(tmp_path: Path) -> None:
    bpe_gz = tmp_path / "short.txt.gz"
    bpe_gz.write_bytes(gzip.compress(b"#version: 0.2\ni n\nt h\n"))
    with pytest.raises(ValueError, match="short.txt.gz is not a CLIP BPE file"):
        clip_vocab.write_clip_tokenizer(tmp_path / "tokenizer", bpe_gz)
    assert not (tmp_path / "tokenizer").exists()


# ---------------------------------------------------------------------------------------------------------------
# Shipped configs, at full size on the meta device (no memory is allocated)
# ---------------------------------------------------------------------------------------------------------------

def meta_components(family: str) -> dict[str, nn.Module]:
    folder = CONFIGS_DIR / family
    with init_empty_weights():
        components: dict[str, nn.Module] = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        }
        if family == "sdxl":
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            components["text_encoder_2"] = CLIPTextModelWithProjection(config)
    return components


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_shipped_configs_build_the_official_architectures(family: str) -> None:
    components = meta_components(family)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in components.items()}
    assert counts == {name: count for (fam, name), count in PARAMETER_COUNTS.items() if fam == family}
    assert {p.device.type for module in components.values() for p in module.parameters()} == {"meta"}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_ldm_layout_of_the_full_models_round_trips_through_diffusers(family: str) -> None:
    # The tiny checkpoints below cannot show off-by-one block numbering at real depth (12 output blocks, where
    # "output_blocks.1" is a prefix of "output_blocks.11"); diffusers' own converters, on meta tensors, can.
    components = meta_components(family)
    convert = diffusers_to_ldm_sdxl_state_dict if family == "sdxl" else diffusers_to_ldm_state_dict
    checkpoint = convert(**components)
    # diffusers recognises real checkpoints by marker keys and their shapes; ours must pass for the real thing.
    assert infer_diffusers_model_type(checkpoint) == {"sd15": "v1", "sdxl": "xl_base"}[family]
    # LDM's VAE attention is made of 1×1 convolutions, where diffusers has linear layers.
    assert checkpoint["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert [key for key in REAL_KEYS[family] if key not in checkpoint] == []
    unet, vae = components["unet"], components["vae"]
    back = {
        "unet": convert_ldm_unet_checkpoint(checkpoint, dict(unet.config)),
        "vae": convert_ldm_vae_checkpoint(checkpoint, dict(vae.config)),
        # position_ids: the buffer old checkpoints carry and transformers 5 no longer saves (the loader skips it).
        "text_encoder": {key.removeprefix("text_model."): tensor for key, tensor in convert_ldm_clip_checkpoint(
            checkpoint).items() if not key.endswith("position_ids")},
    }
    if family == "sdxl":
        back["text_encoder_2"] = convert_open_clip_checkpoint(
            components["text_encoder_2"], checkpoint, prefix=SDXL_OPEN_CLIP_PREFIX)
    for name, state in back.items():
        expected = components[name].state_dict()
        assert state.keys() == expected.keys(), f"{name}: {sorted(state.keys() ^ expected.keys())[:5]}"
        assert all(state[key].shape == expected[key].shape for key in expected), name


# ---------------------------------------------------------------------------------------------------------------
# Loading single files offline
# ---------------------------------------------------------------------------------------------------------------

def test_from_single_file_loads_an_ldm_safetensors_offline_and_exactly(
    sd15: TinyCheckpoint, no_network: list[object]
) -> None:
    pipe = StableDiffusionPipeline.from_single_file(
        str(sd15.path), config=str(sd15.configs / "sd15"), local_files_only=True
    )
    assert_same_weights(pipe, sd15.components)
    assert pipe.safety_checker is None and pipe.config.requires_safety_checker is False

    folder = sd15.configs / "sd15"
    reference = StableDiffusionPipeline(
        **sd15.components, tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        scheduler=PNDMScheduler.from_pretrained(folder / "scheduler"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    image = generate(pipe)
    assert image.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(image, generate(reference))


def test_load_single_file_detects_sdxl_and_loads_every_component_in_one_dtype(
    sdxl: TinyCheckpoint, no_network: list[object]
) -> None:
    pipe = load_single_file(sdxl.path, configs=sdxl.configs)
    assert type(pipe) is StableDiffusionXLPipeline
    assert_same_weights(pipe, sdxl.components)
    # Without an explicit torch_dtype diffusers would build text_encoder_2 in the float16 its config names.
    dtypes = {name: getattr(pipe, name).dtype for name in sdxl.components}
    assert dtypes == dict.fromkeys(sdxl.components, torch.float32)
    assert pipe.tokenizer_2.pad_token == "!"

    folder = sdxl.configs / "sdxl"
    reference = StableDiffusionXLPipeline(
        **sdxl.components, tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        scheduler=EulerDiscreteScheduler.from_pretrained(folder / "scheduler"),
    )
    np.testing.assert_array_equal(generate(pipe), generate(reference))


def test_allow_pickle_loads_a_ckpt_with_the_same_weights(
    sd15: TinyCheckpoint, tmp_path: Path, no_network: list[object]
) -> None:
    ckpt = tmp_path / "model.ckpt"
    # Lightning checkpoints nest the weights under "state_dict"; both loaders unwrap it.
    torch.save({"state_dict": diffusers_to_ldm_state_dict(**sd15.components)}, ckpt)
    pipe = load_single_file(ckpt, allow_pickle=True, configs=sd15.configs)
    assert type(pipe) is StableDiffusionPipeline
    assert_same_weights(pipe, sd15.components)


class _Payload:
    """Unpickling this creates a directory: the kind of side effect a malicious .ckpt would have."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def test_allow_pickle_still_refuses_to_run_code(
    sd15: TinyCheckpoint, tmp_path: Path, no_network: list[object]
) -> None:
    marker = tmp_path / "payload-ran"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"model.diffusion_model.x": _Payload(marker)}, ckpt)
    with pytest.raises(ValueError, match="evil.ckpt could not be unpickled as plain tensors"):
        load_single_file(ckpt, allow_pickle=True, configs=sd15.configs)  # our key scan
    with pytest.raises(OSError, match="Unable to load weights"):
        load_single_file(ckpt, family="sd15", allow_pickle=True, configs=sd15.configs)  # diffusers' weights_only load
    assert not marker.exists()


def _write(path: Path, content: bytes | dict[str, torch.Tensor]) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save_file(content, path)
    return path


@pytest.mark.parametrize(("name", "content", "message"), [
    ("model.ckpt", b"never read", "model.ckpt: pickle checkpoints \\(.ckpt/.bin\\) can run code when loaded; "
     "convert to .safetensors or pass --allow-pickle"),
    ("weights.bin", b"never read", "weights.bin: pickle checkpoints"),
    ("lora.safetensors", {"lora_unet_down_blocks_0.alpha": torch.ones(1)},
     "lora.safetensors is not a Stable Diffusion 1.x or SDXL checkpoint"),
    ("sd21.safetensors", {"model.diffusion_model.out.2.weight": torch.ones(1),
                          "cond_stage_model.model.token_embedding.weight": torch.ones(1)},
     "sd21.safetensors is a Stable Diffusion 2.x checkpoint"),
    ("broken.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}",
     "broken.safetensors is not a readable .safetensors file"),
])
def test_load_single_file_refuses_what_it_cannot_load_safely(
    tmp_path: Path, name: str, content: bytes | dict[str, torch.Tensor], message: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message):
        load_single_file(path, configs=tmp_path)


def test_load_single_file_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_single_file(tmp_path / "missing.safetensors")


def test_detect_family_uses_the_text_encoder_keys(tmp_path: Path) -> None:
    sd1 = {"model.diffusion_model.out.2.weight", "cond_stage_model.transformer.text_model.final_layer_norm.weight"}
    sdxl = {"model.diffusion_model.out.2.weight", "conditioner.embedders.0.transformer.text_model.x",
            "conditioner.embedders.1.model.positional_embedding"}
    assert family_from_keys(sd1, "a") == "sd15"
    assert family_from_keys(sdxl, "b") == "sdxl"
    refiner = {"model.diffusion_model.out.2.weight", "conditioner.embedders.0.model.text_projection"}
    with pytest.raises(ValueError, match="refiner.safetensors is not a Stable Diffusion 1.x or SDXL checkpoint"):
        family_from_keys(refiner, "refiner.safetensors")
    path = _write(tmp_path / "xl.safetensors", {key: torch.zeros(1) for key in sdxl})
    assert detect_family(path) == "sdxl"
