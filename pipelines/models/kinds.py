"""The kinds of model file the library knows, and the base families a file may belong to.

A kind says what a file is (a checkpoint, a LoRA…), whatever loads it; a pipeline names the kinds it loads. A family
says which base model a file was made for: a LoRA trained on SD 1.5 does not fit an SDXL checkpoint.
"""

from __future__ import annotations

CHECKPOINT = "checkpoint"  # a whole text-to-image model: a diffusers folder or one file
VAE = "vae"  # an autoencoder: a checkpoint's replacement VAE, or a model of its own for VAE sampling
LORA = "lora"  # a low-rank adapter, kohya or peft layout, LyCORIS variants included
EMBEDDING = "embedding"  # a textual-inversion embedding
CONTROLNET = "controlnet"
UPSCALER = "upscaler"  # an ESRGAN-family super-resolution network
GAN = "gan"  # an Atelier GAN generator folder
STYLE = "style"  # a fast style-transfer network
OTHER = ""  # a file or folder the library cannot place: listed with its reason

KINDS: dict[str, str] = {  # kind → what the Models tab calls it, in the tab's order
    CHECKPOINT: "Checkpoint", VAE: "VAE", LORA: "LoRA", EMBEDDING: "Embedding", CONTROLNET: "ControlNet",
    UPSCALER: "Upscaler", GAN: "GAN", STYLE: "Style network", OTHER: "Unrecognised",
}

SD1, SD2, SDXL = "sd1", "sd2", "sdxl"
FAMILIES: dict[str, str] = {SD1: "SD 1.x", SD2: "SD 2.x", SDXL: "SDXL"}

# The width of a family's text conditioning, which every file made for it carries in its tensors' shapes: the
# cross-attention keys of a UNet, LoRA or ControlNet and the vectors of an embedding.
CONTEXT_WIDTH = {768: SD1, 1024: SD2, 2048: SDXL}


def fits(family: str, base: str) -> bool:
    """Whether a file of `family` can be used with a model of family `base`; an unknown family on either side is
    allowed (the load will tell), a known mismatch is not."""
    return not family or not base or family == base


def family_from_label(text: str) -> str:
    """A family from the words other tools write: kohya's `ss_base_model_version` ("sdxl_base_v1-0", "sd_v1",
    "sd_2.0_768_v"), A1111's "sd version" ("SD1", "SDXL"), civitai's `baseModel` ("SD 1.5", "SDXL 1.0",
    "Pony"); "" when it names none of the three."""
    words = text.lower().replace(" ", "").replace("_", "").replace("-", "")
    if "xl" in words or "pony" in words or "illustrious" in words:
        return SDXL
    if words.startswith(("sd2", "sdv2", "sd2.")) or words in ("v2", "sd21", "sd20"):
        return SD2
    if words.startswith(("sd1", "sdv1")) or words in ("v1", "sd15", "sd14"):
        return SD1
    return ""
