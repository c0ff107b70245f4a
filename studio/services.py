"""build_services: the composition root. Every service gets what it needs through its constructor here."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.catalog import Catalog
from studio.accounts import Accounts
from studio.config import StudioConfig
from studio.gallery import Artwork, GalleryStore, Recipe
from studio.gallery.inputs import REFS_IN_TEXT, InputStore
from studio.generation import GenerationService
from studio.jobs import JobEvents, JobNotFound, SqliteJobQueue
from studio.presets import PresetStore
from studio.styles import StyleStore
from studio.workers.backend import LocalBackend, WorkerBackend
from studio.workers.devices import resolve_devices
from studio.workers.pool import WorkerPool, WorkerStatus

logger = logging.getLogger(__name__)


class DataDirBusy(RuntimeError):
    pass


@dataclass
class Services:
    config: StudioConfig
    catalog: Catalog
    queue: SqliteJobQueue
    gallery: GalleryStore
    inputs: InputStore
    events: JobEvents
    generation: GenerationService
    pool: WorkerPool
    accounts: Accounts
    presets: PresetStore
    styles: StyleStore
    _lock: FileLock | None = field(default=None, repr=False)

    def start(self) -> None:
        """Reconcile what a previous run left (files, running jobs), then start the workers."""
        report = self.gallery.reconcile()
        recovered = self.queue.recover()
        if recovered:
            logger.warning("%d job(s) were running when the studio last stopped", len(recovered))
        self.generation.settle_recovered(recovered)
        recipes = self.gallery.recipes_containing("in-")
        adopted = self.inputs.adopt(_input_users(recipes))
        if adopted:
            logger.info("%d input picture(s) stored before uploads were claimed now belong to their artworks' owners",
                        adopted)
        texts = [*self.queue.params_containing("in-"), *recipes]
        removed = self.inputs.sweep({ref for text in texts for ref in REFS_IN_TEXT.findall(text)})
        if removed:
            logger.info("removed %d input picture(s) that no job or artwork uses", removed)
        logger.info("gallery: %d re-indexed, %d missing removed; %d jobs pending", report.indexed, report.removed,
                    self.queue.pending_count())
        self.pool.start()

    # -- who sees which artworks: the one place of the rule, for the UI, the API and the file routes -------
    def gallery_owner(self, user: str) -> str | None:
        """The owner filter of `user`'s gallery: their own artworks, or everyone's with --shared-gallery."""
        return None if self.config.shared_gallery else user

    def may_view(self, artwork: Artwork, user: str) -> bool:
        return artwork.owner == user or self.config.shared_gallery

    def may_change(self, artwork: Artwork, user: str) -> bool:
        """Favourite, delete: the owner only, shared gallery or not."""
        return artwork.owner == user

    def workers_seen_by(self, user: str) -> list[WorkerStatus]:
        """The workers as `user` may see them (health page, Models tab): their own running jobs by id, everyone
        else's only counted, since an id leads to its job's progress and artworks (`<job>-<n>`)."""

        def mine(job_id: str) -> bool:
            try:
                return self.queue.get(job_id).owner == user
            except JobNotFound:  # finished and gone while we looked
                return False

        return [w.seen_by(mine) for w in self.pool.status()]

    def stop(self) -> None:
        self.pool.stop()
        self.queue.close()
        self.inputs.close()
        self.gallery.close()
        self.presets.close()
        self.styles.close()
        self.catalog.library.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _input_users(recipes: list[str]) -> dict[str, set[str]]:
    """Input ref → the owners of the artworks (recipes as JSON) whose params name it."""
    users: dict[str, set[str]] = {}
    for text in recipes:
        try:
            recipe = Recipe.from_json(text)
        except ValueError:
            continue  # the gallery reports a corrupt recipe where it is read
        for ref in REFS_IN_TEXT.findall(json.dumps(recipe.params)):
            users.setdefault(ref, set()).add(recipe.owner)
    return users


def build_services(config: StudioConfig) -> Services:
    accounts = Accounts.from_sources(config.auth_pairs, config.logins_files)  # a bad logins file stops us here
    if config.offline:  # read where models are listed and loaded: here, and in every worker (which inherit it)
        os.environ["HF_HUB_OFFLINE"] = "1"
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(data_dir)
    try:
        backend = worker_backend(config)
    except BaseException:
        lock.release()
        raise
    catalog = Catalog(plugins=config.plugins, models_dirs=config.models_dirs, allow_pickle=config.allow_pickle,
                      hash_db=config.data_dir / "model_hashes.sqlite3")
    queue = SqliteJobQueue(data_dir / "jobs.db", max_pending=config.max_queue,
                           max_pending_per_owner=config.max_queue_per_user)
    gallery = GalleryStore(data_dir / "gallery")
    inputs = InputStore(data_dir / "inputs", quota_bytes=round(config.max_input_mb_per_user * 1e6))
    presets = PresetStore(data_dir)
    styles = StyleStore(data_dir)
    events = JobEvents()
    generation = GenerationService(queue, catalog, gallery, inputs, events, config.job_caps, styles)
    pool = WorkerPool(backend, queue, events, generation.prepare, generation.deliver, max_batch=config.max_batch)
    return Services(config, catalog, queue, gallery, inputs, events, generation, pool, accounts, presets, styles, lock)


def worker_backend(config: StudioConfig) -> WorkerBackend:
    """Where the model workers run: this machine's devices, or actors on a Ray cluster (`--backend ray`)."""
    if config.backend != "ray":
        return LocalBackend(resolve_devices(config.devices), budget=config.memory_budget,
                            log_level=config.logging_level, in_process=config.in_process_workers,
                            device_options=config.device_options)
    try:
        from studio.workers.ray_backend import RayBackend
    except ImportError:
        raise ValueError('--backend ray needs Ray, which is not installed here: pip install "atelier[ray]"') from None
    try:
        return RayBackend(address=config.ray_address, workers=config.ray_workers,
                          cpus_per_worker=config.ray_worker_cpus, budget=config.memory_budget,
                          device_options=config.device_options, log_level=config.logging_level,
                          environment={"HF_HUB_OFFLINE": "1"} if config.offline else {})
    except ConnectionError as e:
        where = f"at {config.ray_address}" if config.ray_address else "(no --ray-address: RAY_ADDRESS, or here)"
        raise ValueError(f"--backend ray: could not reach a Ray cluster {where}: {e}") from None


def _lock_data_dir(data_dir: Path) -> FileLock:
    """One studio per data dir: two would both 'recover' each other's running jobs."""
    lock = FileLock(data_dir / "atelier.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DataDirBusy(
            f"{data_dir} is in use by another running Atelier; stop it or pass another --data-dir"
        ) from None
    return lock
