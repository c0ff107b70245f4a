"""Layout, id validation and atomic writes of the gallery's files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from studio.gallery.files import (
    image_relpath,
    iter_temp_files,
    list_folder,
    thumb_relpath,
    validate_id,
    write_png_atomic,
    write_thumbnail,
)
from tests.gallery.conftest import noise


@pytest.mark.parametrize("good", ["a", "job1-0", "A_b-9", "0" * 128, "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f-12"])
def test_validate_id_accepts_safe_names(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "../etc/passwd", "..", ".hidden", "-x", "_x", "a/b", "a\\b", "a b", "a.png", "a\x00", "é", "a" * 129]
)
def test_validate_id_rejects_everything_else(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid artwork id"):
        validate_id(bad)


def test_layout_uses_the_utc_month() -> None:
    # 2024-12-31 23:30 UTC: still December in UTC whatever the local time zone says.
    assert image_relpath("job-0", 1735687800.0) == "images/2024/12/job-0.png"
    assert thumb_relpath("job-0") == "thumbs/job-0.webp"
    with pytest.raises(ValueError):
        image_relpath("../x", 0.0)


def test_write_png_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.png"
    write_png_atomic(target, noise(seed=1), None)
    write_png_atomic(target, noise(seed=2), None)
    with Image.open(target) as image:
        assert image.tobytes() == noise(seed=2).tobytes()
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "a.png"
    write_png_atomic(target, noise(seed=1), None)
    before = target.read_bytes()

    def fail_midway(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_png_atomic(target, noise(seed=2), None)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with pytest.raises(OSError, match="disk full"):
        write_png_atomic(tmp_path / "new.png", noise(), None)
    assert not (tmp_path / "new.png").exists()
    assert list(iter_temp_files(tmp_path)) == []


@pytest.mark.parametrize(
    ("size", "mode", "expected"),
    [((1000, 500), "RGB", (256, 128)), ((300, 900), "RGBA", (85, 256)), ((100, 50), "L", (100, 50))],
)
def test_thumbnail_is_webp_with_longest_side_256(tmp_path: Path, size, mode: str, expected) -> None:
    path = tmp_path / "thumbs" / "t.webp"
    write_thumbnail(path, noise(*size, mode=mode))
    with Image.open(path) as thumb:
        assert thumb.format == "WEBP"
        assert thumb.size == expected
        assert thumb.mode == ("RGBA" if mode == "RGBA" else "RGB")


def test_iter_temp_files_finds_only_temp_files(tmp_path: Path) -> None:
    month = tmp_path / "images" / "2024" / "06"
    month.mkdir(parents=True)
    (tmp_path / "thumbs").mkdir()
    temp = month / ".a.png.0123456789ab.tmp"
    temp.write_bytes(b"x")
    (tmp_path / "thumbs" / ".a.webp.ba9876543210.tmp").write_bytes(b"x")
    (month / "a.png").write_bytes(b"x")
    assert sorted(p.name for p in iter_temp_files(tmp_path)) == [".a.png.0123456789ab.tmp", ".a.webp.ba9876543210.tmp"]


def test_list_folder_walks_like_rglob_in_one_pass(tmp_path: Path) -> None:
    month = tmp_path / "images" / "2024" / "06"
    month.mkdir(parents=True)
    for name in ("a.png", "a.gif", ".hidden.png", ".a.png.0123456789ab.tmp"):
        (month / name).write_bytes(b"x")
    (month / "folder.png").mkdir()  # a folder is not a file, whatever its name
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "b.png").write_bytes(b"x")
    (tmp_path / "images" / "linked").symlink_to(outside, target_is_directory=True)  # not entered, as rglob
    (month / "c.png").symlink_to(outside / "b.png")  # a link to a file is a file
    (month / "dead.png").symlink_to(outside / "gone.png")
    listing = list_folder(tmp_path, "images")
    assert listing.files == {f"images/2024/06/{name}" for name in ("a.png", "a.gif", ".hidden.png", "c.png")}
    assert listing.temp_files == [month / ".a.png.0123456789ab.tmp"]
    assert list_folder(tmp_path, "thumbs") == list_folder(tmp_path, "images/2024/06/a.png")  # missing; a file
    assert list_folder(tmp_path, "thumbs").files == set()
