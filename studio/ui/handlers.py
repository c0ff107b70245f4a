"""UI event handlers: widget values → service calls → widget values. The one place gr.Error is raised.

Each handler is thin: the services validate and do the work; a handler turns their answers (and their
errors, which are written for people) into what the widgets show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import gradio as gr

from pipelines.catalog import UnknownModel, UnknownPipeline
from studio.accounts import LOCAL_USER
from studio.gallery import Artwork, ArtworkNotFound, metadata
from studio.jobs import Job, JobError, JobEvent, JobNotFound, JobStatus
from studio.presets import PresetSaveError
from studio.services import Services
from studio.styles import StyleSaveError
from studio.ui.forms import Binding
from studio.ui.model_library import ALL, Listing, ModelLibraryView, Thumbnail
from studio.ui.presets import builtin_presets, usable_settings
from studio.ui.progress import StepClock, step_text
from studio.ui.reuse import TabSettings, png_settings, recipe_settings
from studio.workers.protocol import MemoryUse

logger = logging.getLogger(__name__)

PAGE_SIZE = 48
UPSCALE = "upscale"  # the generator an artwork's "Upscale" button opens
USER_ERRORS = (ValueError, JobError, UnknownModel, UnknownPipeline, ArtworkNotFound, PresetSaveError,
               StyleSaveError)


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
                 request: gr.Request | None, progress: gr.Progress | None = None,
                 styles: Sequence[str] = ()) -> Iterator[tuple[Any, ...]]:
        try:
            params: dict[str, Any] = {}
            user = user_of(request)
            for binding, value in zip(bindings, values, strict=True):
                params.update(binding.to_params(value, self.services.inputs, user))
            job = self.services.generation.submit(kind, model, params, seed, owner=user, styles=list(styles or ()))
        except USER_ERRORS as e:
            # in the status beside Generate, where the eye is, as well as in Gradio's pop-up
            yield GeneratorOutputs(f"⚠ {e}").as_tuple()
            raise gr.Error(str(e)) from None
        yield GeneratorOutputs(self._waiting_text(job), job_id=job.id).as_tuple()
        clock = StepClock()
        for update in self.services.generation.follow(job.id):
            if progress is not None and update.kind == "progress" and update.total:
                progress((update.step, update.total), unit="steps")  # the bar with an ETA over the results
            try:
                outputs = self._on_event(job, update, clock)
            except gr.Error as e:  # the job failed
                yield GeneratorOutputs(f"⚠ {e.message}", job_id=job.id).as_tuple()
                raise
            if outputs is not None:
                yield outputs.as_tuple()

    def _on_event(self, job: Job, event: JobEvent, clock: StepClock) -> GeneratorOutputs | None:
        if event.kind == "progress" and not event.total:
            return GeneratorOutputs(event.message or "Loading the model…", job_id=job.id)
        if event.kind == "progress":
            status = step_text(event.step, event.total, clock.left(event.step, event.total))
            return GeneratorOutputs(status, event.preview, job_id=job.id)
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
        if event.kind == "waiting":
            return GeneratorOutputs(self._waiting_text(job), job_id=job.id) if event.message == "pending" else None
        raise gr.Error(event.message or "the job failed")

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

    def last_seed(self, job_id: str, request: gr.Request | None) -> int:
        """The seed of the tab's last job (♻ Last): the job's own, or, were it unresolved, its first image's."""
        if not job_id:
            raise gr.Error("nothing has been generated from this tab yet: ♻ Last reuses the seed of the last job "
                           "run here")
        try:
            job = self.services.queue.get(job_id)
            if job.owner != user_of(request):
                raise JobNotFound(job_id)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None
        if job.spec.seed >= 0:
            return job.spec.seed
        saved = self.services.gallery.by_job(job.id)
        if not saved:
            raise gr.Error("the last job made no image, so its seed is not known; generate again first")
        return saved[0].recipe.seed

    def model_defaults(self, kind: str, model: str | None) -> dict[str, Any]:
        """The params `model` is meant to run with (those the tab's fields accept); empty for a model without any,
        or one this studio does not list."""
        catalog = self.services.catalog
        try:
            defaults = catalog.model(model or "", kind, any_hub_id=False).defaults
        except (UnknownModel, ValueError):
            return {}
        return usable_settings(catalog.pipeline(kind).Params, defaults, f"the defaults of {model}")

    def recent_prompts(self, kind: str, request: gr.Request | None) -> list[str]:
        return self.services.gallery.recent_prompts(user_of(request), kind)

    # -- presets ----------------------------------------------------------------------------------------
    def preset_choices(self, kind: str, fields: set[str], request: gr.Request | None) -> list[tuple[str, str]]:
        """(label, name) of the built-in presets, then the user's own, starred."""
        mine = self.services.presets.names(user_of(request), kind)
        return [(name, name) for name in builtin_presets(kind, fields)] + [(f"★ {name}", name) for name in mine]

    def preset_values(self, kind: str, name: str | None, fields: set[str],
                      request: gr.Request | None) -> Mapping[str, Any]:
        if not name:
            return {}
        builtin = builtin_presets(kind, fields)
        if name in builtin:
            return builtin[name]
        try:
            stored = self.services.presets.get(user_of(request), kind, name)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None
        return usable_settings(self.services.catalog.pipeline(kind).Params, stored, f"preset {name!r}")

    def save_preset(self, kind: str, name: str | None, values: dict[str, Any], fields: set[str],
                    request: gr.Request | None) -> str:
        """Save the tab's settings under `name` (replacing the user's preset of that name); returns the name saved.
        Each setting must pass its field's checks, so a preset never fills in a value the tab would refuse."""
        if (name or "").strip() in builtin_presets(kind, fields):
            raise gr.Error(f"{(name or '').strip()!r} is the name of a built-in preset; choose another name")
        try:
            settings = self.services.catalog.pipeline(kind).Params.check_fields(values)
            return self.services.presets.save(user_of(request), kind, name or "", settings)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None

    def delete_preset(self, kind: str, name: str | None, fields: set[str], request: gr.Request | None) -> None:
        if not name:
            raise gr.Error("pick the preset to delete in the Preset list first")
        if name in builtin_presets(kind, fields):
            raise gr.Error(f"{name!r} is a built-in preset; only your own presets can be deleted")
        try:
            self.services.presets.delete(user_of(request), kind, name)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None

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

    def reuse(self, image_id: str, request: gr.Request | None) -> TabSettings:
        """An artwork's kind, model, seed and params: what its tab needs to make it again."""
        recipe = self.artwork(image_id, request).recipe
        try:
            return recipe_settings(self.services, recipe, user_of(request))
        except ValueError as e:
            raise gr.Error(str(e)) from None

    def to_upscale(self, image_id: str, request: gr.Request | None) -> TabSettings:
        """The Upscale tab with an artwork as its picture (stored as the user's input, as an upload would be)."""
        if not self.services.catalog.has_pipeline(UPSCALE):
            raise gr.Error("the upscale generator is not installed here")
        artwork = self.artwork(image_id, request)
        try:
            ref = self.services.inputs.put(artwork.path, field="image", owner=user_of(request))
        except ValueError as e:  # e.g. the user's input quota is full
            raise gr.Error(str(e)) from None
        return TabSettings(UPSCALE, gr.skip(), gr.skip(), {"image": ref, "source_artwork": artwork.id},
                           [f"Artwork {artwork.id} is ready to upscale: choose the upscaler and the size."])

    def png_settings(self, path: str | None, request: gr.Request | None = None) -> TabSettings:
        """The settings of a dropped PNG (see reuse.png_settings)."""
        if not path:
            raise gr.Error("drop a PNG made by Atelier or AUTOMATIC1111 here to load its settings")
        try:
            return png_settings(self.services, path, user_of(request))
        except ValueError as e:
            raise gr.Error(str(e)) from None

    # -- models -----------------------------------------------------------------------------------------
    @cached_property
    def model_library(self) -> ModelLibraryView:
        return ModelLibraryView(self.services.catalog)

    def rescan_models(self, kind: str | None = ALL, query: str | None = None) -> list[list[str]]:
        """Read the model folders again; the table as the filter shows it."""
        self.services.catalog.refresh()
        return self.models_table(kind, query)

    def models_table(self, kind: str | None = ALL, query: str | None = None) -> list[list[str]]:
        return self._model_listing(kind, query).table

    def model_previews(self, kind: str | None = ALL, query: str | None = None) -> tuple[list[Thumbnail], str]:
        """The previews of the models the filter keeps, and the line that counts them."""
        listing = self._model_listing(kind, query)
        return self.model_library.previews(listing.rows), listing.summary

    def filter_models(self, kind: str | None, query: str | None) -> tuple[list[list[str]], list[Thumbnail], str]:
        """Table, previews and count for a new filter, from the lists the last scan made."""
        listing = self._model_listing(kind, query)
        return listing.table, self.model_library.previews(listing.rows), listing.summary

    def _model_listing(self, kind: str | None, query: str | None) -> Listing:
        try:
            return self.model_library.listing(kind, query)
        except ValueError as e:
            raise gr.Error(str(e)) from None

    def workers_table(self, request: gr.Request | None = None) -> list[list[Any]]:
        return [[w.name, w.device, "running" if w.alive else "restarting", _jobs(w.current_jobs, w.other_jobs),
                 w.restarts, ", ".join(reversed(w.loaded)) or "—", _memory(w.memory)]
                for w in self.services.workers_seen_by(user_of(request))]


def _jobs(own: tuple[str, ...], others: int) -> str:
    """The Job column: the user's own job ids; other users' jobs only counted."""
    named = [*own, *([f"{others} of other users"] if others else [])]
    return ", ".join(named) or "idle"


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

