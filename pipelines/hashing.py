"""Short model hashes as AUTOMATIC1111 writes them ("Model hash: 6ce0161689" = sha256[:10] of the file),
cached by path, size and modification time so a multi-GB checkpoint is read once, not at every load."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import platformdirs

logger = logging.getLogger(__name__)

CHUNK = 8 * 1024 * 1024


def cache_file() -> Path:
    return Path(platformdirs.user_cache_dir("atelier", appauthor=False)) / "model_hashes.json"


def short_file_hash(path: Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _read_cache()
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    short = digest.hexdigest()[:10]
    cache[key] = short
    _write_cache(cache)
    return short


def _read_cache() -> dict[str, str]:
    try:
        return json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict[str, str]) -> None:
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(target)
    except OSError as e:  # a hash cache that cannot be written only costs time
        logger.warning("cannot write the model hash cache %s: %s", target, e)
