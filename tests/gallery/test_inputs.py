"""Input images are checked at the edge: bombs, non-images and odd modes get a clear error or a conversion."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from studio.gallery.inputs import InputStore


def png_bytes(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def test_same_picture_same_reference_and_round_trip(tmp_path: Path) -> None:
    store = InputStore(tmp_path)
    image = Image.new("RGB", (5, 4), (10, 20, 30))
    ref = store.put(image)
    assert store.put(png_bytes(image)) == ref and ref.startswith("in-")
    assert store.get(ref).tobytes() == image.tobytes() and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "I;16", "1", "F"])
def test_odd_modes_are_converted_to_something_every_pipeline_reads(tmp_path: Path, mode: str) -> None:
    image = Image.new("RGB", (6, 6), (200, 100, 50)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.new("I;16", (6, 6), 40_000)
    ref = InputStore(tmp_path).put(image, field="content_image")
    assert InputStore(tmp_path).get(ref).mode in ("RGB", "RGBA", "L")


def test_non_images_and_bombs_are_refused_by_name(tmp_path: Path) -> None:
    store = InputStore(tmp_path)
    with pytest.raises(ValueError, match="`style_image` is not a readable image"):
        store.put(b"GIF89a not really", field="style_image")
    with pytest.raises(ValueError, match="`content_image` is 60 MB; at most 52 MB"):
        store.put(b"\0" * 60_000_000, field="content_image")
    bomb = png_bytes(Image.new("1", (20_000, 20_000)))  # 400 Mpx that compress to a few kB
    with pytest.raises(ValueError, match="`content_image` has more than 64,000,000 pixels"):
        store.put(bomb, field="content_image")
    mid = png_bytes(Image.new("1", (9_000, 9_000)))  # past our limit, under Pillow's own warning threshold
    with pytest.raises(ValueError, match="`content_image` is 9000x9000: more than 64,000,000 pixels"):
        store.put(mid, field="content_image")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_one_pixel_image_is_accepted(tmp_path: Path) -> None:
    ref = InputStore(tmp_path).put(Image.new("RGB", (1, 1), (1, 2, 3)))
    assert InputStore(tmp_path).get(ref).size == (1, 1)
