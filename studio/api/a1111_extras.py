"""AUTOMATIC1111's Extras routes (/sdapi/v1): upscale one picture or a batch, and the latent upscale modes of hires
fix. Each picture is an upscale job in the caller's queue, and its result lands in the caller's gallery with its
recipe, as the Upscale tab's do. Face restoration is not in Atelier: asking for it is a 422 naming the field."""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time.

import base64
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, Field

from pipelines.text_to_image_params import LATENT_UPSCALERS
from pipelines.upscale import NONE
from studio.api.a1111_io import decode_image_field, wait_for_job
from studio.api.a1111_models import EXAMPLE_PNG, MAX_IMAGE_TEXT, A1111Model
from studio.api.errors import http_errors
from studio.gallery import metadata
from studio.jobs import JobStatus
from studio.services import Services

KIND = "upscale"
MAX_BATCH = 16  # pictures in one extra-batch-images request: each is a job, and the route waits for them all


class ExtrasRequest(A1111Model):
    resize_mode: Literal[0, 1] = Field(0, description="0: scale by `upscaling_resize`; 1: to the width and height")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, ge=0, le=1, description="face restoration: not supported, must be 0")
    codeformer_visibility: float = Field(0, ge=0, le=1, description="face restoration: not supported, must be 0")
    codeformer_weight: float = Field(0, ge=0, le=1)
    upscaling_resize: float = Field(2, description="the factor, 1 to 16")
    upscaling_resize_w: int = Field(512)
    upscaling_resize_h: int = Field(512)
    upscaling_crop: bool = True
    upscaler_1: str = Field(NONE, max_length=500, description="see GET /sdapi/v1/upscalers")
    upscaler_2: str = Field(NONE, max_length=500)
    extras_upscaler_2_visibility: float = Field(0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasRequest):
    image: str = Field(..., max_length=MAX_IMAGE_TEXT, description="base64 picture",
                       examples=[EXAMPLE_PNG])


class FileData(A1111Model):
    data: str = Field(..., max_length=MAX_IMAGE_TEXT, description="base64 picture")
    name: str = Field("", max_length=500)


class ExtrasBatchImagesRequest(ExtrasRequest):
    imageList: list[FileData] = Field(..., min_length=1, max_length=MAX_BATCH)  # noqa: N815 -- A1111's name


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class LatentUpscaleModeItem(BaseModel):
    name: str


def a1111_extras_router(services: Services, users: Callable[..., str]) -> APIRouter:
    router = APIRouter()
    User = Annotated[str, Depends(users)]  # noqa: N806 -- a type alias for the routes below

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse, summary="Upscale one picture")
    def extra_single_image(request: Annotated[ExtrasSingleImageRequest, Body()],
                           user: User) -> ExtrasSingleImageResponse:
        info, image = _upscale(services, user, request, request.image, "image")
        return ExtrasSingleImageResponse(html_info=info, image=image)

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse, summary="Upscale pictures")
    def extra_batch_images(request: Annotated[ExtrasBatchImagesRequest, Body()],
                           user: User) -> ExtrasBatchImagesResponse:
        done = [_upscale(services, user, request, item.data, f"imageList[{i}]")
                for i, item in enumerate(request.imageList)]
        return ExtrasBatchImagesResponse(html_info=done[0][0], images=[image for _, image in done])

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscaleModeItem],
                summary="Hires fix's upscalers that work on latents")
    def latent_upscale_modes(user: User) -> list[LatentUpscaleModeItem]:
        return [LatentUpscaleModeItem(name=name) for name in LATENT_UPSCALERS]

    return router


def _upscale(services: Services, user: str, request: ExtrasRequest, picture: str, field: str) -> tuple[str, str]:
    """One upscale job, waited for: (the parameters text, the result as base64 PNG)."""
    for name in ("gfpgan_visibility", "codeformer_visibility"):
        if getattr(request, name):
            raise HTTPException(422, f"`{name}` is not supported by Atelier (no face restoration); leave it at 0")
    if request.upscaler_1 == NONE:
        raise HTTPException(422, "`upscaler_1` is None: choose an upscaler (GET /sdapi/v1/upscalers)")
    with http_errors():
        ref = services.inputs.put(decode_image_field(picture, field), owner=user)
        params: dict[str, Any] = {
            "image": ref, "mode": "scale_to" if request.resize_mode == 1 else "scale_by",
            "upscaling_resize": request.upscaling_resize, "upscaling_resize_w": request.upscaling_resize_w,
            "upscaling_resize_h": request.upscaling_resize_h, "upscaling_crop": request.upscaling_crop,
            "upscaler_2": request.upscaler_2, "extras_upscaler_2_visibility": request.extras_upscaler_2_visibility}
        job = services.generation.submit(KIND, request.upscaler_1, params, owner=user)
    job = wait_for_job(services, job)
    if job.status is not JobStatus.COMPLETED:
        raise HTTPException(500, f"the upscale failed: {job.error or job.status.value}")
    artwork = services.gallery.get(job.image_ids[0])
    return metadata.format_parameters(artwork.recipe), base64.b64encode(artwork.path.read_bytes()).decode()
