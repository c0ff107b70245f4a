"""InputStore: images users hand to a pipeline (img2img source, mask, style painting), kept for reproduction.

Each input is checked at the edge (format, size, pixel count, decodability), normalised to PNG and stored under its
content hash, so a recipe that names it can be re-run later and two uploads of one file are stored once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import warnings
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from studio.gallery.files import write_bytes_atomic

logger = logging.getLogger(__name__)

MAX_INPUT_BYTES = 50 * 1024 * 1024  # a 50 MB upload is already a very large photo
MAX_INPUT_PIXELS = 64_000_000  # ~8000×8000; beyond this a "photo" is more likely a decompression bomb
# what an input picture may be, whatever its name says: Pillow identifies the file among these only, so no other
# decoder (BMP, TIFF, TGA, ICO, PCX, PPM…; EPS, which hands the file to Ghostscript) ever sees an upload
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
_ACCEPTED = "a PNG, JPEG or WebP picture"
REF = re.compile(r"^in-[0-9a-f]{32}$")
KEPT_MODES = ("RGB", "RGBA", "L")


class InputStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, image: Image.Image | bytes | Path, *, field: str = "image") -> str:
        """Store an input and return its reference; ValueError naming `field` when it is not a usable image."""
        decoded = decode_image(image, field)
        if decoded.mode not in KEPT_MODES:
            decoded = decoded.convert("RGBA" if "A" in decoded.getbands() else "RGB")
        buffer = io.BytesIO()
        decoded.save(buffer, format="PNG")
        data = buffer.getvalue()
        ref = "in-" + hashlib.sha256(data).hexdigest()[:32]
        path = self.path(ref)
        if not path.exists():
            write_bytes_atomic(path, data)
        return ref

    def exists(self, ref: str) -> bool:
        return bool(REF.match(ref)) and self.path(ref).exists()

    def path(self, ref: str) -> Path:
        if not REF.match(ref):
            raise ValueError(f"not an input image reference: {ref[:80]!r}")
        return self.root / f"{ref}.png"

    def read_bytes(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"input image {ref} is no longer stored") from None

    def get(self, ref: str) -> Image.Image:
        with Image.open(io.BytesIO(self.read_bytes(ref)), formats=("PNG",)) as image:
            return image.copy()


def decode_image(image: Image.Image | bytes | Path, field: str) -> Image.Image:
    """The image, checked (bytes, pixels, decodability, decompression bombs); ValueError naming `field` if not."""
    if isinstance(image, Image.Image):
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise ValueError(f"`{field}` is {image.width}x{image.height}: more than {MAX_INPUT_PIXELS:,} pixels")
        return image
    data = Path(image).read_bytes() if isinstance(image, Path) else image
    if len(data) > MAX_INPUT_BYTES:
        raise ValueError(f"`{field}` is {len(data) / 1e6:.0f} MB; at most {MAX_INPUT_BYTES / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
                if opened.width * opened.height > MAX_INPUT_PIXELS:
                    raise ValueError(f"`{field}` is {opened.width}x{opened.height}: more than "
                                     f"{MAX_INPUT_PIXELS:,} pixels")
                opened.load()
                return opened.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"`{field}` has more than {MAX_INPUT_PIXELS:,} pixels (refused: a possible "
                         "decompression bomb)") from None
    except UnidentifiedImageError:
        raise ValueError(f"`{field}` is not {_ACCEPTED}") from None
    except (OSError, SyntaxError) as e:  # a broken file of an accepted format
        raise ValueError(f"`{field}` is not a readable image ({e})") from None


def check_format(path: Path | IO[bytes], field: str) -> None:
    """ValueError naming `field` unless the file is one of ACCEPTED_FORMATS (only its header is read)."""
    try:
        with Image.open(path, formats=ACCEPTED_FORMATS):
            pass
    except UnidentifiedImageError:
        raise ValueError(f"`{field}` is not {_ACCEPTED}") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"`{field}` is not a readable image ({e})") from None
