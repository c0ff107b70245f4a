"""Models on the Hugging Face hub: their catalogue entries (cached or not) and their downloads into the standard
HF cache, with progress for the user."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.models.entries import ModelEntry, tree_size

logger = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
DOWNLOAD_POLL_S = 1.0
OFFLINE_STATUS = "not downloaded (offline)"  # a hub model that cannot be fetched: not in the cache, and offline


class ModelError(RuntimeError):
    """A model that cannot be found, read or fetched; the message is meant for the user."""


def offline_reason(repo_id: str) -> str:
    return (f"model {repo_id} is not downloaded and Atelier is offline; run once with a network connection "
            "(without --offline) to fetch it")


def hub_entry(repo_id: str, licence: str = "see the model card on the hub", restriction: str = "",
              about: str = "", *, kind: str = "text_to_image", defaults: dict[str, Any] | None = None,
              family: str = "") -> ModelEntry:
    folder = hub_repo_folder(repo_id)
    cached = (folder / "snapshots").is_dir()
    size = tree_size(folder / "blobs") if cached else None
    status = "downloaded" if cached else (OFFLINE_STATUS if hub_offline() else "downloads on first use")
    # `hub` makes the loader take the source as a repo id only: "assets/models" is a repo id in form, and must not
    # become a folder of the worker's working directory because someone typed it
    return ModelEntry(id=repo_id, kind=kind, source=repo_id, origin="hub", licence=licence,
                      restriction=restriction, size_bytes=size, description=about, status=status,
                      load_options={"hub": True}, defaults=defaults or {}, family=family)


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


def download_hub_model(repo_id: str, on_status: Callable[[str], None] | None, *,
                       allow_patterns: list[str] | None = None) -> Path:
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
            raise ModelError(offline_reason(repo_id)) from None
        raise ModelError(f"cannot download model {repo_id}: {e}") from None
    finally:
        if watcher:
            watcher.stop()


class _DownloadWatcher(threading.Thread):
    """Reports how many bytes of a repo are in the cache, once a second (huggingface_hub's bars are tqdm in
    the worker's log; the user sees this line instead)."""

    def __init__(self, repo_id: str, on_status: Callable[[str], None]) -> None:
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
