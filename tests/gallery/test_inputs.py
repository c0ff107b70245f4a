"""Input images are checked at the edge: bombs, non-images and odd modes get a clear error or a conversion."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from studio.gallery.inputs import InputQuotaFull, InputStore, check_format
from studio.services import build_services
from tests.conftest import make_config
from tests.gallery.conftest import make_recipe, noise


def png_bytes(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def test_same_picture_same_reference_and_round_trip(tmp_path: Path) -> None:
    store = InputStore(tmp_path)
    image = Image.new("RGB", (5, 4), (10, 20, 30))
    ref = store.put(image)
    assert store.put(png_bytes(image)) == ref and ref.startswith("in-")
    assert store.get(ref).tobytes() == image.tobytes() and len(list(tmp_path.glob("in-*"))) == 1


@pytest.mark.parametrize("mode", ["CMYK", "P", "RGBA", "LA", "I;16", "1", "F"])
def test_odd_modes_are_converted_to_something_every_pipeline_reads(tmp_path: Path, mode: str) -> None:
    image = Image.new("RGB", (6, 6), (200, 100, 50)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.new("I;16", (6, 6), 40_000)
    ref = InputStore(tmp_path).put(image, field="content_image")
    assert InputStore(tmp_path).get(ref).mode in ("RGB", "RGBA", "L")


def test_non_images_and_bombs_are_refused_by_name(tmp_path: Path) -> None:
    store = InputStore(tmp_path)
    with pytest.raises(ValueError, match="`style_image` is not a PNG, JPEG or WebP picture$"):
        store.put(b"GIF89a not really", field="style_image")  # in words, not "<_io.BytesIO object at 0x…>"
    with pytest.raises(ValueError, match="`style_image` is not a readable image"):
        store.put(png_bytes(Image.effect_noise((64, 64), 60))[:200], field="style_image")  # a PNG that breaks off
    with pytest.raises(ValueError, match="`content_image` is 60 MB; at most 52 MB"):
        store.put(b"\0" * 60_000_000, field="content_image")
    bomb = png_bytes(Image.new("1", (20_000, 20_000)))  # 400 Mpx that compress to a few kB
    with pytest.raises(ValueError, match="`content_image` has more than 64,000,000 pixels"):
        store.put(bomb, field="content_image")
    mid = png_bytes(Image.new("1", (9_000, 9_000)))  # past our limit, under Pillow's own warning threshold
    with pytest.raises(ValueError, match="`content_image` is 9000x9000: more than 64,000,000 pixels"):
        store.put(mid, field="content_image")
    assert list(tmp_path.glob("in-*")) == []  # nothing half-written


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"  # Pillow would hand it to Ghostscript


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "TGA", "ICO", "PCX", "PPM", "GIF", "EPS"])
def test_only_png_jpeg_and_webp_are_accepted(tmp_path: Path, fmt: str) -> None:
    if fmt == "EPS":
        data = EPS
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, format=fmt)
        data = buffer.getvalue()
    with pytest.raises(ValueError, match="`content_image` is not a PNG, JPEG or WebP picture"):
        InputStore(tmp_path).put(data, field="content_image")
    (tmp_path / f"upload.{fmt.lower()}").write_bytes(data)
    with pytest.raises(ValueError, match="`content_image` is not a PNG, JPEG or WebP picture"):
        check_format(tmp_path / f"upload.{fmt.lower()}", "content_image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_are_accepted(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buffer, format=fmt)
    assert InputStore(tmp_path).get(InputStore(tmp_path).put(buffer.getvalue())).size == (8, 8)


def test_a_one_pixel_image_is_accepted(tmp_path: Path) -> None:
    ref = InputStore(tmp_path).put(Image.new("RGB", (1, 1), (1, 2, 3)))
    assert InputStore(tmp_path).get(ref).size == (1, 1)


def test_each_user_has_an_input_quota_and_uses_only_their_own_inputs(tmp_path: Path) -> None:
    store, picture = InputStore(tmp_path, quota_bytes=2_000), png_bytes(Image.effect_noise((24, 24), 60))
    first = store.put(picture, owner="ann")
    assert store.put(picture, owner="ann") == first  # the same picture again: counted once
    with pytest.raises(InputQuotaFull, match="keeps at most 0 MB per user .--max-input-mb-per-user."):
        store.put(Image.effect_noise((40, 40), 90), owner="ann")
    assert store.put(picture, owner="bob") == first  # bob's own quota
    assert store.exists(first, owner="ann") and store.exists(first, owner="bob") and not store.exists(first,
                                                                                                       owner="cy")
    assert store.size(first) == (24, 24)


def test_inputs_no_job_or_artwork_names_are_swept_once_old(tmp_path: Path) -> None:
    store = InputStore(tmp_path)
    used, unused = (store.put(Image.new("RGB", (4, 4), (v, v, v))) for v in (10, 200))
    fresh = store.put(Image.new("RGB", (4, 4), (99, 99, 99)))
    assert store.sweep({used}) == 0  # a fresh upload may be waiting for its job
    assert store.sweep({used, fresh}, older_than_s=-1) == 1
    assert store.exists(used) and store.exists(fresh) and not store.exists(unused)
    assert store.put(Image.new("RGB", (4, 4), (200, 200, 200))) == unused  # uploaded again: stored again


def test_the_studio_sweeps_unused_inputs_at_start_and_keeps_those_a_job_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path / "data")
    services = build_services(config)
    try:
        named = services.inputs.put(Image.new("RGB", (16, 16), (1, 2, 3)))
        unused = services.inputs.put(Image.new("RGB", (16, 16), (3, 2, 1)))
        services.generation.submit("style_transfer", services.catalog.default_model("style_transfer").id,
                                   {"content_image": named}, 1)
    finally:
        services.stop()
    monkeypatch.setattr("studio.gallery.inputs.KEEP_UNUSED_S", -1.0)  # as if a day had passed
    services = build_services(config)
    try:
        services.start()
        assert services.inputs.exists(named) and not services.inputs.exists(unused)
    finally:
        services.stop()


def test_inputs_stored_before_claims_belong_to_the_owners_of_the_artworks_that_name_them(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    services = build_services(config)
    try:
        legacy = "in-" + "ab" * 16  # written by an Atelier that kept no claims
        Image.new("RGB", (8, 8), (5, 6, 7)).save(services.inputs.root / f"{legacy}.png")
        claimed = services.inputs.put(Image.new("RGB", (8, 8), (7, 6, 5)), owner="ann")
        for index, (owner, ref) in enumerate((("ann", legacy), ("bob", claimed))):
            services.gallery.add(noise(), make_recipe(pipeline="style_transfer", owner=owner, job_id=f"job{index}",
                                                      params={"content_image": ref}))
    finally:
        services.stop()
    services = build_services(config)
    try:
        services.start()
        assert services.inputs.exists(legacy, owner="ann") and not services.inputs.exists(legacy, owner="bob")
        # an artwork naming someone else's claimed upload gains its owner nothing
        assert services.inputs.exists(claimed, owner="ann") and not services.inputs.exists(claimed, owner="bob")
    finally:
        services.stop()
