"""A1111's extra-network tags in a prompt: `<lora:NAME:WEIGHT>` (also `<lyco:…>`, the LyCORIS extension's), with
A1111's optional second weight for the UNet (`<lora:NAME:TE:UNET>`) or named weights (`<lora:NAME:te=1:unet=0.6>`).
The tags are taken out of the text the encoder sees; each names a LoRA of the model library."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

MAX_WEIGHT = 10.0
_TAG = re.compile(r"<(lora|lyco):([^<>]{1,400})>")  # bounded, no nested quantifiers: linear


class NetworkTag(NamedTuple):
    name: str
    text_encoder: float  # the weight in the text encoder(s)
    unet: float  # the weight in the UNet


def network_tags(prompt: str) -> tuple[str, list[NetworkTag]]:
    """The prompt without its tags, and the tags in order (one per name: a later tag of the same name wins, as
    A1111 applies each network once). ValueError naming the tag for a weight that is not a number, not finite or
    beyond ±10."""
    tags: dict[str, NetworkTag] = {}
    for match in _TAG.finditer(prompt):
        tag = _parsed(match[0], match[2])
        tags.pop(tag.name, None)
        tags[tag.name] = tag
    return _TAG.sub("", prompt), list(tags.values())


def _parsed(whole: str, body: str) -> NetworkTag:
    name, *args = [part.strip() for part in body.split(":")]
    if not name:
        raise ValueError(f"the tag {whole[:80]!r} names no LoRA")
    positional: list[float] = []
    named: dict[str, float] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq:
            if key.strip() not in ("te", "unet"):
                raise ValueError(f"the tag {whole[:80]!r}: unknown weight {key.strip()!r} (te= or unet=)")
            named[key.strip()] = _weight(value, whole)
        else:
            positional.append(_weight(arg, whole))
    if len(positional) > 2:
        raise ValueError(f"the tag {whole[:80]!r} has {len(positional)} weights; at most two (text encoder, UNet)")
    te = named.get("te", positional[0] if positional else 1.0)
    unet = named.get("unet", positional[1] if len(positional) > 1 else te)
    return NetworkTag(name, te, unet)


def _weight(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"the tag {whole[:80]!r}: the weight {text.strip()[:20]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise ValueError(f"the tag {whole[:80]!r}: the weight {value} must be a finite number from -{MAX_WEIGHT:g} "
                         f"to {MAX_WEIGHT:g}")
    return value
