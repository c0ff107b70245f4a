"""Tiny random Stable Diffusion XL components for offline tests (the diffusers test recipe: seed before each
network): both CLIP text encoders (32 wide each, the second with a 32-wide projection), a UNet with SDXL's added
size and text embeddings, the tiny VAE of tiny_sd.py, and the real tokenizers shipped in assets/configs/sdxl (the
second pads with "!", as open_clip does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.support.tiny_sd import ROOT, kohya_text_name, tiny_vae, write_kohya_lora

CONFIGS = ROOT / "assets" / "configs" / "sdxl"


def tiny_sdxl_components() -> dict[str, object]:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    # cross attention reads both encoders' states side by side (32 + 32); the added embedding takes the pooled
    # projection (32) and the six size/crop ids of 8 each (48): 80 inputs
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=4,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
    )
    vae = tiny_vae()
    clip = {"bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407, "hidden_size": 32,
            "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 49408,
            "max_position_embeddings": 77}
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip, projection_dim=32, hidden_act="gelu"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2,
            "tokenizer": CLIPTokenizer.from_pretrained(CONFIGS / "tokenizer"),
            "tokenizer_2": CLIPTokenizer.from_pretrained(CONFIGS / "tokenizer_2"), "scheduler": scheduler,
            "image_encoder": None, "feature_extractor": None}


def save_tiny_sdxl(folder: Path) -> Path:
    """A complete diffusers folder (model_index.json + components) of a tiny SDXL model."""
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline(**tiny_sdxl_components()).save_pretrained(folder)
    return folder


def save_tiny_sdxl_lora(path: Path, pipe: Any, *, seed: int = 0, scale: float = 0.5, rank: int = 2) -> Path:
    """A kohya-format SDXL LoRA as kohya's sd-scripts names one: the UNet's layers by the original (SGM) UNet's
    block names (input_blocks / middle_block / output_blocks), the encoders as lora_te1 and lora_te2."""
    lpb = pipe.unet.config.layers_per_block
    return write_kohya_lora(path, [("lora_unet", pipe.unet, lambda name: sgm_name(name, lpb)),
                                   ("lora_te1", pipe.text_encoder, kohya_text_name),
                                   ("lora_te2", pipe.text_encoder_2, kohya_text_name)],
                            "sdxl_base_v1-0", seed=seed, scale=scale, rank=rank)


def sgm_name(name: str, layers_per_block: int) -> str:
    """A diffusers UNet attention module's name as the original SDXL UNet names it: a down block's attention a of
    block b sits in input block 1 + b·(layers + 1) + a (input block 0 is conv_in, each level ends in a downsampler),
    an up block's in output block b·(layers + 1) + a; the transformer is the block's second part (index 1)."""
    parts = name.split(".")
    if parts[0] == "mid_block":
        return ".".join(["middle_block", "1", *parts[3:]])
    block, attention = int(parts[1]), int(parts[3])
    if parts[0] == "down_blocks":
        return ".".join(["input_blocks", str(1 + block * (layers_per_block + 1) + attention), "1", *parts[4:]])
    return ".".join(["output_blocks", str(block * (layers_per_block + 1) + attention), "1", *parts[4:]])
