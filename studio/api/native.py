"""The native job API, /api/v1: every pipeline, the queue, the gallery and the catalogue over JSON.

Thin like the UI: a request becomes a GenerationService call, a service's answer becomes JSON. Errors are the
services' own messages (written for people) with a status: 422 bad input, 404 unknown or not yours, 409 a job
that cannot do that now, 429 queue full (with Retry-After). A caller only ever sees its own jobs and artworks.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and they name
# types built inside `native_router` (the caller dependency, the job request union), which strings cannot reach.

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from pipelines.models import ModelFile, kinds
from studio import __version__
from studio.api.errors import http_errors
from studio.api.schemas import (
    HealthOut,
    ImageOut,
    ImagePage,
    InputOut,
    JobAccepted,
    JobList,
    JobOut,
    LibraryFileOut,
    LibraryRefreshOut,
    MemoryOut,
    ModelOut,
    RecordOut,
    RecordPatch,
    WorkerOut,
    job_request_model,
)
from studio.gallery import Artwork, ArtworkNotFound, metadata
from studio.gallery.inputs import MAX_INPUT_BYTES
from studio.jobs import Job, JobEvent, JobStatus
from studio.services import Services
from studio.workers.pool import WorkerStatus

PREFIX = "/api/v1"
PAGE_LIMIT = 200
HEARTBEAT_POLLS = 30  # an SSE comment after this many silent polls (~15 s), so proxies keep the stream open
IMAGE_FORMATS = {"png": "image/png", "gif": "image/gif", "mp4": "video/mp4"}
LIBRARY_KINDS = {kind or "other": kind for kind in kinds.KINDS}  # the API's name → the library's ("" unrecognised)
PICTURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"RIFF", "image/webp"))


def native_router(services: Services, users: Callable[..., str]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["Atelier jobs, gallery and models"])
    User = Annotated[str, Depends(users)]  # noqa: N806 -- a type alias for the routes below
    JobRequest = job_request_model({kind: services.catalog.pipeline(kind).Params  # noqa: N806
                                    for kind in services.catalog.kinds if services.catalog.has_pipeline(kind)})

    @router.post("/jobs", status_code=202, response_model=JobAccepted, summary="Queue a job")
    def submit(user: User, request: Annotated[JobRequest, Body()]) -> JobAccepted:  # type: ignore[valid-type]
        with http_errors():
            model = request.model or _default_model(services, request.pipeline)
            params = request.params.model_dump(exclude_unset=True)
            job = services.generation.submit(request.pipeline, model, params, request.seed, owner=user,
                                             styles=getattr(request, "styles", ()))
        links = {"self": f"{PREFIX}/jobs/{job.id}", "events": f"{PREFIX}/jobs/{job.id}/events"}
        return JobAccepted(id=job.id, status=str(job.status), seed=job.spec.seed,
                           queue_position=max(0, services.queue.position(job.id)), links=links)

    @router.get("/jobs", response_model=JobList, summary="The caller's jobs, newest first")
    def jobs(user: User, status: Literal["pending", "running", "completed", "failed", "canceled"] | None = None,
             limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50) -> JobList:
        statuses = [JobStatus(status)] if status else None
        return JobList(jobs=[_job_out(services, j) for j in services.queue.list(owner=user, statuses=statuses,
                                                                              limit=limit)])

    @router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's status, progress, error and images")
    def job(job_id: str, user: User) -> JobOut:
        return _job_out(services, _own_job(services, job_id, user))

    @router.delete("/jobs/{job_id}", response_model=JobOut, summary="Cancel a job (a running one stops at its "
                                                                     "next step)")
    def cancel(job_id: str, user: User) -> JobOut:
        _own_job(services, job_id, user)
        with http_errors():
            return _job_out(services, services.queue.cancel(job_id))

    @router.get("/jobs/{job_id}/events", summary="Server-sent events of one job until it ends",
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}},
                                 "description": "`event:` started, progress, requeued, then completed, failed or "
                                                "canceled; `data:` a JSON object"}})
    def events(job_id: str, user: User) -> StreamingResponse:
        _own_job(services, job_id, user)
        return StreamingResponse(_event_stream(services, job_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.post("/inputs", status_code=201, response_model=InputOut, summary="Store an input image",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "image/png": {"schema": {"type": "string", "format": "binary"}},
                     "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                     "image/webp": {"schema": {"type": "string", "format": "binary"}}}}})
    async def put_input(request: Request, user: User) -> InputOut:
        data = await _read_limited(request, MAX_INPUT_BYTES)
        with http_errors():  # decoding and encoding take seconds for a large photo: never in the event loop
            ref = await run_in_threadpool(services.inputs.put, data, field="the uploaded image", owner=user)
            width, height = services.inputs.size(ref)
        return InputOut(ref=ref, width=width, height=height)

    @router.get("/images", response_model=ImagePage, summary="The caller's artworks, newest first")
    def images(user: User, query: Annotated[str | None, Query(max_length=1000)] = None,
               pipeline: str | None = None, model: str | None = None, favorite: bool | None = None,
               cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 48) -> ImagePage:
        with http_errors():
            found = services.gallery.page(owner=services.gallery_owner(user), pipeline=pipeline or None,
                                          model=model or None, favourite=favorite,
                                          query=(query or "").strip() or None, limit=limit,
                                          before=_decode_cursor(cursor) if cursor else None)
        last = found[-1] if len(found) == limit else None
        return ImagePage(images=[_image_out(a) for a in found],
                         next_cursor=_encode_cursor(last) if last is not None else None)

    @router.get("/images/{image_id}", response_class=FileResponse, summary="An artwork's file: the PNG (recipe "
                "inside), or an animation's GIF or MP4",
                responses={200: {"content": {t: {} for t in IMAGE_FORMATS.values()}}})
    def image_file(image_id: str, user: User, format: Literal["png", "gif", "mp4"] = "png") -> FileResponse:  # noqa: A002
        artwork = _own_artwork(services, image_id, user)
        path = artwork.path if format == "png" else artwork.media.get(format)
        if path is None:
            raise HTTPException(404, f"artwork {image_id} has no {format.upper()}: it is not an animation")
        return FileResponse(path, media_type=IMAGE_FORMATS[format], filename=f"{image_id}.{format}")

    @router.get("/images/{image_id}/thumbnail", response_class=FileResponse, summary="A WebP preview, at most "
                "256 px", responses={200: {"content": {"image/webp": {}}}})
    def thumbnail(image_id: str, user: User) -> FileResponse:
        return FileResponse(_own_artwork(services, image_id, user).thumb_path, media_type="image/webp")

    @router.get("/images/{image_id}/record", response_model=RecordOut, summary="An artwork's record and recipe")
    def record(image_id: str, user: User) -> RecordOut:
        return _record_out(_own_artwork(services, image_id, user))

    @router.patch("/images/{image_id}/record", response_model=RecordOut, summary="Mark or unmark a favourite")
    def update_record(image_id: str, change: RecordPatch, user: User) -> RecordOut:
        artwork = _own_artwork(services, image_id, user, change=True)
        with http_errors():
            return _record_out(services.gallery.set_favourite(artwork.id, change.favorite))

    @router.delete("/images/{image_id}/record", status_code=204, summary="Delete an artwork (record and files)")
    def delete_record(image_id: str, user: User) -> Response:
        artwork = _own_artwork(services, image_id, user, change=True)
        with http_errors():
            services.gallery.delete(artwork.id)
        return Response(status_code=204)

    @router.get("/models", response_model=list[ModelOut], summary="The catalogue: every model and its licence")
    def models(user: User, kind: str | None = None) -> list[ModelOut]:
        listed = services.catalog.models(kind or None)
        defaults = {k: _default_model(services, k) for k in {m.kind for m in listed}}
        loaded = services.pool.loaded_models()
        return [ModelOut(id=m.id, kind=m.kind, origin=m.origin, status=m.status, licence=m.licence,
                         restriction=m.restriction, size_bytes=m.size_bytes, description=m.description,
                         default=defaults.get(m.kind) == m.id, loaded=m.id in loaded) for m in listed]

    @router.get("/library", response_model=list[LibraryFileOut], summary="Every file of the model library: "
                "each model file in the --models-dir folders and the bundled ones, usable or not")
    def library(user: User, kind: Annotated[str, Query(max_length=40, description=", ".join(LIBRARY_KINDS))] = "",
                family: Annotated[str, Query(max_length=40, description="files that fit this base model ("
                                             f"{', '.join(kinds.FAMILIES)}): those made for it and those whose "
                                             "family is unknown")] = "",
                q: Annotated[str, Query(max_length=1000, description="a part of the id, name or description, "
                                        "in any case")] = "") -> list[LibraryFileOut]:
        wanted = _library_kind(kind) if kind else None
        if family and family not in kinds.FAMILIES:
            raise HTTPException(422, f"unknown `family` {family!r}; known: {', '.join(kinds.FAMILIES)}")
        needle = q.strip().casefold()
        return [_library_file_out(services, f) for f in services.catalog.files(wanted)
                if kinds.fits(f.family, family)
                and (not needle or any(needle in text.casefold() for text in (f.id, f.name, f.about)))]

    @router.get("/library/{kind}/{file_id:path}/preview", response_class=FileResponse,
                summary="The preview picture beside a library file (`file_id` as GET /api/v1/library lists it)",
                responses={200: {"content": {media: {} for _, media in PICTURES}}})
    def library_preview(kind: str, file_id: str, user: User) -> FileResponse:
        wanted = _library_kind(kind)
        # only a listed file's own preview is served: the id is looked up, never used as a path
        preview = next((f.preview for f in services.catalog.files(wanted) if f.id == file_id), None)
        media = _picture_type(preview) if preview is not None else None
        if preview is None or media is None:
            raise HTTPException(404, f"no {kind} {file_id[:200]!r} with a preview picture in the model library")
        return FileResponse(preview, media_type=media)

    @router.post("/models/refresh", response_model=LibraryRefreshOut, summary="Rescan the model folders")
    def refresh_models(user: User) -> LibraryRefreshOut:
        services.catalog.refresh()
        files = services.catalog.files()
        counts = {name: sum(f.kind == kind for f in files) for name, kind in LIBRARY_KINDS.items()}
        return LibraryRefreshOut(files=counts, problems=sum(bool(f.problem) for f in files),
                                 models=len(services.catalog.models()), hashing=services.catalog.library.hashing)

    @router.get("/health", response_model=HealthOut, summary="Is the studio up, and what is it doing")
    def health(user: User) -> HealthOut:
        catalog = services.catalog
        return HealthOut(status="ok", version=__version__, pending_jobs=services.queue.pending_count(),
                         pipelines=[k for k in catalog.kinds if catalog.has_pipeline(k)],
                         backend=services.pool.backend.name,
                         workers=[_worker_out(w) for w in services.workers_seen_by(user)])

    return router


def _default_model(services: Services, kind: str) -> str:
    with http_errors():
        services.catalog.pipeline(kind)
    default = services.catalog.default_model(kind)
    if default is None:
        raise HTTPException(404, f"no {kind} model is installed; name one from GET {PREFIX}/models")
    return default.id


def _library_kind(name: str) -> str:
    if name not in LIBRARY_KINDS:
        raise HTTPException(422, f"unknown kind of model file {name[:80]!r}; known: {', '.join(LIBRARY_KINDS)}")
    return LIBRARY_KINDS[name]


def _library_file_out(services: Services, f: ModelFile) -> LibraryFileOut:
    kind = f.kind or "other"
    return LibraryFileOut(id=f.id, kind=kind, name=f.name, rel=f.rel, family=f.family, size_bytes=f.size,
                          sha256=services.catalog.library.sha256(f), short_hash=services.catalog.library.short_hash(f),
                          about=f.about, triggers=list(f.triggers), has_preview=f.preview is not None,
                          preview_url=f"{PREFIX}/library/{kind}/{quote(f.id)}/preview" if f.preview else None,
                          note=f.note, problem=f.problem, layout=f.layout, origin=f.origin)


def _picture_type(path: Path) -> str | None:
    """The media type of a PNG, JPEG or WebP file, told from its first bytes; None for anything else (or no file):
    a sidecar named .png is served only when it is a picture."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return None
    return next((media for magic, media in PICTURES if head.startswith(magic)
                 and (media != "image/webp" or head[8:12] == b"WEBP")), None)


def _own_job(services: Services, job_id: str, user: str) -> Job:
    with http_errors():
        job = services.queue.get(job_id)
    if job.owner != user:
        raise HTTPException(404, f"no job {job_id}")  # not 403: do not confirm that someone else's job exists
    return job


def _own_artwork(services: Services, image_id: str, user: str, *, change: bool = False) -> Artwork:
    """The artwork if `user` may see it (and, with `change`, change it); 404 otherwise, 403 for another user's
    artwork in a shared gallery."""
    try:
        artwork = services.gallery.get(image_id)
    except (ArtworkNotFound, ValueError):
        artwork = None
    if artwork is None or not services.may_view(artwork, user):
        raise HTTPException(404, f"no artwork {image_id[:80]!r}")
    if change and not services.may_change(artwork, user):
        raise HTTPException(403, f"artwork {image_id} is {artwork.owner}'s: only they can change or delete it")
    return artwork


def _worker_out(w: WorkerStatus) -> WorkerOut:
    memory = MemoryOut(**vars(w.memory)) if w.memory else None
    return WorkerOut(name=w.name, device=w.device, alive=w.alive, current_jobs=list(w.current_jobs),
                     other_jobs=w.other_jobs, restarts=w.restarts, loaded=list(w.loaded), memory=memory)


def _job_out(services: Services, job: Job) -> JobOut:
    position = services.queue.position(job.id) if job.status is JobStatus.PENDING else None
    return JobOut(id=job.id, pipeline=job.spec.pipeline, model=job.spec.model, seed=job.spec.seed,
                  params=job.spec.params, status=str(job.status), progress=job.progress, step=job.step,
                  total_steps=job.total_steps, queue_position=position if position is None else max(0, position),
                  error=job.error, image_ids=job.image_ids, created_at=job.created_at, started_at=job.started_at,
                  finished_at=job.finished_at)


def _image_out(a: Artwork) -> ImageOut:
    url = f"{PREFIX}/images/{a.id}"
    return ImageOut(id=a.id, owner=a.owner, job_id=a.recipe.job_id, pipeline=a.pipeline, model=a.model,
                    seed=a.recipe.seed, prompt=a.prompt, width=a.width, height=a.height, favorite=a.favourite,
                    created_at=a.created_at, url=url, thumbnail_url=f"{url}/thumbnail",
                    animation={fmt: f"{url}?format={fmt}" for fmt in sorted(a.media)})


def _record_out(a: Artwork) -> RecordOut:
    r = a.recipe
    recipe = {"pipeline": r.pipeline, "model": r.model, "model_hash": r.model_hash, "seed": r.seed,
              "params": r.params, "job_id": r.job_id, "index": r.index, "count": r.count,
              "app_version": r.app_version, "info": r.info}
    return RecordOut(**_image_out(a).model_dump(), recipe=recipe, parameters=metadata.format_parameters(r))


def _encode_cursor(a: Artwork) -> str:
    return base64.urlsafe_b64encode(json.dumps([a.created_at, a.id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, artwork_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(created_at, bool) or not isinstance(created_at, (int, float)) or not isinstance(artwork_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("`cursor` is not one this API returned: pass `next_cursor` from the previous page") from None
    return float(created_at), artwork_id


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` (never read whole into memory first)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the upload is larger than {limit / 1e6:.0f} MB")
        chunks.append(chunk)
    if not size:
        raise HTTPException(422, "the request body is empty: send the image file's bytes as the body")
    return b"".join(chunks)


def _event_stream(services: Services, job_id: str) -> Iterator[str]:
    """SSE frames from the job's events; the queue's stored state fills any gap (e.g. a job that finished before
    the stream opened) and ends the stream."""
    silent = 0
    for update in services.generation.follow(job_id):
        if update.kind != "waiting":
            silent = 0
            yield _frame(update.kind, _event_data(update))
            continue
        silent += 1
        if silent % HEARTBEAT_POLLS == 0:
            yield ": still working\n\n"


def _event_data(event: JobEvent) -> dict[str, Any]:
    return {"step": event.step, "total": event.total, "message": event.message, "image_ids": event.image_ids}


def _frame(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"
