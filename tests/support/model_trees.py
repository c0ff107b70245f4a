"""Tiny but real model files of every kind the library knows (real safetensors headers with each tool's tensor
names and shapes, a few KB each), and A1111/Forge, ComfyUI and Atelier folder trees made of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from pipelines.models import Library

CONTEXT = {"sd1": 768, "sd2": 1024, "sdxl": 2048}
RANK = 2


def _save(path: Path, tensors: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in tensors.items()}, str(path), metadata)
    return path


def checkpoint(path: Path, family: str = "sd1") -> Path:
    text = {"sd1": "cond_stage_model.transformer.text_model.embeddings.position_ids",
            "sd2": "cond_stage_model.model.positional_embedding",
            "sdxl": "conditioner.embedders.1.model.positional_embedding"}[family]
    return _save(path, {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
                        (4, CONTEXT[family]), text: (1, 2), "first_stage_model.decoder.conv_out.weight": (3, 1, 1, 1)})


def lora(path: Path, family: str = "sd1", *, tags: dict[str, int] | None = None) -> Path:
    """A kohya LoRA (SDXL ones carry two text encoders, `lora_te1_`/`lora_te2_`)."""
    unet = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    tensors = {f"{unet}.lora_down.weight": (RANK, CONTEXT[family]), f"{unet}.lora_up.weight": (4, RANK),
               f"{unet}.alpha": ()}
    if family == "sdxl":
        tensors["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = (RANK, 8)
    else:
        tensors["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = (RANK, 8)
    metadata = {"ss_network_dim": str(RANK), "ss_base_model_version": {"sd1": "sd_v1", "sd2": "sd_2.0",
                                                                       "sdxl": "sdxl_base_v1-0"}[family]}
    if tags:
        metadata["ss_tag_frequency"] = json.dumps({"10_dataset": tags})
    return _save(path, tensors, metadata)


def lycoris(path: Path, family: str = "sd1") -> Path:
    """A LyCORIS LoHa: no lora_down/lora_up, Hadamard factors instead."""
    unet = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    return _save(path, {f"{unet}.hada_w1_a": (4, RANK), f"{unet}.hada_w1_b": (RANK, CONTEXT[family]),
                        f"{unet}.alpha": ()})


def embedding(path: Path, family: str = "sd1", vectors: int = 2) -> Path:
    if family == "sdxl":
        return _save(path, {"clip_l": (vectors, 768), "clip_g": (vectors, 1280)})
    return _save(path, {"emb_params": (vectors, CONTEXT[family])})


def controlnet(path: Path, family: str = "sd1") -> Path:
    return _save(path, {"control_model.input_hint_block.0.weight": (16, 3, 3, 3),
                        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (4, CONTEXT[family])})


def vae(path: Path) -> Path:
    return _save(path, {"encoder.conv_in.weight": (4, 3, 3, 3), "decoder.conv_out.weight": (3, 4, 3, 3),
                        "quant_conv.weight": (8, 8, 1, 1)})


def esrgan(path: Path) -> Path:
    """Real-ESRGAN's RRDBNet layout (conv_first, body.N.rdbK…)."""
    return _save(path, {"conv_first.weight": (4, 3, 3, 3), "body.0.rdb1.conv1.weight": (4, 4, 3, 3),
                        "conv_last.weight": (3, 4, 3, 3)})


def srvgg(path: Path) -> Path:
    """Real-ESRGAN compact (SRVGGNetCompact): a plain body of convolutions and PReLUs."""
    return _save(path, {"body.0.weight": (4, 3, 3, 3), "body.0.bias": (4,), "body.1.weight": (4,),
                        "body.2.weight": (12, 4, 3, 3), "body.2.bias": (12,)})


def preview(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    Image.new("RGB", (32, 24), colour).save(path)
    return path


def a1111_tree(webui: Path) -> dict[str, Path]:
    """A webui folder: `models/<Kind>/…` with subfolders and sidecars, `embeddings/` beside `models/`."""
    models = webui / "models"
    files = {
        "checkpoint": checkpoint(models / "Stable-diffusion" / "dreamy.safetensors", "sd1"),
        "checkpoint_xl": checkpoint(models / "Stable-diffusion" / "xl" / "bigxl.safetensors", "sdxl"),
        "lora": lora(models / "Lora" / "styles" / "ink.safetensors", "sd1", tags={"ink wash": 9, "monochrome": 4}),
        "lora_xl": lora(models / "Lora" / "glow_xl.safetensors", "sdxl"),
        "lycoris": lycoris(models / "LyCORIS" / "loha_paper.safetensors", "sd1"),
        "vae": vae(models / "VAE" / "clear-vae.safetensors"),
        "controlnet": controlnet(models / "ControlNet" / "control_canny.safetensors", "sd1"),
        "esrgan": esrgan(models / "ESRGAN" / "4x_ultra.safetensors"),
        "realesrgan": srvgg(models / "RealESRGAN" / "realesr-general-x4v3.safetensors"),
        "embedding": embedding(webui / "embeddings" / "badhands.safetensors", "sd1"),
        "embedding_xl": embedding(webui / "embeddings" / "xl_style.safetensors", "sdxl"),
    }
    preview(files["lora"].with_suffix(".preview.png"))
    preview(files["checkpoint"].with_suffix(".png"), (40, 200, 40))
    files["lora"].with_suffix(".json").write_text(json.dumps({
        "description": "ink wash style", "activation text": "inkwash, brush strokes", "sd version": "SD1"}))
    files["lora_xl"].with_name("glow_xl.civitai.info").write_text(json.dumps({
        "trainedWords": ["glowing"], "baseModel": "SDXL 1.0", "model": {"name": "Glow XL"}}))
    return files


def comfyui_tree(comfy: Path) -> dict[str, Path]:
    """A ComfyUI folder: `models/checkpoints`, `loras`, `vae`, `embeddings`, `controlnet`, `upscale_models`."""
    models = comfy / "models"
    files = {
        "checkpoint": checkpoint(models / "checkpoints" / "sd2" / "wide.safetensors", "sd2"),
        "lora": lora(models / "loras" / "styles" / "ink.safetensors", "sd1"),
        "vae": vae(models / "vae" / "ae.safetensors"),
        "embedding": embedding(models / "embeddings" / "neg.safetensors", "sd2", vectors=4),
        "controlnet": controlnet(models / "controlnet" / "depth_xl.safetensors", "sdxl"),
        "upscaler": esrgan(models / "upscale_models" / "4x-fast.safetensors"),
    }
    preview(files["upscaler"].with_suffix(".preview.png"), (40, 40, 200))
    return files


def scanned(folder: Path | None = None, folder_classes: Mapping[str, str] | None = None) -> Library:
    """A library of `folder` alone (no bundled models), scanned."""
    library = Library([folder] if folder else [], bundled=None)
    library.scan(folder_classes or {})
    return library
