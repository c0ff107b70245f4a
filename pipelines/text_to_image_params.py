"""The params of a text-to-image job (txt2img, img2img, inpainting) and how A1111 writes them.

Apart from the pipeline so that the studio's server, which checks params at the edge, reads them without the
pipeline's machinery.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipelines.base import BaseParams, Workload, param
from pipelines.inpaint_area import Fill, MaskedContent
from pipelines.models import kinds
from pipelines.prompts.networks import NetworkTag, network_tags
from pipelines.prompts.wildcards import is_dynamic
from pipelines.upscale import is_builtin

Sampler = Literal[
    "Automatic", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras",
    "DDIM", "LCM", "Heun", "DPM2", "DPM2 a", "UniPC",
]
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_PIXELS = 2048 * 2048  # one 4-megapixel image; larger needs tiling, which the studio does not do yet
MAX_PROMPT_CHARS = 10_000
# hires fix's upscalers that enlarge the latents (A1111's names) → torch's interpolation mode and antialiasing; the
# others (resamplers, networks) enlarge the decoded picture (pipelines.upscale)
LATENT_UPSCALERS = {"Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True),
                    "Latent (bicubic)": ("bicubic", False), "Latent (bicubic antialiased)": ("bicubic", True),
                    "Latent (nearest)": ("nearest", False), "Latent (nearest-exact)": ("nearest-exact", False)}
MAX_OUTPAINT = 1024  # px added on one side of the canvas
OUTPAINT = ("outpaint_left", "outpaint_right", "outpaint_up", "outpaint_down")
MAX_SD_UPSCALE_SIDE = 8192  # SD upscale's result, per side: its tiles keep the memory of one pass
MAX_HR_SIDE = 4096  # hires fix's result, per side: ×2 of the largest first pass
HIRES = ("enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_upscaler", "hr_second_pass_steps", "hr_sampler",
         "hr_prompt", "hr_negative_prompt")


@dataclass(frozen=True)
class TextToImageParams(BaseParams):
    prompt: str = param("", label="Prompt", multiline=True)
    negative_prompt: str = param("", label="Negative prompt", multiline=True)
    sampler: Sampler = param("Euler a", label="Sampler")
    num_steps: int = param(20, label="Steps", minimum=1, maximum=150, step=1)
    cfg_scale: float = param(7.0, label="CFG scale", minimum=0.0, maximum=30.0, step=0.5)
    width: int = param(0, label="Width", minimum=0, maximum=MAX_SIDE, step=8,
                       help="0: the model's native size (512 for SD 1.x, 1024 for SDXL, 64 for the bundled model)")
    height: int = param(0, label="Height", minimum=0, maximum=MAX_SIDE, step=8, help="0: the model's native size")
    batch_size: int = param(1, label="Batch size", minimum=1, maximum=8, step=1)
    batch_count: int = param(1, label="Batch count", minimum=1, maximum=16, step=1)
    clip_skip: int = param(1, label="Clip skip", minimum=1, maximum=12, step=1,
                           help="1 uses the text encoder's last layer, 2 the one before (as A1111)")
    init_image: str = param("", label="Image (img2img / inpaint)", kind="image")
    mask: str = param("", label="Inpaint mask", kind="mask", paint_on="init_image")
    strength: float = param(0.75, label="Denoising strength", minimum=0.0, maximum=1.0, step=0.01,
                            help="img2img and inpaint: how far from the image to go")
    mask_blur: int = param(4, label="Mask blur", minimum=0, maximum=64, step=1,
                           help="inpaint and outpaint: px of soft edge where the painted area meets the picture")
    inpainting_fill: MaskedContent = param("original", label="Masked content",
                                           help="what the painted area starts from: the picture, its blurred "
                                                "colours, noise, or grey")
    inpaint_full_res: bool = param(False, label="Inpaint only masked",
                                   help="paint the masked area (and the padding) at the job's size, then paste it "
                                        "back into the whole picture")
    inpaint_full_res_padding: int = param(32, label="Only masked padding, px", minimum=0, maximum=256, step=4)
    outpaint_left: int = param(0, label="Outpaint left, px", minimum=0, maximum=MAX_OUTPAINT, step=8)
    outpaint_right: int = param(0, label="Outpaint right, px", minimum=0, maximum=MAX_OUTPAINT, step=8)
    outpaint_up: int = param(0, label="Outpaint up, px", minimum=0, maximum=MAX_OUTPAINT, step=8)
    outpaint_down: int = param(0, label="Outpaint down, px", minimum=0, maximum=MAX_OUTPAINT, step=8)
    outpaint_fill: Fill = param("edge", label="Outpaint fill",
                                help="the new area's start: the edge stretched, the edge blurred, or noise")
    sd_upscale: bool = param(False, label="SD upscale",
                             help="img2img: enlarge the picture, then repaint it in overlapping tiles of the width "
                                  "and height (A1111's SD upscale script)")
    sd_upscale_scale: float = param(2.0, label="SD upscale by", minimum=1.0, maximum=4.0, step=0.05)
    sd_upscale_upscaler: str = param("Lanczos", label="SD upscale upscaler",
                                     help="Lanczos, Nearest, None, or an upscaler model's name")
    sd_upscale_overlap: int = param(64, label="SD upscale tile overlap, px", minimum=0, maximum=256, step=8)
    keep_partial: bool = param(False, label="Keep a partial image when stopped")
    subseed: int = param(-1, label="Variation seed", minimum=-1, maximum=2**32 - 1, step=1, random=True,
                         help="a second seed whose noise is mixed in (-1: a random one), as A1111's")
    subseed_strength: float = param(0.0, label="Variation strength", minimum=0.0, maximum=1.0, step=0.01,
                                    help="0: the seed's picture, 1: the variation seed's; in between, a variation")
    seed_resize_from_w: int = param(0, label="Resize seed from width", minimum=0, maximum=MAX_SIDE, step=8,
                                    help="0: off. The noise of a picture this wide, so a seed keeps its look at "
                                         "another size")
    seed_resize_from_h: int = param(0, label="Resize seed from height", minimum=0, maximum=MAX_SIDE, step=8,
                                    help="0: off")
    tiling: bool = param(False, label="Seamless tiling",
                         help="the picture wraps around at its edges, for textures and patterns (as A1111's Tiling)")
    enable_hr: bool = param(False, label="Hires fix",
                            help="a second pass at a larger size (img2img on the enlarged first picture), as A1111's")
    hr_scale: float = param(2.0, label="Hires upscale by", minimum=1.0, maximum=4.0, step=0.05)
    hr_resize_x: int = param(0, label="Hires resize width", minimum=0, maximum=MAX_HR_SIDE, step=8,
                             help="0: by the factor (or from the height, keeping the shape)")
    hr_resize_y: int = param(0, label="Hires resize height", minimum=0, maximum=MAX_HR_SIDE, step=8, help="0: by the "
                             "factor (or from the width)")
    hr_upscaler: str = param("Latent", label="Hires upscaler",
                             help="a Latent mode, Lanczos, Nearest, None, or an upscaler model's name")
    hr_second_pass_steps: int = param(0, label="Hires steps", minimum=0, maximum=150, step=1,
                                      help="0: as many as the first pass")
    hr_sampler: str = param("", label="Hires sampler", help="empty: the first pass's")
    hr_prompt: str = param("", label="Hires prompt", multiline=True, help="empty: the prompt")
    hr_negative_prompt: str = param("", label="Hires negative prompt", multiline=True,
                                    help="empty: the negative prompt")
    refiner_checkpoint: str = param("", label="Refiner",
                                    help="SDXL: a second checkpoint that finishes the picture (empty: none)")
    refiner_switch_at: float = param(0.8, label="Refiner switch at", minimum=0.01, maximum=0.99, step=0.01,
                                     help="the share of the steps the base model makes before the refiner takes over")

    def check(self) -> None:
        for name in ("prompt", "negative_prompt"):
            if len(getattr(self, name)) > MAX_PROMPT_CHARS:
                raise ValueError(f"`{name}` is {len(getattr(self, name)):,} characters; at most {MAX_PROMPT_CHARS:,}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 0 or value % 8 or 0 < value < MIN_SIDE:
                raise ValueError(f"`{name}` must be 0 for the model's native size, or a multiple of 8 from "
                                 f"{MIN_SIDE}, got {value}")
        super().check()
        if self.width * self.height > MAX_PIXELS:
            raise ValueError(f"`width` × `height` must be at most {MAX_PIXELS:,} pixels, got "
                             f"{self.width}x{self.height}")
        for name in ("seed_resize_from_w", "seed_resize_from_h"):
            value = getattr(self, name)
            if value % 8 or 0 < value < MIN_SIDE:
                raise ValueError(f"`{name}` must be 0 (off) or a multiple of 8 from {MIN_SIDE}, got {value}")
        if bool(self.seed_resize_from_w) != bool(self.seed_resize_from_h):
            raise ValueError("`seed_resize_from_w` and `seed_resize_from_h` go together: give both, or neither")
        if self.init_image and self.varies:
            raise ValueError("`subseed_strength` and `seed_resize_from_*` apply to text to image only, not to "
                             "img2img or inpaint")
        try:
            self.networks()
        except ValueError as e:
            raise ValueError(f"`prompt`: {e}") from None
        self._check_hires()
        for name in OUTPAINT:
            if getattr(self, name) % 8:
                raise ValueError(f"`{name}` must be a multiple of 8, got {getattr(self, name)}")
        if self.outpainting and not self.init_image:
            raise ValueError("outpainting needs an `init_image` to grow")
        self._check_sd_upscale()
        if self.mask and not self.init_image:
            raise ValueError("`mask` needs an `init_image` to paint on")
        if self.init_image and int(self.strength * self.num_steps) < 1:
            # img2img runs strength × steps of the schedule (rounded down): none would leave nothing to decode
            raise ValueError(f"`strength` × `num_steps` must come to at least one denoising step for img2img and "
                             f"inpaint, got {self.strength} × {self.num_steps}: raise either")

    def _check_hires(self) -> None:
        for name in ("hr_prompt", "hr_negative_prompt"):
            if len(getattr(self, name)) > MAX_PROMPT_CHARS:
                raise ValueError(f"`{name}` is {len(getattr(self, name)):,} characters; at most {MAX_PROMPT_CHARS:,}")
        if len(self.hr_upscaler) > 500:
            raise ValueError("`hr_upscaler` is far too long")
        if self.hr_sampler and self.hr_sampler not in get_args(Sampler):
            raise ValueError(f"`hr_sampler` must be empty (the first pass's) or one of "
                             f"{', '.join(get_args(Sampler))}, got {self.hr_sampler!r}")
        for name in ("hr_resize_x", "hr_resize_y"):
            value = getattr(self, name)
            if value % 8 or 0 < value < MIN_SIDE:
                raise ValueError(f"`{name}` must be 0 or a multiple of 8 from {MIN_SIDE}, got {value}")
        if self.refiner_checkpoint and (self.enable_hr or self.init_image):
            raise ValueError("`refiner_checkpoint` applies to text to image without hires fix here")
        if len(self.refiner_checkpoint) > 500:
            raise ValueError("`refiner_checkpoint` is far too long")
        if self.refiner_checkpoint and int(self.num_steps * self.refiner_switch_at) < 1:
            raise ValueError(f"the base model makes no step before the refiner: raise `num_steps` or "
                             f"`refiner_switch_at` (got {self.num_steps} × {self.refiner_switch_at})")
        if not self.enable_hr:
            return
        if self.init_image:
            raise ValueError("`enable_hr` (hires fix) applies to text to image, not to img2img or inpaint")
        if int(self.strength * self.hr_steps) < 1:
            raise ValueError(f"hires fix: the denoising strength × hires steps must come to at least one step, got "
                             f"{self.strength} × {self.hr_steps}: raise `strength` or `hr_second_pass_steps`")
        if self.width and self.height:
            width, height = self.hires_size(self.width, self.height)
            if max(width, height) > MAX_HR_SIDE:
                raise ValueError(f"hires fix would make {width}x{height} pictures; at most {MAX_HR_SIDE} px a side")

    def _check_sd_upscale(self) -> None:
        if len(self.sd_upscale_upscaler) > 500:
            raise ValueError("`sd_upscale_upscaler` is far too long")
        if not self.sd_upscale:
            return
        if self.mode != "img2img":
            raise ValueError("`sd_upscale` repaints an `init_image` (img2img), without a mask or outpainting")
        if self.batch_size * self.batch_count > 1:
            raise ValueError("`sd_upscale` makes one picture: set `batch_size` and `batch_count` to 1")
        tile = min(self.width, self.height) if self.width and self.height else 2 * MIN_SIDE
        if self.sd_upscale_overlap >= tile:
            raise ValueError(f"`sd_upscale_overlap` ({self.sd_upscale_overlap} px) must be smaller than a tile "
                             f"({tile} px, the width and height)")

    def sd_upscale_size(self, width: int, height: int) -> tuple[int, int]:
        """The size SD upscale makes of an init image of width × height."""
        return max(1, round(width * self.sd_upscale_scale)), max(1, round(height * self.sd_upscale_scale))

    @property
    def hr_steps(self) -> int:
        """The second pass's steps, as the schedule counts them (img2img runs `strength` of them)."""
        return self.hr_second_pass_steps or self.num_steps

    def hires_size(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size for a first pass of width × height, in multiples of 8 (the latent grid): the
        resize fields, else the factor; one resize field alone keeps the picture's shape."""
        if self.hr_resize_x and self.hr_resize_y:
            return self.hr_resize_x, self.hr_resize_y
        if self.hr_resize_x or self.hr_resize_y:
            scale = self.hr_resize_x / width if self.hr_resize_x else self.hr_resize_y / height
        else:
            scale = self.hr_scale
        return (max(MIN_SIDE, round(width * scale / 8) * 8), max(MIN_SIDE, round(height * scale / 8) * 8))

    @property
    def outpaints(self) -> tuple[int, int, int, int]:
        """(left, right, up, down) px the canvas grows by; all 0 when the job does not outpaint."""
        return self.outpaint_left, self.outpaint_right, self.outpaint_up, self.outpaint_down

    @property
    def outpainting(self) -> bool:
        return any(self.outpaints)

    def canvas_size(self, width: int, height: int) -> tuple[int, int]:
        """The size of the picture a job paints on, for an init image of width × height."""
        left, right, up, down = self.outpaints
        return width + left + right, height + up + down

    def workload_for(self, sizes: Mapping[str, tuple[int, int]]) -> Workload:
        if self.sd_upscale and self.init_image in sizes:
            width, height = self.sd_upscale_size(*sizes[self.init_image])
            if max(width, height) > MAX_SD_UPSCALE_SIDE:
                raise ValueError(f"SD upscale would make a {width}x{height} picture; at most {MAX_SD_UPSCALE_SIDE} "
                                 "px a side")
            return Workload(1, width * height)
        if not (self.outpainting and self.init_image in sizes) or (self.width and self.height):
            return self.workload()
        width, height = self.canvas_size(*sizes[self.init_image])
        if width * height > MAX_PIXELS:
            raise ValueError(f"outpainting would paint a {width}x{height} canvas; at most {MAX_PIXELS:,} pixels "
                             f"(set a smaller width and height to paint it at)")
        return Workload(self.batch_size * self.batch_count, width * height)

    def workload(self) -> Workload:
        if self.init_image:
            return Workload(self.batch_size * self.batch_count, 0)
        width, height = self.width, self.height
        if self.enable_hr and width and height:
            width, height = self.hires_size(width, height)
        return Workload(self.batch_size * self.batch_count, width * height)

    def batch_key(self) -> str | None:
        """txt2img jobs that differ only in their prompts run as one batch: one UNet call per step for all."""
        if (self.mode != "txt2img" or self.batch_count > 1 or self.keep_partial or self.varies or self.networks()
                or self.dynamic or self.enable_hr or self.refiner_checkpoint):
            return None  # pictures, several batches, a kept partial, own noise, own LoRAs, drawn prompts or a second
            # pass: per job
        unshared = ("prompt", "negative_prompt", "strength", "subseed")  # a variation seed at strength 0 is unused
        shared = {k: v for k, v in self.to_dict().items() if k not in unshared}
        return json.dumps(shared, sort_keys=True)

    @property
    def prompt_text(self) -> str:
        """The prompt without its `<lora:…>` tags: what the text encoder reads."""
        return network_tags(self.prompt)[0]

    def prompt_texts(self) -> list[str]:
        return [self.prompt_text, self.negative_prompt]

    def networks(self) -> list[NetworkTag]:
        """The LoRAs the prompt's `<lora:NAME:WEIGHT>` tags name."""
        return network_tags(self.prompt)[1]

    def model_files(self) -> list[tuple[str, str]]:
        files = [(kinds.LORA, tag.name) for tag in self.networks()]
        if self.enable_hr and not is_builtin_upscaler(self.hr_upscaler):
            files.append((kinds.UPSCALER, self.hr_upscaler))
        if self.refiner_checkpoint:
            files.append((kinds.CHECKPOINT, self.refiner_checkpoint))
        if self.sd_upscale and not is_builtin_upscaler(self.sd_upscale_upscaler):
            files.append((kinds.UPSCALER, self.sd_upscale_upscaler))
        return files

    @property
    def dynamic(self) -> bool:
        """Whether the prompts have variants or wildcards, drawn for each picture from its seed."""
        return is_dynamic(self.prompt) or is_dynamic(self.negative_prompt)

    @property
    def varies(self) -> bool:
        """Whether the starting noise is not simply the seed's: a variation seed or a resized seed."""
        return self.subseed_strength > 0 or bool(self.seed_resize_from_w)

    @property
    def mode(self) -> Literal["txt2img", "img2img", "inpaint"]:
        if self.mask or self.outpainting:
            return "inpaint"
        return "img2img" if self.init_image else "txt2img"

    def a1111_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"Steps": self.num_steps, "Sampler": self.sampler, "CFG scale": self.cfg_scale}
        if self.width and self.height:
            fields["Size"] = f"{self.width}x{self.height}"  # a native size is recorded with the result instead
        if self.clip_skip > 1:
            fields["Clip skip"] = self.clip_skip
        if self.batch_size > 1:
            fields["Batch size"] = self.batch_size
        if self.init_image:
            fields["Denoising strength"] = self.strength
        if self.mode == "inpaint":
            fields.update(self._inpaint_fields())
        if self.subseed_strength > 0:
            fields["Variation seed"] = self.subseed
            fields["Variation seed strength"] = self.subseed_strength
        if self.seed_resize_from_w:
            fields["Seed resize from"] = f"{self.seed_resize_from_w}x{self.seed_resize_from_h}"
        if self.tiling:
            fields["Tiling"] = True
        if self.enable_hr:
            fields.update(self._hires_fields())
        if self.refiner_checkpoint:
            fields.update({"Refiner": self.refiner_checkpoint, "Refiner switch at": self.refiner_switch_at})
        if self.sd_upscale:
            fields.update({"SD upscale overlap": self.sd_upscale_overlap,
                           "SD upscale upscaler": self.sd_upscale_upscaler, "SD upscale by": self.sd_upscale_scale})
        return fields

    def _inpaint_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"Mask blur": self.mask_blur}
        if self.inpainting_fill != "original":
            fields["Masked content"] = self.inpainting_fill
        if self.inpaint_full_res:
            fields["Inpaint area"] = "Only masked"
            fields["Masked area padding"] = self.inpaint_full_res_padding
        if self.outpainting:
            fields["Outpaint"] = ", ".join(f"{side} {px}" for side, px in zip(("left", "right", "up", "down"),
                                                                              self.outpaints, strict=True) if px)
            fields["Outpaint fill"] = self.outpaint_fill
        return fields

    def _hires_fields(self) -> dict[str, Any]:
        """As A1111 writes them; "Hires resize" replaces "Hires upscale" when the size was given."""
        fields: dict[str, Any] = {"Denoising strength": self.strength}
        if self.hr_resize_x or self.hr_resize_y:
            fields["Hires resize"] = f"{self.hr_resize_x}x{self.hr_resize_y}"
        else:
            fields["Hires upscale"] = self.hr_scale
        if self.hr_second_pass_steps:
            fields["Hires steps"] = self.hr_second_pass_steps
        fields["Hires upscaler"] = self.hr_upscaler
        if self.hr_sampler and self.hr_sampler != self.sampler:
            fields["Hires sampler"] = self.hr_sampler
        if self.hr_prompt and self.hr_prompt != self.prompt:
            fields["Hires prompt"] = self.hr_prompt
        if self.hr_negative_prompt and self.hr_negative_prompt != self.negative_prompt:
            fields["Hires negative prompt"] = self.hr_negative_prompt
        return fields


def is_builtin_upscaler(name: str) -> bool:
    """Whether hires fix's upscaler needs no library file: a latent mode, a resampler or a bundled network."""
    return name in LATENT_UPSCALERS or is_builtin(name)
