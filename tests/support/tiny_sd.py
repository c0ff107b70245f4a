"""Tiny random Stable Diffusion 1.x components for offline tests (the diffusers test recipe: seed before each
network), with the real CLIP tokenizer shipped in assets/configs/sd15/tokenizer."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

ROOT = Path(__file__).resolve().parent.parent.parent
TOKENIZER = ROOT / "assets" / "configs" / "sd15" / "tokenizer"


def tiny_components() -> dict[str, object]:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=4,
    )
    vae = tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=32, intermediate_size=64,
        num_attention_heads=4, num_hidden_layers=3, vocab_size=49408, max_position_embeddings=77,
    ))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": CLIPTokenizer.from_pretrained(
        TOKENIZER), "scheduler": scheduler, "safety_checker": None, "feature_extractor": None,
        "image_encoder": None}


def tiny_vae() -> AutoencoderKL:
    """A random KL autoencoder with two resolution levels (f = 2), 4 latent channels and 32² native size."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=32,
    )


def save_tiny_vae(folder: Path) -> Path:
    """The tiny VAE as a diffusers model folder (config.json + diffusion_pytorch_model.safetensors)."""
    tiny_vae().save_pretrained(folder)
    return folder


def save_tiny_sd(folder: Path) -> Path:
    """A complete diffusers folder (model_index.json + components) of a tiny SD 1.x model."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**tiny_components(), requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def install_in_hub_cache(folder: Path, cache: Path, repo_id: str) -> str:
    """Lay a saved model out as huggingface_hub's cache does (refs/main → snapshots/<commit>/…); returns the
    commit, so the hub-id code path can be exercised without a network."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


def save_tiny_checkpoint(checkpoint: Path) -> Path:
    """The tiny model as one A1111-style `.safetensors` file (original LDM key names) plus the sidecar config
    folder `<name>.config/` that tells the loader its (tiny) architecture."""
    from safetensors.torch import save_file

    from pipelines.model_sources import sidecar_config
    from tests.support.ldm_checkpoint import diffusers_to_ldm_state_dict

    parts = tiny_components()
    save_file(diffusers_to_ldm_state_dict(parts["unet"], parts["vae"], parts["text_encoder"]), str(checkpoint))
    config = sidecar_config(checkpoint)
    shutil.copytree(ROOT / "assets" / "configs" / "sd15", config)
    for name in ("unet", "vae"):
        parts[name].save_config(config / name)
    parts["text_encoder"].config.save_pretrained(config / "text_encoder")
    return checkpoint


def save_tiny_lora(path: Path, pipe: object, *, seed: int = 0, scale: float = 0.5, rank: int = 2) -> Path:
    """A kohya-format LoRA (lora_down/lora_up/alpha, A1111's key names) for every attention projection of the
    tiny model's UNet and text encoder: random factors, so it changes the picture visibly. kohya names an SD 1.x
    UNet's layers by their diffusers names."""
    return write_kohya_lora(path, [("lora_unet", pipe.unet, None), ("lora_te", pipe.text_encoder, kohya_text_name)],
                            "sd_v1", seed=seed, scale=scale, rank=rank)


def kohya_text_name(name: str) -> str:
    """A CLIP text encoder's layer as kohya names it: under text_model, as transformers 4 laid CLIPTextModel out (5
    flattened it; diffusers strips the level again where the encoder has none)."""
    return name if name.startswith("text_model.") else f"text_model.{name}"


def write_kohya_lora(path: Path, parts: Sequence[tuple[str, torch.nn.Module, Callable[[str], str] | None]],
                     base_version: str, *, seed: int, scale: float, rank: int) -> Path:
    """Random kohya factors for the attention projections of each (key prefix, module, module name → kohya's
    name for it) of `parts`."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module, rename in parts:
        for name, layer in module.named_modules():
            if isinstance(layer, torch.nn.Linear) and name.split(".")[-1] in (
                    "to_q", "to_k", "to_v", "0", "q_proj", "k_proj", "v_proj", "out_proj") and "attn" in name:
                key = f"{prefix}_{(rename(name) if rename else name).replace('.', '_')}"
                tensors[f"{key}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=generator) * scale
                tensors[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=generator) * scale
                tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), {"ss_network_dim": str(rank), "ss_base_model_version": base_version})
    return path


def tiny_sd_library(models: Path) -> Path:
    """A models folder with the tiny SD model (`tiny-sd`), a LoRA for it (`ink`), a one-vector embedding
    (`paperstyle`) and a wildcards folder (`__colors__`)."""
    from types import SimpleNamespace

    from safetensors.torch import save_file

    save_tiny_sd(models / "tiny-sd")
    parts = tiny_components()
    save_tiny_lora(models / "ink.safetensors", SimpleNamespace(**parts), seed=1)  # kinds read from the files
    vectors = torch.randn(1, 32, generator=torch.Generator().manual_seed(3))
    save_file({"emb_params": vectors}, str(models / "paperstyle.safetensors"))
    (models / "wildcards").mkdir(parents=True, exist_ok=True)
    (models / "wildcards" / "colors.txt").write_text("red\ngreen\nblue\n")
    return models
