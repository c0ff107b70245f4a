"""A cache of converted weights: state dicts written as `.safetensors` named by the source file's sha256, so a
port of another format (ONNX, ncnn) converts a packaged file once and later loads read plain tensors."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached state dict, or None when there is none or it cannot be read."""
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (OSError, SafetensorError) as e:  # a damaged cache only costs one conversion
        logger.warning("ignoring the unreadable weight cache %s: %s", path, e)
        return None


def write_cached(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write `state` to `path` (a failure is logged, not raised: a cache that cannot be written only costs time)."""
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a private name then a rename: a concurrent loader never reads half a file
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=metadata)
        tmp.replace(path)
    except OSError as e:
        logger.warning("cannot write the weight cache %s: %s", path, e)
