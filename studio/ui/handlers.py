"""UI event handlers: widget values → service calls → widget values. The one place gr.Error is raised.

Each handler is thin: the services validate and do the work; a handler turns their answers (and their
errors, which are written for people) into what the widgets show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.catalog import UnknownModel, UnknownPipeline
from studio.accounts import LOCAL_USER
from studio.gallery import Artwork, ArtworkNotFound, metadata
from studio.jobs import Job, JobError, JobEvent, JobNotFound, JobStatus
from studio.services import Services
from studio.ui.forms import Binding
from studio.workers.protocol import MemoryUse

logger = logging.getLogger(__name__)

PAGE_SIZE = 48
USER_ERRORS = (ValueError, JobError, UnknownModel, UnknownPipeline, ArtworkNotFound)


def user_of(request: gr.Request | None) -> str:
    return (request.username if request is not None else None) or LOCAL_USER


@dataclass
class GeneratorOutputs:
    """What one step of a running job shows: status text, live preview, finished images, job id."""

    status: str
    preview: Any = None
    images: Any = None
    job_id: str = ""

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.status, self.preview, gr.skip() if self.images is None else self.images, self.job_id)


class Handlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- generator tabs ---------------------------------------------------------------------------------
    def generate(self, kind: str, bindings: Sequence[Binding], model: str, seed: float, values: Sequence[Any],
                 request: gr.Request | None, progress: gr.Progress | None = None) -> Iterator[tuple[Any, ...]]:
        try:
            params: dict[str, Any] = {}
            for binding, value in zip(bindings, values, strict=True):
                params.update(binding.to_params(value, self.services.inputs))
            job = self.services.generation.submit(kind, model, params, seed, owner=user_of(request))
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None
        yield GeneratorOutputs(self._waiting_text(job), job_id=job.id).as_tuple()
        for update in self.services.generation.follow(job.id):
            if progress is not None and isinstance(update, JobEvent) and update.kind == "progress" and update.total:
                progress((update.step, update.total), unit="steps")  # the bar with an ETA over the results
            outputs = self._on_event(job, update) if isinstance(update, JobEvent) else self._on_state(update)
            if outputs is not None:
                yield outputs.as_tuple()

    def _on_event(self, job: Job, event: JobEvent) -> GeneratorOutputs | None:
        if event.kind == "progress" and not event.total:
            return GeneratorOutputs(event.message or "Loading the model…", job_id=job.id)
        if event.kind == "progress":
            return GeneratorOutputs(f"Step {event.step} of {event.total}", event.preview, job_id=job.id)
        if event.kind == "started":
            return GeneratorOutputs("Loading the model and starting…", job_id=job.id)
        if event.kind == "completed":
            artworks = [self.services.gallery.get(i) for i in event.image_ids]
            status = f"Done: {_saved(artworks)} saved to the gallery (seed {job.spec.seed})"
            if artworks:
                info = artworks[0].recipe.info
                warnings = [*info.get("warnings", [])]
                if info.get("partial"):
                    warnings.append("stopped early: these images are partial")
                status += "".join(f"\n\n{note}" for note in info.get("notes", []))
                status += "".join(f"\n\n⚠ {warning}" for warning in warnings)
            return GeneratorOutputs(status, None, [_gallery_item(a) for a in artworks], job.id)
        if event.kind == "canceled":
            return GeneratorOutputs("Stopped.", None, [], job.id)
        if event.kind == "requeued":
            return GeneratorOutputs(f"Waiting to run again: {event.message}", job_id=job.id)
        raise gr.Error(event.message or "the job failed")

    def _on_state(self, job: Job) -> GeneratorOutputs | None:
        if job.status is JobStatus.PENDING:
            return GeneratorOutputs(self._waiting_text(job), job_id=job.id)
        if job.status is JobStatus.CANCELED:
            return GeneratorOutputs("Stopped.", None, [], job.id)
        if job.status is JobStatus.FAILED:
            raise gr.Error(job.error or "the job failed")
        if job.status is JobStatus.COMPLETED:
            items = [_gallery_item(self.services.gallery.get(i)) for i in job.image_ids]
            return GeneratorOutputs(f"Done: {len(items)} image(s) saved to the gallery", None, items, job.id)
        return None

    def _waiting_text(self, job: Job) -> str:
        ahead = self.services.queue.position(job.id)
        return "Queued: next to run" if ahead <= 0 else f"Queued: {ahead} job(s) ahead"

    def stop(self, job_id: str, request: gr.Request | None) -> str:
        if not job_id:
            return "Nothing is running."
        try:
            job = self.services.queue.get(job_id)
            if job.owner != user_of(request):
                raise JobNotFound(job_id)  # as the API does: another user's job is not confirmed to exist
            job = self.services.queue.cancel(job_id)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None
        return "Stopping…" if job.status is JobStatus.RUNNING else f"Job {job.status}."

    # -- gallery ----------------------------------------------------------------------------------------
    def gallery_page(self, query: str | None, pipeline: str | None, model: str | None, favourites: bool, page: float,
                     request: gr.Request | None) -> tuple[list[tuple[str, str]], list[str], str]:
        user = user_of(request)
        filters = {"owner": self.services.gallery_owner(user), "pipeline": pipeline or None, "model": model or None,
                   "favourite": True if favourites else None, "query": (query or "").strip() or None}
        total = self.services.gallery.count(**filters)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(1, int(page or 1)), pages)
        artworks = self.services.gallery.page(**filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        items = [(str(a.thumb_path), _caption(a, user)) for a in artworks]  # the grid shows thumbnails
        return items, [a.id for a in artworks], f"Page {page} of {pages} · {total} artwork(s)"

    def artwork(self, image_id: str, request: gr.Request | None, *, change: bool = False) -> Artwork:
        try:
            artwork = self.services.gallery.get(image_id)
        except (ArtworkNotFound, ValueError):
            raise gr.Error(f"no artwork {image_id!r}") from None
        user = user_of(request)
        if not self.services.may_view(artwork, user):
            raise gr.Error(f"no artwork {image_id!r}")  # not "forbidden": do not confirm it exists
        if change and not self.services.may_change(artwork, user):
            raise gr.Error(f"{image_id} is {artwork.owner}'s: only they can change or delete it")
        return artwork

    def detail(self, image_id: str, request: gr.Request | None) -> tuple[Any, ...]:
        """(id, what to show, A1111 text, recipe, favourite label, PNG, GIF button, MP4 button): an animation shows
        as its GIF, and its files get download buttons."""
        a = self.artwork(image_id, request)
        star = "★ Unfavourite" if a.favourite else "☆ Favourite"
        shown = a.media.get("gif", a.path)
        buttons = [gr.DownloadButton(value=str(a.media[fmt]), visible=True) if fmt in a.media
                   else gr.DownloadButton(value=None, visible=False) for fmt in ("gif", "mp4")]
        return (image_id, str(shown), metadata.format_parameters(a.recipe), _recipe_view(a), star, str(a.path),
                *buttons)

    def toggle_favourite(self, image_id: str, request: gr.Request | None) -> str:
        a = self.artwork(image_id, request, change=True)
        updated = self.services.gallery.set_favourite(a.id, not a.favourite)
        return "★ Unfavourite" if updated.favourite else "☆ Favourite"

    def delete(self, image_id: str, request: gr.Request | None) -> str:
        a = self.artwork(image_id, request, change=True)
        self.services.gallery.delete(a.id)
        return f"Deleted {a.id}."

    def reuse(self, image_id: str, request: gr.Request | None) -> tuple[str, str, int, dict[str, Any]]:
        """(pipeline kind, model, seed, params) of an artwork: what its tab needs to make it again."""
        recipe = self.artwork(image_id, request).recipe
        if not self.services.catalog.has_pipeline(recipe.pipeline):
            raise gr.Error(f"this artwork was made with the {recipe.pipeline} pipeline, which is not installed")
        return recipe.pipeline, recipe.model, recipe.seed, recipe.params

    # -- models -----------------------------------------------------------------------------------------
    def rescan_models(self) -> list[list[Any]]:
        self.services.catalog.refresh()
        return self.models_table()

    def models_table(self) -> list[list[Any]]:
        catalog = self.services.catalog
        return [[m.id, m.kind, m.origin, _size(m.size_bytes), m.licence, m.restriction or "—",
                 m.status if catalog.has_pipeline(m.kind) else "pipeline not installed", m.description]
                for m in catalog.models()]

    def workers_table(self) -> list[list[Any]]:
        return [[w.name, w.device, "running" if w.alive else "restarting", ", ".join(w.current_jobs) or "idle",
                 w.restarts, ", ".join(reversed(w.loaded)) or "—", _memory(w.memory)]
                for w in self.services.pool.status()]


def _memory(use: MemoryUse | None) -> str:
    """"RAM 0.94 / 6.00 GB", and the GPU's share on a GPU worker; "—" before the worker's first job ends."""
    if use is None:
        return "—"
    text = f"RAM {use.ram / 1e9:.2f} / {use.ram_budget / 1e9:.2f} GB"
    return text + (f" · VRAM {use.vram / 1e9:.2f} / {use.vram_budget / 1e9:.2f} GB" if use.vram_budget else "")


def _saved(artworks: list[Artwork]) -> str:
    """"3 image(s)", or "1 animation(s) (GIF, MP4 and a frame sheet)" when the job made animations."""
    animations = [a for a in artworks if a.media]
    if not animations:
        return f"{len(artworks)} image(s)"
    formats = ", ".join(sorted({fmt.upper() for a in animations for fmt in a.media}))
    stills = len(artworks) - len(animations)
    return f"{len(animations)} animation(s) ({formats} and a frame sheet)" + (
        f" and {stills} image(s)" if stills else "")


def _gallery_item(a: Artwork) -> tuple[str, str]:
    """A finished result as the generator tab shows it: the picture, or an animation as its (moving) GIF."""
    return str(a.media.get("gif", a.path)), _caption(a, a.owner)


def _caption(a: Artwork, user: str) -> str:
    prompt = a.prompt.strip().splitlines()[0] if a.prompt.strip() else a.pipeline.replace("_", " ")
    caption = prompt[:60] + ("…" if len(prompt) > 60 else "")
    return caption if a.owner == user else f"{caption} — by {a.owner}"  # someone else's, in a shared gallery


def _recipe_view(a: Artwork) -> dict[str, Any]:
    r = a.recipe
    return {"id": a.id, "pipeline": r.pipeline, "model": r.model, "model_hash": r.model_hash, "seed": r.seed,
            "params": r.params, "size": f"{a.width}x{a.height}", "job": r.job_id, "app_version": r.app_version,
            "info": r.info}


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "—"
    return f"{size_bytes / 1e9:.2f} GB" if size_bytes >= 1e9 else f"{size_bytes / 1e6:.1f} MB"
