"""InputStore: images users hand to a pipeline (img2img source, mask, style painting), kept for reproduction.

Each input is checked at the edge (format, size, pixel count, decodability), normalised to PNG and stored under its
content hash, so a recipe that names it can be re-run later and two uploads of one file are stored once.

Who uploaded what is kept in `inputs.db` (one claim per user and input): a job may name only an input its owner
uploaded, each user's inputs count against their quota (--max-input-mb-per-user), and `sweep` removes, at
start-up, the inputs that no job and no artwork names any more once they are a day old (a fresh upload may be
waiting for its job).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from studio.db import Database
from studio.gallery.files import write_bytes_atomic

logger = logging.getLogger(__name__)

MAX_INPUT_BYTES = 50 * 1024 * 1024  # a 50 MB upload is already a very large photo
MAX_INPUT_PIXELS = 64_000_000  # ~8000×8000; beyond this a "photo" is more likely a decompression bomb
# what an input picture may be, whatever its name says: Pillow identifies the file among these only, so no other
# decoder (BMP, TIFF, TGA, ICO, PCX, PPM…; EPS, which hands the file to Ghostscript) ever sees an upload
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
_ACCEPTED = "a PNG, JPEG or WebP picture"
REF = re.compile(r"^in-[0-9a-f]{32}$")
REFS_IN_TEXT = re.compile(r"in-[0-9a-f]{32}")  # input references inside params JSON, for `sweep`'s callers
KEEP_UNUSED_S = 86_400.0  # an input no job or artwork names is kept this long after its (last) upload
DB_NAME = "inputs.db"
MIGRATIONS = [
    """
    CREATE TABLE claims (
        ref TEXT NOT NULL,
        owner TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        claimed_at REAL NOT NULL,
        PRIMARY KEY (ref, owner)
    );
    CREATE INDEX claims_by_owner ON claims (owner);
    """,
]
KEPT_MODES = ("RGB", "RGBA", "L")


class InputQuotaFull(ValueError):
    """A user's stored inputs would pass their quota."""


class InputStore:
    def __init__(self, root: Path, *, quota_bytes: int = 0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes  # per user; 0: none
        self._db = Database(self.root / DB_NAME, MIGRATIONS)
        self._lock = threading.Lock()  # quota check and claim as one step, for concurrent uploads of one user

    def close(self) -> None:
        self._db.close()

    def put(self, image: Image.Image | bytes | Path, *, field: str = "image", owner: str = "local") -> str:
        """Store an input for `owner` and return its reference; ValueError naming `field` when it is not a usable
        image, InputQuotaFull when it would take `owner` past the quota."""
        decoded = decode_image(image, field)
        if decoded.mode not in KEPT_MODES:
            decoded = decoded.convert("RGBA" if "A" in decoded.getbands() else "RGB")
        buffer = io.BytesIO()
        decoded.save(buffer, format="PNG")
        data = buffer.getvalue()
        ref = "in-" + hashlib.sha256(data).hexdigest()[:32]
        with self._lock:
            if not self.exists(ref, owner=owner):
                self._check_quota(owner, len(data))
            path = self.path(ref)
            if not path.exists():
                write_bytes_atomic(path, data)
            with self._db.transaction() as conn:
                conn.execute("INSERT INTO claims (ref, owner, bytes, claimed_at) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (ref, owner) DO UPDATE SET claimed_at = excluded.claimed_at",
                             (ref, owner, len(data), time.time()))
        return ref

    def _check_quota(self, owner: str, adding: int) -> None:
        if not self.quota_bytes:
            return
        used = self._db.query("SELECT COALESCE(SUM(bytes), 0) FROM claims WHERE owner = ?", (owner,))[0][0]
        if used + adding > self.quota_bytes:
            raise InputQuotaFull(f"your stored input pictures would take {(used + adding) / 1e6:.0f} MB; this studio "
                                 f"keeps at most {self.quota_bytes / 1e6:.0f} MB per user (--max-input-mb-per-user)"
                                 "; inputs no job or artwork uses are removed a day after their upload")

    def exists(self, ref: str, *, owner: str | None = None) -> bool:
        """Whether `ref` is stored; with `owner`, whether that user uploaded it (only then may their jobs use it)."""
        if not (REF.match(ref) and self.path(ref).exists()):
            return False
        return owner is None or bool(self._db.query("SELECT 1 FROM claims WHERE ref = ? AND owner = ?",
                                                    (ref, owner)))

    def size(self, ref: str) -> tuple[int, int]:
        """(width, height) from the stored PNG's header, without decoding it."""
        with Image.open(self.path(ref), formats=("PNG",)) as image:
            return image.size

    def sweep(self, referenced: set[str], *, older_than_s: float | None = None) -> int:
        """Remove the inputs that no job or artwork names (`referenced`) and that nobody uploaded in the last
        `older_than_s` (KEEP_UNUSED_S); the number removed."""
        cutoff = time.time() - (KEEP_UNUSED_S if older_than_s is None else older_than_s)
        removed = 0
        for path in self.root.glob("in-*.png"):
            ref = path.stem
            if ref in referenced or not REF.match(ref):
                continue
            recent = self._db.query("SELECT 1 FROM claims WHERE ref = ? AND claimed_at >= ?", (ref, cutoff))
            if recent or path.stat().st_mtime >= cutoff:
                continue
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM claims WHERE ref = ?", (ref,))
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def adopt(self, users: Mapping[str, Iterable[str]]) -> int:
        """Claim each stored input nobody has claimed for the `users` whose artworks name it (ref → owners): inputs
        stored before claims were kept stay usable by those who used them. Claimed inputs are left as they are, so
        naming another user's upload in a recipe gains nothing. The number of claims made."""
        made = 0
        for ref, owners in users.items():
            if not self.exists(ref) or self._db.query("SELECT 1 FROM claims WHERE ref = ?", (ref,)):
                continue
            stat = self.path(ref).stat()
            with self._db.transaction() as conn:
                for owner in sorted(set(owners)):
                    conn.execute("INSERT INTO claims (ref, owner, bytes, claimed_at) VALUES (?, ?, ?, ?)",
                                 (ref, owner, stat.st_size, stat.st_mtime))
                    made += 1
        return made

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
