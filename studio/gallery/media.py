"""Animations as files: an animated GIF (Pillow), an H.264 MP4 (the ffmpeg binary shipped in the `imageio-ffmpeg`
wheel, when installed) and an animated WebP thumbnail. Each file carries the recipe, as the PNG does: the GIF in
its comment extension, the MP4 in its `comment` metadata tag.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

logger = logging.getLogger(__name__)

MAX_THUMB_FRAMES = 48  # an animated thumbnail only has to suggest the motion
MP4_CRF = 18  # x264 quality: visually lossless for generated images


def encode_gif(frames: list[Image.Image], fps: float, *, loop: bool, comment: str = "") -> bytes:
    """An animated GIF, each frame with its own adaptive 256-colour palette."""
    buffer = io.BytesIO()
    rgb = [frame.convert("RGB") for frame in frames]
    options: dict[str, object] = {"duration": _frame_ms(fps), "disposal": 1, "optimize": False}
    if loop:
        options["loop"] = 0  # repeat forever; without the NETSCAPE extension a GIF plays once
    if comment:
        options["comment"] = comment.encode("utf-8")
    rgb[0].save(buffer, format="GIF", save_all=True, append_images=rgb[1:], **options)
    return buffer.getvalue()


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def encode_mp4(frames: list[Image.Image], fps: float, *, comment: str = "") -> bytes:
    """An H.264 MP4 (yuv420p, playable in every browser); odd sides are padded by one black pixel, as 4:2:0
    chroma needs even sizes. Raises RuntimeError when ffmpeg is missing or fails."""
    import imageio_ffmpeg

    width, height = frames[0].size
    output = ["-crf", str(MP4_CRF), "-preset", "medium", "-movflags", "+faststart",
              "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    if comment:
        output += ["-metadata", f"comment={comment}"]
    with tempfile.TemporaryDirectory(prefix="atelier-mp4-") as folder:
        path = Path(folder) / "animation.mp4"
        writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                             macro_block_size=1, output_params=output, ffmpeg_log_level="error")
        writer.send(None)  # start ffmpeg
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"))))
        finally:
            writer.close()
        return path.read_bytes()


def animated_thumbnail(frames: list[Image.Image], fps: float, size: int) -> bytes:
    """An animated WebP, longest side `size`, at most MAX_THUMB_FRAMES frames spread over the whole animation."""
    step = max(1, math.ceil(len(frames) / MAX_THUMB_FRAMES))
    picked = frames[::step]
    thumbs = []
    for frame in picked:
        thumb = frame.convert("RGB")
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        thumbs.append(thumb)
    buffer = io.BytesIO()
    thumbs[0].save(buffer, format="WEBP", save_all=True, append_images=thumbs[1:], duration=_frame_ms(fps) * step,
                   loop=0, quality=80, method=4)
    return buffer.getvalue()


def animated_thumbnail_of(gif: Path, size: int) -> bytes:
    """`animated_thumbnail` of a stored GIF (to rebuild a lost thumbnail)."""
    with Image.open(gif, formats=("GIF",)) as animation:  # a stored GIF, whatever a planted file holds
        duration = animation.info.get("duration", 100)
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(animation)]
    return animated_thumbnail(frames, 1000 / max(duration, 1), size)


def read_gif_comment(path: Path) -> str:
    with Image.open(path, formats=("GIF",)) as image:
        comment = image.info.get("comment", b"")
    return comment.decode("utf-8") if isinstance(comment, bytes) else str(comment)


def _frame_ms(fps: float) -> int:
    """GIF stores delays in hundredths of a second, and browsers play delays under 20 ms at 100 ms."""
    return max(20, round(100 / fps) * 10)
