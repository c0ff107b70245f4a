"""A safetensors file's header, read as its specification lays it out: 8 bytes of little-endian length, then that
many bytes of JSON naming each tensor's dtype, shape and byte range, with free-text `__metadata__`.

Only the header is read, with plain file reads (no torch, no mmap, never a pickle), and every claim in it is checked
against the file before it is believed: the scan reads thousands of files users downloaded from anywhere.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
MAX_METADATA_VALUE = 1024 * 1024  # a kohya tag-frequency table runs to tens of KB; more is not metadata


class BadModelFile(ValueError):
    """A model file that cannot be read; the message says why, in words for the user."""


@dataclass(frozen=True)
class Header:
    shapes: dict[str, tuple[int, ...]]  # tensor name → shape
    metadata: dict[str, str] = field(default_factory=dict)
    data_bytes: int = 0  # bytes the tensors occupy after the header

    def has_prefix(self, *prefixes: str) -> bool:
        return any(name.startswith(prefixes) for name in self.shapes)

    def has_part(self, *parts: str) -> bool:
        return any(part in name for name in self.shapes for part in parts)


def read_header(path: Path) -> Header:
    """The header of a .safetensors file; BadModelFile naming the problem for an empty, truncated, oversized or
    garbled one."""
    try:
        with Path(path).open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            if size == 0:
                raise BadModelFile("the file is empty (0 bytes)")
            head = f.read(8)
            if len(head) < 8:
                raise BadModelFile(f"the file is {size} bytes, too short for a safetensors header")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES:
                raise BadModelFile(f"the header claims {length:,} bytes, more than the {MAX_HEADER_BYTES:,} "
                                   "a safetensors file may have: not a safetensors file, or a damaged one")
            if length > size - 8:
                raise BadModelFile(f"the header claims {length:,} bytes but the file has {size - 8:,} after the "
                                   "length: the file is truncated (an unfinished download?)")
            raw = f.read(length)
    except OSError as e:
        raise BadModelFile(f"cannot read the file: {e.strerror or e}") from None
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadModelFile("the header is not JSON: not a safetensors file, or a damaged one") from None
    if not isinstance(parsed, dict):
        raise BadModelFile("the header is not a JSON object: not a safetensors file")
    return _checked(parsed, size - 8 - length)


def _checked(parsed: dict[str, object], available: int) -> Header:
    metadata = parsed.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise BadModelFile("the header's __metadata__ is not an object of text")
    shapes: dict[str, tuple[int, ...]] = {}
    end = 0
    for name, info in parsed.items():
        if not isinstance(info, dict):
            raise BadModelFile(f"tensor {name[:80]!r} has no dtype, shape and offsets in the header")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
                and isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(n, int) and n >= 0 for n in offsets) and offsets[0] <= offsets[1]):
            raise BadModelFile(f"tensor {name[:80]!r} has a malformed shape or byte range in the header")
        shapes[name] = tuple(shape)
        end = max(end, offsets[1])
    if end > available:
        raise BadModelFile(f"the tensors need {end:,} bytes but the file holds {available:,} after its header: "
                           "the file is truncated (an unfinished download?)")
    text = {str(k): v for k, v in metadata.items() if isinstance(v, str) and len(v) <= MAX_METADATA_VALUE}
    return Header(shapes, text, end)
