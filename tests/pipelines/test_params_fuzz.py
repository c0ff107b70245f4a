"""Every pipeline's Params over hostile input (hypothesis): any dict either validates or raises a ValueError that
names the field at fault, never another exception. This is the edge every UI form and API request goes through."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.base import BaseParams
from pipelines.gan import GanParams
from pipelines.style_transfer import StyleTransferParams
from pipelines.text_to_image import TextToImageParams
from pipelines.vae import VaeParams

PARAMS = [TextToImageParams, GanParams, VaeParams, StyleTransferParams]

# what a browser, an API client or an attacker might send for any one field
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 1e308, -1e-308, 2**53 + 1.0]),
    st.text(max_size=30), st.sampled_from(["", "nan", "inf", "-1", "1e400", "7.5", "\x00", "\u202e", "../x",
                                           "🎨" * 3, "x" * 20_000]),
)
hostile = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                            inner, max_size=3),
                       max_leaves=5)


def valid_value(params: type[BaseParams], name: str) -> st.SearchStrategy[Any]:
    """Values of the field's own kind, in and around its declared range and choices."""
    spec = next(d for d in params.describe() if d["name"] == name)
    if spec["choices"]:
        return st.sampled_from(spec["choices"])
    low, high = spec.get("minimum"), spec.get("maximum")
    if spec["type"] == "int":
        return st.integers(min_value=int(low) - 2 if low is not None else None,
                           max_value=int(high) + 2 if high is not None else None)
    if spec["type"] == "float":
        return st.floats(min_value=low - 1 if low is not None else None,
                         max_value=high + 1 if high is not None else None, allow_nan=False)
    if spec["type"] == "bool":
        return st.booleans()
    return st.text(max_size=50)


@st.composite
def requests(draw: st.DrawFn, params: type[BaseParams]) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(params)]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    body = {name: draw(st.one_of(valid_value(params, name), hostile)) for name in chosen}
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(min_size=1, max_size=8))] = draw(hostile)
    return body


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.__name__)
def test_any_input_validates_or_names_the_field(params: type[BaseParams]) -> None:
    names = {f.name for f in dataclasses.fields(params)}

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(body=requests(params))
    def check(body: dict[str, Any]) -> None:
        try:
            parsed = params.from_dict(body)
        except ValueError as e:
            named = set(re.findall(r"`([^`]+)`", str(e))) | {k for k in body if f"`{k}`" in str(e)}  # k may hold `
            assert named, f"{params.__name__}: {e!r} names no field"
            assert named & (names | set(body)), f"{params.__name__}: {e!r} names no field of {sorted(body)}"
            return
        assert params.from_dict(parsed.to_dict()) == parsed  # what validated is a recipe that validates again

    check()


def test_a_non_object_is_refused() -> None:
    for value in (None, [], "prompt", 3):
        with pytest.raises(ValueError, match="params must be an object"):
            TextToImageParams.from_dict(value)  # type: ignore[arg-type]
