"""Tiled SD upscale, as A1111's "SD upscale" script: enlarge the picture with an upscaler, then run img2img over it in
overlapping tiles of the job's width × height, and blend the tiles with feathered (linear-ramp) weights in their
overlaps, so the model adds detail to a picture larger than one pass could hold and no seam shows where tiles meet.
Every tile starts from the job's seed, as A1111's script does; progress counts over all tiles and Stop ends the job
between two tiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image

from pipelines.base import ImageInputs, ImageResult, OnStep, ShouldStop
from pipelines.imaging import input_image
from pipelines.text_to_image_params import TextToImageParams
from pipelines.upscale import UpscalerCache, enlarge

TILE_INPUT = "sd-upscale-tile"  # the reference a tile's params give the tile
# (params, seed, progress, stop, inputs) → the pass's result: TextToImagePipeline._run
RunPass = Callable[..., ImageResult]


def run_sd_upscale(run: RunPass, upscalers: UpscalerCache, params: TextToImageParams, tile: tuple[int, int],
                   seed: int, on_step: OnStep | None, should_stop: ShouldStop, inputs: ImageInputs,
                   files: Mapping[str, str]) -> ImageResult:
    """The enlarged picture repainted tile by tile; `tile` is the job's width × height (the model's native size for
    0)."""
    source = input_image(inputs, params.init_image, "init_image").convert("RGB")
    size = params.sd_upscale_size(*source.size)
    # 1. enlarge with the upscaler; 2. repaint each tile with img2img at the job's strength
    big = enlarge(source, size, upscalers.get(params.sd_upscale_upscaler, files), params.sd_upscale_upscaler,
                  should_stop=should_stop)
    lefts = _starts(size[0], tile[0], params.sd_upscale_overlap)
    tops = _starts(size[1], tile[1], params.sd_upscale_overlap)
    tile_params = dataclasses.replace(params, init_image=TILE_INPUT, width=tile[0], height=tile[1], sd_upscale=False,
                                      batch_size=1, batch_count=1)
    total_tiles = len(lefts) * len(tops)
    acc = np.zeros((size[1], size[0], 3))
    weights = np.zeros((size[1], size[0], 1))
    info: dict = {}
    for index, (top, left) in enumerate((t, lf) for t in tops for lf in lefts):
        box = (left, top, min(left + tile[0], size[0]), min(top + tile[1], size[1]))
        piece = big.crop(box)

        def progress(done: int, total: int, preview: Image.Image | None, index: int = index) -> None:
            if on_step is not None:
                on_step(index * total + done, total_tiles * total, preview)

        result = run(tile_params, seed, progress, should_stop, {TILE_INPUT: piece.resize(tile, Image.LANCZOS)})
        info = info or result.info
        painted = np.asarray(result.images[0].convert("RGB").resize(piece.size, Image.LANCZOS), dtype=np.float64)
        # 3. feathered into the picture: each tile's weight falls to 0 across the overlap it shares
        weight = _feather(box, size, params.sd_upscale_overlap)
        acc[box[1]:box[3], box[0]:box[2]] += painted * weight
        weights[box[1]:box[3], box[0]:box[2]] += weight
    image = Image.fromarray(np.clip(np.rint(acc / weights), 0, 255).astype(np.uint8))
    info = {**info, "size": f"{size[0]}x{size[1]}", "tiles": total_tiles}
    return ImageResult(images=[image], seeds=[seed], info=info)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side begin: evenly spread, neighbours sharing at least `overlap` px."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _feather(box: tuple[int, int, int, int], size: tuple[int, int], overlap: int) -> np.ndarray:
    """(h, w, 1) weights of a tile: 1 inside, a linear ramp over `overlap` px along each side that has a neighbour
    (not along the picture's own edges)."""
    left, top, right, bottom = box

    def ramp(start: int, end: int, length: int) -> np.ndarray:
        pos = np.arange(end - start, dtype=np.float64) + 0.5
        weight = np.ones_like(pos)
        if overlap and start > 0:
            weight = np.minimum(weight, pos / overlap)
        if overlap and end < length:
            weight = np.minimum(weight, (end - start - pos) / overlap)
        return np.clip(weight, 1e-3, 1.0)

    return (ramp(top, bottom, size[1])[:, None] * ramp(left, right, size[0])[None, :])[..., None]
