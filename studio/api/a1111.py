"""AUTOMATIC1111's web API (/sdapi/v1) over Atelier's text-to-image pipeline, so its clients work unchanged.

A1111 answers txt2img and img2img synchronously: here the request becomes a job in the same queue as the UI's,
the route waits for it, and returns its images as base64 PNGs (recipe inside) with A1111's `info` fields. The
images stay in the caller's gallery unless `save_images` is false. Options (`sd_model_checkpoint`) are kept per
user in the data dir, as A1111 keeps its own in config.json.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and they name the
# caller dependency built inside `a1111_router`.

import base64
import io
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import psutil
from fastapi import APIRouter, Body, Depends, HTTPException
from PIL import Image

from pipelines.models import ModelEntry
from studio import __version__
from studio.api.a1111_extras import a1111_extras_router
from studio.api.a1111_io import base64_bytes, decode_image_field, wait_for_job
from studio.api.a1111_library import KIND, a1111_library_router, checkpoint_id, checkpoint_title
from studio.api.a1111_models import (
    GenerationRequest,
    GenerationResponse,
    Img2ImgRequest,
    MemoryResponse,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    Txt2ImgRequest,
)
from studio.api.errors import http_errors
from studio.gallery import Artwork, metadata
from studio.gallery.files import write_bytes_atomic
from studio.gallery.inputs import check_format
from studio.jobs import Job, JobStatus
from studio.services import Services

PREFIX = "/sdapi/v1"
OPTIONS_FILE = "a1111_options.json"
TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]$")  # "model.safetensors [6ce0161689]" → "model.safetensors"
SCHEDULERS = {"automatic": "Automatic", "karras": "Karras"}
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # A1111's `inpainting_fill` 0 to 3
UNSUPPORTED = {  # field → the value that means "not asked for"
    "restore_faces": (None, False), "script_name": (None, ""),
    "alwayson_scripts": ({},), "resize_mode": (0,),
}


def a1111_router(services: Services, users: Callable[..., str]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["AUTOMATIC1111-compatible"])
    User = Annotated[str, Depends(users)]  # noqa: N806 -- a type alias for the routes below
    options = OptionsStore(services.config.data_dir / OPTIONS_FILE)
    router.include_router(a1111_library_router(services, users, lambda user: _model_in_use(services, options, user)))
    router.include_router(a1111_extras_router(services, users))

    @router.post("/txt2img", response_model=GenerationResponse, summary="Text to image (waits for the result)")
    def txt2img(request: Annotated[Txt2ImgRequest, Body()], user: User) -> GenerationResponse:
        refiner = {"refiner_checkpoint": checkpoint_id(services, TITLE_HASH.sub("", request.refiner_checkpoint)),
                   "refiner_switch_at": request.refiner_switch_at} if request.refiner_checkpoint else {}
        return _generate(services, options, user, request, {**_hires(services, request), **refiner})

    @router.post("/img2img", response_model=GenerationResponse, summary="Image to image or inpainting (waits)")
    def img2img(request: Annotated[Img2ImgRequest, Body()], user: User) -> GenerationResponse:
        with http_errors():
            extra = {"init_image": services.inputs.put(decode_image_field(request.init_images[0], "init_images"),
                                                          owner=user),
                     "strength": request.denoising_strength}
            if request.mask:
                mask = _binary_mask(decode_image_field(request.mask, "mask"),
                                    invert=bool(request.inpainting_mask_invert))
                extra["mask"] = services.inputs.put(mask, field="mask", owner=user)
            if request.mask or request.outpaint_left or request.outpaint_right or request.outpaint_up or \
                    request.outpaint_down:
                extra.update(_inpaint_fields(request))
            if request.sd_upscale:
                extra.update(sd_upscale=True, sd_upscale_scale=request.sd_upscale_scale,
                             sd_upscale_upscaler=request.sd_upscale_upscaler,
                             sd_upscale_overlap=request.sd_upscale_overlap)
        return _generate(services, options, user, request, extra)

    @router.get("/samplers", response_model=list[SamplerItem], summary="Sampler names")
    def samplers(user: User) -> list[SamplerItem]:
        return [SamplerItem(name=name, aliases=[], options={}) for name in _sampler_names(services)]

    @router.get("/schedulers", response_model=list[SchedulerItem], summary="Scheduler names (noise schedules)")
    def schedulers(user: User) -> list[SchedulerItem]:
        return [SchedulerItem(name=name, label=label, aliases=None, default_rho=-1, need_inner_model=False)
                for name, label in SCHEDULERS.items()]

    @router.get("/prompt-styles", response_model=list[PromptStyleItem], summary="The caller's prompt styles")
    def prompt_styles(user: User) -> list[PromptStyleItem]:
        return [PromptStyleItem(name=s.name, prompt=s.prompt, negative_prompt=s.negative_prompt)
                for s in services.styles.all(user)]

    @router.get("/options", response_model=dict[str, Any], summary="Settings (the model in use)")
    def get_options(user: User) -> dict[str, Any]:
        model = _model_for(services, options, user, {})
        entry = services.catalog.model(model, KIND)
        return {"sd_model_checkpoint": checkpoint_title(entry.id, entry.hash), "sd_checkpoint_hash": entry.hash,
                "CLIP_stop_at_last_layers": options.get(user).get("CLIP_stop_at_last_layers", 1),
                "samples_format": "png"}

    @router.post("/options", summary="Change settings (the model in use)")
    def set_options(change: Annotated[dict[str, Any], Body()], user: User) -> None:
        kept: dict[str, Any] = {}
        if "sd_model_checkpoint" in change:
            kept["sd_model_checkpoint"] = _checked_model(services, change["sd_model_checkpoint"])
        if "CLIP_stop_at_last_layers" in change:
            value = change["CLIP_stop_at_last_layers"]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
                raise HTTPException(422, "`CLIP_stop_at_last_layers` must be a whole number from 1 to 12, "
                                         f"got {value!r}")
            kept["CLIP_stop_at_last_layers"] = value
        options.update(user, kept)  # other A1111 settings have no meaning here and are ignored, as A1111 does

    @router.get("/progress", response_model=ProgressResponse, summary="The caller's current job")
    def progress(user: User, skip_current_image: bool = False) -> ProgressResponse:
        return _progress(services, user, skip_current_image)

    @router.post("/interrupt", summary="Stop the caller's running job (its images so far are not kept)")
    def interrupt(user: User) -> None:
        for job in services.queue.list(owner=user, statuses=[JobStatus.RUNNING]):
            services.queue.cancel(job.id)

    @router.post("/skip", summary="As interrupt: Atelier runs a batch as one job")
    def skip(user: User) -> None:
        interrupt(user)

    @router.post("/png-info", response_model=PngInfoResponse, summary="Read the generation parameters of a PNG")
    def png_info(request: PngInfoRequest, user: User) -> PngInfoResponse:
        with http_errors():
            texts = _png_text(request.image)  # the text chunks alone: no pixel is decoded
            info = texts.pop(metadata.PARAMETERS_KEY, "")
            return PngInfoResponse(info=info, items=texts, parameters=_a1111_fields(info) if info else {})

    @router.get("/memory", response_model=MemoryResponse, summary="Memory of this machine and its GPUs")
    def memory(user: User) -> MemoryResponse:
        ram = psutil.virtual_memory()
        return MemoryResponse(ram={"free": ram.available, "used": ram.total - ram.available, "total": ram.total},
                              cuda=_cuda_memory(services))

    return router


class OptionsStore:
    """Each user's A1111 settings, in one JSON file written atomically; read once (one studio per data dir)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data = _read_json_object(path)

    def get(self, user: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._data.get(user, {}))

    def update(self, user: str, values: dict[str, Any]) -> None:
        with self._lock:
            data = {**self._data, user: {**self._data.get(user, {}), **values}}
            write_bytes_atomic(self.path, json.dumps(data, indent=1).encode())
            self._data = data


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _generate(services: Services, options: OptionsStore, user: str, request: GenerationRequest,
              extra: dict[str, Any]) -> GenerationResponse:
    _refuse_unsupported(request)
    model = _model_for(services, options, user, request.override_settings)
    params = {"prompt": request.prompt, "negative_prompt": request.negative_prompt,
              "sampler": _sampler(services, request.sampler_name or request.sampler_index, request.scheduler),
              "num_steps": request.steps, "cfg_scale": request.cfg_scale,
              "width": request.width or 0, "height": request.height or 0, "batch_size": request.batch_size,
              "batch_count": request.n_iter, "tiling": bool(request.tiling), "subseed": request.subseed,
              "subseed_strength": request.subseed_strength,
              "seed_resize_from_w": max(request.seed_resize_from_w, 0),
              "seed_resize_from_h": max(request.seed_resize_from_h, 0),
              "clip_skip": request.override_settings.get("CLIP_stop_at_last_layers",
                                                         options.get(user).get("CLIP_stop_at_last_layers", 1)),
              **extra}
    with http_errors():
        job = services.generation.submit(KIND, model, params, request.seed, owner=user, styles=request.styles)
    job = wait_for_job(services, job)
    if job.status is JobStatus.FAILED:
        raise HTTPException(500, f"the job failed: {job.error}")
    artworks = [services.gallery.get(i) for i in job.image_ids]
    images = [base64.b64encode(a.path.read_bytes()).decode() for a in artworks] if request.send_images else []
    info = _info(request, job, artworks)
    if not request.save_images:
        for a in artworks:
            services.gallery.delete(a.id)
    return GenerationResponse(images=images, parameters=request.model_dump(), info=json.dumps(info))


def _inpaint_fields(request: Img2ImgRequest) -> dict[str, Any]:
    """The inpainting and outpainting fields as the text-to-image params name them."""
    return {"mask_blur": request.mask_blur, "inpainting_fill": MASKED_CONTENT[request.inpainting_fill],
            "inpaint_full_res": request.inpaint_full_res and bool(request.mask),
            "inpaint_full_res_padding": request.inpaint_full_res_padding, "outpaint_left": request.outpaint_left,
            "outpaint_right": request.outpaint_right, "outpaint_up": request.outpaint_up,
            "outpaint_down": request.outpaint_down, "outpaint_fill": request.outpaint_fill}


def _hires(services: Services, request: Txt2ImgRequest) -> dict[str, Any]:
    """Hires fix's fields as the text-to-image params name them (only when it is asked for)."""
    if not request.enable_hr:
        return {}
    sampler = _sampler(services, request.hr_sampler_name, request.hr_scheduler) if request.hr_sampler_name else ""
    return {"enable_hr": True, "hr_scale": request.hr_scale, "hr_resize_x": request.hr_resize_x,
            "hr_resize_y": request.hr_resize_y, "hr_upscaler": request.hr_upscaler or "Latent",
            "hr_second_pass_steps": request.hr_second_pass_steps, "hr_sampler": sampler,
            "hr_prompt": request.hr_prompt, "hr_negative_prompt": request.hr_negative_prompt,
            "strength": request.denoising_strength}


def _refuse_unsupported(request: GenerationRequest) -> None:
    for name, defaults in UNSUPPORTED.items():
        value = getattr(request, name, defaults[0])
        if value not in defaults:
            raise HTTPException(422, f"`{name}` is not supported by Atelier; leave it out (got {value!r})")


def _sampler_names(services: Services) -> list[str]:
    spec = next(s for s in services.catalog.pipeline(KIND).Params.describe() if s["name"] == "sampler")
    return list(spec["choices"])


def _sampler(services: Services, name: str, schedule: str | None) -> str:
    """A1111 ≥ 1.9 sends the schedule apart ("DPM++ 2M" + "Karras"); earlier ones in the name."""
    known = _sampler_names(services)
    scheduler = (schedule or "automatic").lower()
    if scheduler not in SCHEDULERS:
        raise HTTPException(422, f"unknown `scheduler` {schedule!r}; known: {', '.join(SCHEDULERS)}")
    if scheduler == "karras" and not name.endswith(" Karras"):
        name += " Karras"
    if name not in known:
        raise HTTPException(422, f"unknown sampler {name!r}; known: {', '.join(known)}")
    return name


def _model_for(services: Services, options: OptionsStore, user: str, override: dict[str, Any]) -> str:
    chosen = override.get("sd_model_checkpoint") or options.get(user).get("sd_model_checkpoint")
    if chosen:
        return _checked_model(services, chosen)
    default = services.catalog.default_model(KIND)
    if default is None:
        raise HTTPException(404, "no text-to-image model is installed")
    return default.id


def _checked_model(services: Services, title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise HTTPException(422, f"`sd_model_checkpoint` must be a model title or name, got {title!r}")
    name = checkpoint_id(services, TITLE_HASH.sub("", title.strip()))
    with http_errors():
        return services.catalog.model(name, KIND).id


def _model_in_use(services: Services, options: OptionsStore, user: str) -> ModelEntry | None:
    """The caller's checkpoint (its options', else the default); None when none is installed or the one chosen
    is no longer listed."""
    try:
        return services.catalog.model(_model_for(services, options, user, {}), KIND)
    except (HTTPException, ValueError):
        return None


def _png_text(text: str) -> dict[str, str]:
    """The text chunks of a base64 PNG, for png-info; none for a JPEG or a WebP (which carry no Atelier text).
    No pixel is decoded: a huge or truncated picture costs no more than its text."""
    data = base64_bytes(text, "image")
    if not data.startswith(metadata.PNG_SIGNATURE):
        check_format(io.BytesIO(data), "image")
        return {}
    try:
        return metadata.read_png_text(io.BytesIO(data))
    except OSError as e:
        raise ValueError(f"`image` is not a readable PNG ({e})") from None


def _binary_mask(mask: Image.Image, *, invert: bool) -> Image.Image:
    """White repaints. A mask drawn on transparency uses its alpha (as A1111 does); otherwise its brightness."""
    if "A" in mask.getbands() and mask.getchannel("A").getextrema() != (255, 255):
        gray = mask.getchannel("A")
    else:
        gray = mask.convert("L")
    return gray.point(lambda v: 255 - v) if invert else gray


def _info(request: GenerationRequest, job: Job, artworks: list[Artwork]) -> dict[str, Any]:
    seeds = [a.recipe.seed for a in artworks] or [job.spec.seed]
    first = artworks[0] if artworks else None
    params = job.spec.params
    subseed = params.get("subseed", -1)
    return {
        # each picture's prompts as it ran: with the styles applied, the variants and wildcards drawn
        "prompt": request.prompt, "all_prompts": [a.recipe.params["prompt"] for a in artworks],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [a.recipe.params["negative_prompt"] for a in artworks],
        "seed": seeds[0], "all_seeds": seeds, "subseed": subseed,
        "all_subseeds": [subseed + s - seeds[0] for s in seeds],
        "subseed_strength": params.get("subseed_strength", 0), "width": first.width if first else params["width"],
        "height": first.height if first else params["height"], "sampler_name": params["sampler"],
        "cfg_scale": params["cfg_scale"], "steps": params["num_steps"], "batch_size": params["batch_size"],
        "restore_faces": False, "tiling": params.get("tiling", False), "face_restoration_model": None,
        "sd_model_name": job.spec.model,
        "sd_model_hash": first.recipe.model_hash if first else None, "sd_vae_name": None, "sd_vae_hash": None,
        "seed_resize_from_w": params.get("seed_resize_from_w") or -1,
        "seed_resize_from_h": params.get("seed_resize_from_h") or -1,
        "denoising_strength": params["strength"] if params.get("init_image") or params.get("enable_hr") else None,
        "extra_generation_params": {}, "index_of_first_image": 0,
        "infotexts": [metadata.format_parameters(a.recipe) for a in artworks], "styles": list(job.spec.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created_at)),
        "clip_skip": params["clip_skip"], "is_using_inpainting_conditioning": False,
        "version": f"atelier {__version__}", "interrupted": job.status is JobStatus.CANCELED,
    }


def _a1111_fields(info: str) -> dict[str, Any]:
    """The `parameters` text as A1111's png-info returns it: "Prompt", "Negative prompt", each pair, and the
    size split into "Size-1" and "Size-2"."""
    parsed = metadata.parse_parameters(info)
    fields: dict[str, Any] = {"Prompt": parsed.pop("prompt"), "Negative prompt": parsed.pop("negative_prompt")}
    fields.update(parsed)
    width, _, height = str(parsed.get("Size", "")).partition("x")
    if width.isdigit() and height.isdigit():
        fields.update({"Size-1": width, "Size-2": height})
    return fields


def _progress(services: Services, user: str, skip_image: bool) -> ProgressResponse:
    running = services.queue.list(owner=user, statuses=[JobStatus.RUNNING], limit=1)
    pending = services.queue.pending_count(owner=user)
    job = running[0] if running else None
    state = {"skipped": False, "interrupted": bool(job and job.cancel_requested), "job": f"task({job.id})" if job
             else "", "job_count": len(running) + pending, "job_timestamp": time.strftime(
                 "%Y%m%d%H%M%S", time.localtime(job.created_at)) if job else "0", "job_no": 0,
             "sampling_step": job.step if job else 0, "sampling_steps": job.total_steps if job else 0}
    if job is None:
        return ProgressResponse(progress=0, eta_relative=0, state=state, textinfo="Waiting…" if pending else None)
    elapsed = time.time() - (job.started_at or time.time())
    eta = elapsed / job.progress - elapsed if job.progress > 0 else 0.0
    image = None
    event = services.events.latest(job.id)
    if not skip_image and event is not None and event.preview is not None:
        buffer = io.BytesIO()
        event.preview.save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode()
    return ProgressResponse(progress=job.progress, eta_relative=max(0.0, eta), state=state, current_image=image,
                            textinfo=f"Step {job.step} of {job.total_steps}" if job.total_steps else "Loading…")


def _cuda_memory(services: Services) -> dict[str, Any]:
    if not any(w.device.startswith("cuda") for w in services.pool.status()):
        return {"error": "no CUDA device is in use"}
    import torch  # only when a worker uses CUDA: the server otherwise never needs torch's CUDA state

    free, total = torch.cuda.mem_get_info()
    return {"system": {"free": free, "used": total - free, "total": total}}
