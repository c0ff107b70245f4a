"""Load A1111/Civitai single-file Stable Diffusion checkpoints (SD 1.x, SDXL) with diffusers, fully offline.

A single-file checkpoint keeps every component's weights under the original CompVis/Stability key names
(`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*` / `conditioner.embedders.*`). diffusers'
`from_single_file` converts them, but it also needs each component's diffusers config, which it would otherwise
download from the Hub; the configs come from the folders shipped in `assets/configs/` (see its README).
"""

from __future__ import annotations

import logging
import pickle
import typing
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open

if typing.TYPE_CHECKING:
    from diffusers import DiffusionPipeline

logger = logging.getLogger(__name__)

Family = Literal["sd15", "sdxl"]
REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "assets" / "configs"
PICKLE_REFUSAL = ("pickle checkpoints (.ckpt/.bin) can run code when loaded; "
                  "convert to .safetensors or pass --allow-pickle")

UNET_PREFIX = "model.diffusion_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."  # CLIP ViT-L/14 through transformers (LDM FrozenCLIPEmbedder)
SD2_TEXT_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H/14 (FrozenOpenCLIPEmbedder)
SDXL_TEXT_2_PREFIX = "conditioner.embedders.1."  # SDXL base: embedders.0 is CLIP ViT-L, embedders.1 OpenCLIP bigG


def checkpoint_keys(path: Path, *, allow_pickle: bool = False) -> set[str]:
    """The tensor names of a checkpoint; for .safetensors only the JSON header is read, never a tensor."""
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if path.suffix.lower() == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as checkpoint:
                return set(checkpoint.keys())
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path.name} is not a readable .safetensors file: {e}") from e
    if not allow_pickle:
        raise ValueError(f"{path.name}: {PICKLE_REFUSAL}")
    # weights_only=True unpickles tensors and containers only (what diffusers' own loader does, see
    # load_single_file); mmap avoids a second copy of a multi-GB file but needs the zip format of torch.save.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path.name} could not be unpickled as plain tensors (weights_only=True): {e}") from e
    while isinstance(state, dict) and "state_dict" in state:  # Lightning-style wrappers, as diffusers unwraps them
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} does not hold a state dict (found {type(state).__name__})")
    return {str(key) for key in state}


def family_from_keys(keys: Iterable[str], name: str) -> Family:
    """Return "sd15" or "sdxl" from a checkpoint's key names; ValueError naming `name` for anything else."""
    names = set(keys)

    def has(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in names)

    if has(UNET_PREFIX) and has(SDXL_TEXT_2_PREFIX):
        return "sdxl"
    if has(SD2_TEXT_PREFIX):
        # Out of scope: SD 2.x needs 1024-d cross-attention, OpenCLIP ViT-H and (768 px) v-prediction configs.
        raise ValueError(f"{name} is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder, `{SD2_TEXT_PREFIX}*`); "
                         "only Stable Diffusion 1.x and SDXL checkpoints are supported")
    if has(UNET_PREFIX) and has(SD1_TEXT_PREFIX):
        return "sd15"
    raise ValueError(f"{name} is not a Stable Diffusion 1.x or SDXL checkpoint: expected a `{UNET_PREFIX}*` UNet "
                     f"with a `{SD1_TEXT_PREFIX}*` (SD 1.x) or `{SDXL_TEXT_2_PREFIX}*` (SDXL) text encoder")


def detect_family(path: Path, *, allow_pickle: bool = False) -> Family:
    """Which Stable Diffusion family a checkpoint file holds, from its key names alone."""
    return family_from_keys(checkpoint_keys(path, allow_pickle=allow_pickle), path.name)


def load_single_file(
    path: Path,
    *,
    family: Family | None = None,
    torch_dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
    configs: Path = CONFIGS_DIR,
    config_folder: Path | None = None,
) -> DiffusionPipeline:
    """A StableDiffusionPipeline (sd15) or StableDiffusionXLPipeline (sdxl) from one checkpoint file, offline.

    `family=None` detects it from the keys. Files other than .safetensors are refused unless `allow_pickle`.
    `torch_dtype=None` means float32. `configs` is the folder holding `sd15/` and `sdxl/` (tests pass tiny ones);
    `config_folder`, when given, is the one diffusers config folder to use instead (a fine-tune whose architecture
    differs from the base model's).
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(path)
    if path.suffix.lower() != ".safetensors" and not allow_pickle:
        raise ValueError(f"{path.name}: {PICKLE_REFUSAL}")
    if family is None:
        family = detect_family(path, allow_pickle=allow_pickle)
    elif family not in ("sd15", "sdxl"):
        raise ValueError(f"`family` must be 'sd15' or 'sdxl', got {family!r}")
    elif not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    config_folder = config_folder or configs / family
    if not (config_folder / "model_index.json").is_file():
        raise FileNotFoundError(f"no diffusers config folder for {family} at {config_folder}")
    pipeline_class = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    logger.info("loading %s as %s with configs from %s", path.name, family, config_folder)
    # What keeps diffusers 0.42's `from_single_file` off the network (loaders/single_file.py):
    # - `config=` an existing local folder is used as is (`os.path.isdir`): no `fetch_diffusers_config` guess of a
    #   Hub repo from the keys and no `snapshot_download`; every component reads its config from that folder.
    # - `local_files_only=True` reaches every sub-loader (`load_config`, the tokenizers' and scheduler's
    #   `from_pretrained`), so a missing file fails here instead of falling back to the Hub.
    # - no `original_config`: the LDM yaml is not needed with a config folder; given one, diffusers would build the
    #   UNet/VAE configs from it instead of the folder (and fetch it if it is a URL).
    # - a local file path (`os.path.isfile`) is never parsed as a Hub URL; only then is the checkpoint read.
    # - The pipeline class is the class `from_single_file` is called on (`_get_pipeline_class(cls, config=None)`
    #   returns `cls`); `_class_name` in model_index.json is ignored and DiffusionPipeline has no from_single_file.
    # - `safety_checker` is never loaded by from_single_file (SINGLE_FILE_OPTIONAL_COMPONENTS) and is optional,
    #   so the pipeline gets None; sd15/model_index.json says `requires_safety_checker: false`, so no warning.
    # - A non-safetensors file goes through `torch.load(..., weights_only=True)` in diffusers'
    #   `models.model_loading_utils.load_state_dict`, which refuses pickled code; we still refuse it by default.
    # `torch_dtype` is always passed: with None every component keeps the dtype its model class picks, and
    # transformers 5 builds SDXL's CLIPTextModelWithProjection in the float16 its official config records while
    # the rest stays float32, which breaks the first matmul that mixes them.
    return pipeline_class.from_single_file(
        str(path),
        config=str(config_folder),
        local_files_only=True,
        torch_dtype=torch_dtype or torch.float32,
    )
