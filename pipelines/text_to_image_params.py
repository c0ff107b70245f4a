"""The params of a text-to-image job (txt2img, img2img, inpainting) and how A1111 writes them.

Apart from the pipeline so that the studio's server, which checks params at the edge, reads them without the
pipeline's machinery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pipelines.base import BaseParams, Workload, param
from pipelines.models import kinds
from pipelines.prompts.networks import NetworkTag, network_tags
from pipelines.prompts.wildcards import is_dynamic

Sampler = Literal[
    "Automatic", "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras",
    "DDIM", "LCM", "Heun", "DPM2", "DPM2 a", "UniPC",
]
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_PIXELS = 2048 * 2048  # one 4-megapixel image; larger needs tiling, which the studio does not do yet
MAX_PROMPT_CHARS = 10_000


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
        if self.mask and not self.init_image:
            raise ValueError("`mask` needs an `init_image` to paint on")
        if self.init_image and int(self.strength * self.num_steps) < 1:
            # img2img runs strength × steps of the schedule (rounded down): none would leave nothing to decode
            raise ValueError(f"`strength` × `num_steps` must come to at least one denoising step for img2img and "
                             f"inpaint, got {self.strength} × {self.num_steps}: raise either")

    def workload(self) -> Workload:
        return Workload(self.batch_size * self.batch_count, 0 if self.init_image else self.width * self.height)

    def batch_key(self) -> str | None:
        """txt2img jobs that differ only in their prompts run as one batch: one UNet call per step for all."""
        if (self.mode != "txt2img" or self.batch_count > 1 or self.keep_partial or self.varies or self.networks()
                or self.dynamic):
            return None  # pictures, several batches, a kept partial, own noise, own LoRAs or drawn prompts: per job
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
        return [(kinds.LORA, tag.name) for tag in self.networks()]

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
        if self.mask:
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
        if self.subseed_strength > 0:
            fields["Variation seed"] = self.subseed
            fields["Variation seed strength"] = self.subseed_strength
        if self.seed_resize_from_w:
            fields["Seed resize from"] = f"{self.seed_resize_from_w}x{self.seed_resize_from_h}"
        if self.tiling:
            fields["Tiling"] = True
        return fields
