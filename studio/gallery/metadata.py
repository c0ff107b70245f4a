"""What an artwork carries about itself: the Recipe, AUTOMATIC1111's `parameters` text, and PNG text chunks.

Every PNG the gallery writes holds two text chunks:
- `parameters`: the de-facto standard text of AUTOMATIC1111's stable-diffusion-webui (`modules/infotext_utils.py`):
  prompt, an optional `Negative prompt: …` line, then one line of `Key: value` pairs. Other tools (A1111's
  "PNG Info" tab, ComfyUI, InvokeAI importers, civitai) read it.
- `atelier`: the Recipe as JSON, the authoritative record; the gallery re-indexes a lost record from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from PIL.PngImagePlugin import PngInfo

logger = logging.getLogger(__name__)

PARAMETERS_KEY = "parameters"
RECIPE_KEY = "atelier"
RECIPE_VERSION = 1  # bump when the JSON layout changes incompatibly; from_json refuses newer versions

# A1111's key syntax (re_param_code in infotext_utils.py); a key outside it could not be parsed back.
_KEY_RE = re.compile(r"\w[\w \-/]*")
# One `Key: value` pair, as A1111's re_param_code finds them: a value is JSON-quoted (may hold commas) when a `,` or
# the line's end follows its closing quote, else it runs to the next comma. The search is linear: the look-behind lets
# a match start only where a run of key characters starts, so each run is scanned once (A1111's `\s*(\w[\w \-/]*):`
# tried every position of a run of spaces, which `\s*` and the key both take, and rescanned it to its end: 16,000
# spaces took 2 s, megabytes never ended). Same pairs as A1111's regex (tests/gallery/test_metadata.py compares them).
_PAIR_RE = re.compile(r'(?<![\w \-/])[ \-/]*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])*"(?=,|$)|[^,]*)(?:,|$)')
# A `parameters` text past this is refused, not parsed: A1111's own prompts stay far below it (75-token chunks)
MAX_PARAMETERS_CHARS = 200_000
MAX_PNG_TEXT_BYTES = 8_000_000  # all text chunks of one PNG, decompressed; past it the PNG is refused
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NEGATIVE = "Negative prompt:"
# These come from the Recipe's own fields; an a1111 entry with the same key would write a contradiction.
_RESERVED_KEYS = ("Seed", "Model hash", "Model", "Pipeline", "Version")
_MAX_CREATED_AT = 253402300800.0  # year 10000: beyond it dates (and the images/<YYYY>/ layout) break


@dataclass(frozen=True)
class Recipe:
    """Everything needed to reproduce one image and to file it in the gallery.

    `seed` reproduces this image on its own (not the job's first seed); `index`/`count` place it in its job.
    The dict fields are excluded from hashing, so a Recipe stays hashable.
    """

    pipeline: str
    model: str
    model_hash: str | None
    params: dict[str, Any] = field(hash=False)
    seed: int
    owner: str
    job_id: str
    index: int
    count: int
    app_version: str
    a1111: dict[str, Any] = field(hash=False)
    info: dict[str, Any] = field(hash=False)
    created_at: float

    def __post_init__(self) -> None:
        for name in ("pipeline", "model", "owner", "job_id", "app_version"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"recipe `{name}` must be text, got {type(getattr(self, name)).__name__}")
        if self.model_hash is not None and not isinstance(self.model_hash, str):
            raise ValueError(f"recipe `model_hash` must be text or null, got {type(self.model_hash).__name__}")
        for name in ("seed", "index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"recipe `{name}` must be a whole number, got {value!r}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"recipe `index` must be in 0..{self.count - 1} (count {self.count}), got {self.index}")
        created = self.created_at
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise ValueError(f"recipe `created_at` must be a unix time, got {created!r}")
        if not 0 <= created < _MAX_CREATED_AT:
            raise ValueError(f"recipe `created_at` must be between 1970 and 9999, got {created}")
        for name in ("params", "a1111", "info"):
            _check_json_object(name, getattr(self, name))
        for key in self.a1111:
            if not _KEY_RE.fullmatch(key):
                raise ValueError(f"recipe a1111 key {key!r} must be letters, digits, '_', '-', '/' or spaces")

    @property
    def prompt(self) -> str:
        return _text(self.params.get("prompt"))

    @property
    def negative_prompt(self) -> str:
        return _text(self.params.get("negative_prompt"))

    def to_json(self) -> str:
        # Fields read directly, not through dataclasses.asdict: asdict deep-copies every nested value first (five
        # times the cost of the dump itself), and the values are plain JSON already (checked in __post_init__).
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({"recipe_version": RECIPE_VERSION, **values}, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        """Parse `to_json` output; ValueError says what is wrong. Unknown keys (from newer writers) are ignored."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"recipe is not valid JSON: {e}") from None
        except RecursionError:  # `[[[[…` thousands deep: the decoder recurses once per level
            raise ValueError("recipe is not valid JSON: it nests too deeply") from None
        if not isinstance(data, dict):
            raise ValueError(f"recipe must be a JSON object, got {type(data).__name__}")
        version = data.get("recipe_version", RECIPE_VERSION)
        if not isinstance(version, int) or version > RECIPE_VERSION:
            raise ValueError(f"recipe version {version!r} is newer than this Atelier understands ({RECIPE_VERSION})")
        data = {"model_hash": None, "a1111": {}, "info": {}, **data}
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"recipe is missing field(s): {', '.join(missing)}")
        return cls(**{name: data[name] for name in names})


def _check_json_object(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"recipe `{name}` must be an object with text keys, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"recipe `{name}` must hold only JSON values: {e}") from None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _format_value(value: Any) -> str:
    """A1111 writes values with str() and JSON-quotes those that would break the `Key: value, …` line."""
    text = value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else json.dumps(value)
    if any(ch in text for ch in ',:"\n\r') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def format_parameters(recipe: Recipe) -> str:
    """AUTOMATIC1111's `parameters` text for this recipe (see the module docstring)."""
    pairs = {k: v for k, v in recipe.a1111.items() if k not in _RESERVED_KEYS and v is not None}
    pairs["Seed"] = recipe.seed
    if recipe.model_hash:
        pairs["Model hash"] = recipe.model_hash
    pairs.update({"Model": recipe.model, "Pipeline": recipe.pipeline, "Version": f"atelier {recipe.app_version}"})
    lines = [recipe.prompt]
    if recipe.negative_prompt:
        lines.append(f"{_NEGATIVE} {recipe.negative_prompt}")
    lines.append(", ".join(f"{key}: {_format_value(value)}" for key, value in pairs.items()))
    return "\n".join(lines)


def _parse_pairs(line: str) -> dict[str, str]:
    return {match[1]: _unquote(match[2].strip()) for match in _PAIR_RE.finditer(line)}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except json.JSONDecodeError:
            return value  # A1111 itself keeps a badly quoted value as written
    return value


def parse_parameters(text: str) -> dict[str, Any]:
    """Inverse of `format_parameters`, tolerant of real A1111 files: prompt, negative_prompt, then every pair.

    Like A1111, the last line holds the pairs when it looks like them (three or more pairs, or a `Steps` or
    `Seed` pair); otherwise it is part of the prompt. Values stay strings. A text over MAX_PARAMETERS_CHARS is
    refused with a ValueError.
    """
    if len(text) > MAX_PARAMETERS_CHARS:
        raise ValueError(f"the `parameters` text is {len(text):,} characters; at most {MAX_PARAMETERS_CHARS:,} are "
                         "read")
    *lines, last = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    pairs = _parse_pairs(last)
    if len(pairs) < 3 and "Steps" not in pairs and "Seed" not in pairs:
        lines.append(last)
        pairs = {}
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in lines:
        if negative is None and line.startswith(_NEGATIVE):
            negative = [line.removeprefix(_NEGATIVE).removeprefix(" ")]
        elif negative is not None:
            negative.append(line)
        else:
            prompt.append(line)
    result: dict[str, Any] = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative or [])}
    result.update({k: v for k, v in pairs.items() if k not in result})
    return result


def png_info(recipe: Recipe) -> PngInfo:
    """The two text chunks; Pillow writes tEXt when the text is Latin-1 and iTXt (UTF-8) otherwise."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, format_parameters(recipe))
    info.add_text(RECIPE_KEY, recipe.to_json())
    return info


def read_png_text(path_or_file: str | Path | IO[bytes]) -> dict[str, str]:
    """All tEXt/zTXt/iTXt chunks of a PNG, those after the image data too, read chunk by chunk: the pixels are
    skipped, never decoded, so neither their size nor a decompression bomb costs memory. OSError if the file is not
    a PNG or breaks off (FileNotFoundError if it is missing); ValueError if its text passes MAX_PNG_TEXT_BYTES."""
    with contextlib.ExitStack() as stack:
        file = path_or_file if hasattr(path_or_file, "read") else stack.enter_context(open(path_or_file, "rb"))
        if file.read(8) != PNG_SIGNATURE:
            raise OSError("no PNG signature at its start")
        texts: dict[str, str] = {}
        budget = MAX_PNG_TEXT_BYTES
        while True:
            head = file.read(8)
            if len(head) < 8:
                raise OSError("the PNG breaks off before its end")
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return texts
            if kind not in (b"tEXt", b"zTXt", b"iTXt"):
                file.seek(length + 4, os.SEEK_CUR)  # the chunk and its CRC
                continue
            if length > budget:
                raise ValueError(f"the PNG's text is larger than {MAX_PNG_TEXT_BYTES / 1e6:.0f} MB")
            data = file.read(length)
            file.seek(4, os.SEEK_CUR)
            if len(data) < length:
                raise OSError("the PNG breaks off before its end")
            key, value = _text_chunk(kind, data, budget)
            budget -= len(data) + len(value)
            texts.setdefault(key, value)


def _text_chunk(kind: bytes, data: bytes, budget: int) -> tuple[str, str]:
    """One text chunk's keyword and text (PNG spec 11.3.4): Latin-1 tEXt, zlib zTXt, UTF-8 iTXt (maybe zlib)."""
    key, _, rest = data.partition(b"\0")
    if kind == b"tEXt":
        return key.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":
        return key.decode("latin-1"), _inflate(rest[1:], budget).decode("latin-1")
    compressed, rest = rest[:1] == b"\1", rest[2:]  # compression flag, method
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    raw = _inflate(text, budget) if compressed else text
    return key.decode("latin-1"), raw.decode("utf-8", errors="replace")


def _inflate(data: bytes, budget: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, budget + 1)
    except zlib.error as e:
        raise OSError(f"a compressed PNG text chunk is broken ({e})") from None
    if len(raw) > budget:
        raise ValueError(f"the PNG's text is larger than {MAX_PNG_TEXT_BYTES / 1e6:.0f} MB")
    return raw


def read_recipe(path: str | Path) -> Recipe | None:
    """The Recipe in a PNG's `atelier` chunk; None when there is none or it (or the file) is unreadable.

    A missing file still raises FileNotFoundError: that is the caller's mistake, not a foreign image.
    """
    try:
        text = read_png_text(path).get(RECIPE_KEY)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as e:  # Pillow raises SyntaxError for broken PNG chunks
        logger.warning("cannot read PNG text of %s: %s", path, e)
        return None
    if text is None:
        return None
    try:
        return Recipe.from_json(text)
    except ValueError as e:
        logger.warning("ignoring invalid %r chunk in %s: %s", RECIPE_KEY, path, e)
        return None
