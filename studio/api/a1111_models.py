"""The request and response shapes of AUTOMATIC1111's web API (/sdapi/v1), as its documentation names them.

Clients written for A1111 send its whole field set, most of it at the defaults; unknown keys are ignored as A1111
ignores them. A field Atelier cannot honour is accepted at its default and refused (422, naming it) when a client
asks for something else: a request never silently produces something other than what was asked.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from studio.api.schemas import MAX_TEXT
from studio.generation import MAX_SEED

MAX_IMAGE_TEXT = 70_000_000  # base64 of a 50 MB upload, the input store's limit
# a 64×64 orange square as base64 PNG: the documented example, so "Try it out" in /docs sends a real image
EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAAUUlEQVR42u3PMQ0AMAgAMJgaJCIRWVPBQdI6aE5XXPbiOAEBA"
               "QEBAQEBAQEB"
               "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAYF9HxzAAehaf9vAAAAAAElFTkSuQmCC")


class A1111Model(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class GenerationRequest(A1111Model):
    prompt: str = Field("", max_length=MAX_TEXT)
    negative_prompt: str = Field("", max_length=MAX_TEXT)
    styles: list[str] = Field(default_factory=list, max_length=20,
                              description="the caller's prompt styles to apply, by name (GET /sdapi/v1/prompt-styles)")
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    subseed: int = Field(-1, ge=-1, le=MAX_SEED, description="the variation seed (-1: a random one)")
    subseed_strength: float = Field(0.0, ge=0, le=1, description="0: the seed's picture, 1: the variation seed's")
    seed_resize_from_w: int = Field(-1, ge=-1, le=2048, description="-1 or 0: off; the noise of a picture this wide")
    seed_resize_from_h: int = Field(-1, ge=-1, le=2048, description="-1 or 0: off")
    sampler_name: str | None = Field(None, max_length=100, description="see GET /sdapi/v1/samplers")
    sampler_index: str = Field("Euler", max_length=100, description="the sampler when `sampler_name` is not given")
    scheduler: str | None = Field(None, max_length=100, description="see GET /sdapi/v1/schedulers")
    batch_size: int = Field(1, ge=1, le=8)
    n_iter: int = Field(1, ge=1, le=16, description="batches, one after another")
    steps: int = Field(50, ge=1, le=150)
    cfg_scale: float = Field(7.0, ge=0, le=30)
    width: int | None = Field(None, ge=0, le=2048, description="missing or 0: the model's native size")
    height: int | None = Field(None, ge=0, le=2048)
    restore_faces: bool | None = Field(None, description="not supported: must be false or missing")
    tiling: bool | None = Field(None, description="seamless tiling: the picture wraps around at its edges")
    override_settings: dict[str, Any] = Field(default_factory=dict,
                                              description="`sd_model_checkpoint` picks the model for this request")
    override_settings_restore_afterwards: bool = True
    script_name: str | None = Field(None, description="scripts: not supported, must be null")
    script_args: list[Any] = Field(default_factory=list)
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict, description="extensions: none, must be empty")
    send_images: bool = Field(True, description="return the images in the response")
    save_images: bool = Field(True, description="keep them in the gallery (false: returned, then not kept)")


class Txt2ImgRequest(GenerationRequest):
    enable_hr: bool = Field(False, description="hires fix: a second pass at a larger size")
    hr_scale: float = Field(2.0, description="hires fix's factor, 1 to 4")
    hr_resize_x: int = Field(0, ge=0, description="0: by `hr_scale`")
    hr_resize_y: int = Field(0, ge=0)
    hr_upscaler: str | None = Field(None, max_length=500, description="a Latent mode (GET /sdapi/v1/latent-upscale-"
                                    "modes) or an upscaler (GET /sdapi/v1/upscalers); missing: Latent")
    hr_second_pass_steps: int = Field(0, ge=0, description="0: as many as the first pass")
    hr_sampler_name: str | None = Field(None, max_length=100, description="missing: the first pass's")
    hr_scheduler: str | None = Field(None, max_length=100)
    hr_prompt: str = Field("", max_length=MAX_TEXT, description="empty: the prompt")
    hr_negative_prompt: str = Field("", max_length=MAX_TEXT)
    denoising_strength: float = Field(0.7, ge=0, le=1, description="hires fix's second pass: how far to go")
    refiner_checkpoint: str | None = Field(None, max_length=500, description="SDXL: a checkpoint that finishes the "
                                           "picture (a title or name from GET /sdapi/v1/sd-models)")
    refiner_switch_at: float = Field(0.8, ge=0.01, le=0.99, description="the share of the steps before the switch")


class Img2ImgRequest(GenerationRequest):
    init_images: list[Annotated[str, Field(max_length=MAX_IMAGE_TEXT)]] = Field(
        min_length=1, max_length=1, description="one base64 image (PNG, JPEG, WebP)", examples=[[EXAMPLE_PNG]])
    mask: str | None = Field(None, max_length=MAX_IMAGE_TEXT, description="base64 mask: white is repainted")
    denoising_strength: float = Field(0.75, ge=0, le=1)
    resize_mode: int = Field(0, description="0 (resize) only")
    inpainting_mask_invert: int = Field(0, ge=0, le=1, description="1: repaint the black part of the mask instead")
    mask_blur: int = Field(4, ge=0, le=64, description="px of soft edge around the repainted area")
    inpainting_fill: int = Field(0, ge=0, le=3, description="masked content: 0 fill, 1 original, 2 latent noise, "
                                 "3 latent nothing")
    inpaint_full_res: bool = Field(True, description="inpaint area: true only the masked area (and the padding) at "
                                   "the job's size, pasted back; false the whole picture")
    inpaint_full_res_padding: int = Field(0, ge=0, le=256, description="px around the masked area")
    outpaint_left: int = Field(0, ge=0, description="Atelier's outpainting: px to add on the left (multiple of 8)")
    outpaint_right: int = Field(0, ge=0)
    outpaint_up: int = Field(0, ge=0)
    outpaint_down: int = Field(0, ge=0)
    outpaint_fill: str = Field("edge", max_length=20, description="the new area's start: edge, blur or noise")
    sd_upscale: bool = Field(False, description="Atelier's SD upscale (A1111's script): enlarge, then repaint in "
                             "tiles of the width and height")
    sd_upscale_scale: float = Field(2.0, description="1 to 4")
    sd_upscale_upscaler: str = Field("Lanczos", max_length=500, description="see GET /sdapi/v1/upscalers")
    sd_upscale_overlap: int = Field(64, ge=0, description="px the tiles share")
    include_init_images: bool = False


class GenerationResponse(BaseModel):
    images: list[str] = Field(description="the images as base64 PNG, recipe inside")
    parameters: dict[str, Any] = Field(description="the request as understood")
    info: str = Field(description="a JSON object as a string: seeds, sizes, infotexts, model…")


class ProgressResponse(BaseModel):
    progress: float = Field(description="0 to 1")
    eta_relative: float = Field(description="estimated seconds left")
    state: dict[str, Any]
    current_image: str | None = Field(None, description="the latest preview as base64 PNG")
    textinfo: str | None = None


class PngInfoRequest(A1111Model):
    image: str = Field(max_length=MAX_IMAGE_TEXT, description="a base64 PNG (a data: URL is fine)",
                       examples=[EXAMPLE_PNG])


class PngInfoResponse(BaseModel):
    info: str = Field(description="the `parameters` text")
    items: dict[str, Any] = Field(description="every other text chunk of the PNG")
    parameters: dict[str, Any] = Field(description="the `parameters` text as fields")


class PromptStyleItem(BaseModel):
    name: str
    prompt: str
    negative_prompt: str


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float | None
    need_inner_model: bool | None


class MemoryResponse(BaseModel):
    ram: dict[str, Any]
    cuda: dict[str, Any]
