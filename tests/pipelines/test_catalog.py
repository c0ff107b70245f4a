"""The catalogue: what a models folder holds, hub ids, pickle refusal, and which models come first."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipelines.catalog import Catalog, UnknownModel
from pipelines.models import ModelError
from pipelines.text_to_image import TextToImagePipeline
from tests.conftest import wait_for
from tests.support.model_trees import checkpoint
from tests.support.tiny_sd import save_tiny_sd


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = tmp_path / "models"
    (models / "my-folder-model").mkdir(parents=True)
    (models / "my-folder-model" / "model_index.json").write_text(json.dumps({"_class_name": "X"}))
    (models / "not-a-model").mkdir()
    checkpoint(models / "anime.safetensors", "sd1")
    (models / "broken.safetensors").write_bytes(b"x" * 1000)
    (models / "old.ckpt").write_bytes(b"x" * 10)
    (models / "notes.txt").write_text("hello")
    return models


def test_a_models_folder_is_listed_with_sizes_installed_first(models_dir: Path) -> None:
    catalog = Catalog(models_dirs=[models_dir])
    listed = [(m.id, m.origin, m.status) for m in catalog.models("text_to_image")]
    assert listed[:2] == [("anime.safetensors", "local", "installed"), ("my-folder-model", "local", "installed")]
    assert ("stabilityai/sd-turbo", "hub", "not downloaded (offline)") in listed
    assert ("old.ckpt", "local", "refused: pickle (needs --allow-pickle)") in listed[-2:]
    assert catalog.model("anime.safetensors").size_bytes == (models_dir / "anime.safetensors").stat().st_size
    assert catalog.model("anime", "text_to_image").family == "sd1"  # A1111's name for it: the file name alone
    (broken,) = [f for f in catalog.files() if f.id == "broken.safetensors"]  # listed, with what is wrong
    assert broken.kind == "" and broken.problem.startswith("the header claims") and "safetensors" in broken.problem
    assert {m.id for m in catalog.models()} .isdisjoint({"not-a-model", "notes.txt"})


def test_offline_every_tab_defaults_to_a_bundled_model_free_for_any_use() -> None:
    catalog = Catalog()
    defaults = {kind: catalog.models(kind)[0] for kind in ("text_to_image", "gan", "vae")}
    assert {k: m.id for k, m in defaults.items()} == {
        "text_to_image": "atelier-emoji-diffusion", "gan": "atelier-emoji-gan", "vae": "atelier-emoji-vae"}
    assert all(m.status == "installed" and not m.restriction for m in defaults.values())


def test_among_installed_gans_the_one_free_for_any_use_is_the_default(models_dir: Path) -> None:
    gans = Catalog(models_dirs=[models_dir]).models("gan")
    assert gans[0].id == "atelier-emoji-gan" and not gans[0].restriction
    faces = next(m for m in gans if m.id == "dcgan-faces")
    assert faces.status == "installed" and "non-commercial" in faces.restriction.lower()


def test_pickles_are_refused_with_the_reason_unless_allowed(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="old.ckpt: a pickle file, which can run code when loaded"):
        Catalog(models_dirs=[models_dir]).model("old.ckpt", "text_to_image")
    allowed = Catalog(models_dirs=[models_dir], allow_pickle=True).model("old.ckpt", "text_to_image")
    assert allowed.load_options == {"allow_pickle": True} and allowed.status == "installed"


def test_any_hub_id_is_a_model_but_other_names_are_not(models_dir: Path) -> None:
    catalog = Catalog(models_dirs=[models_dir])
    entry = catalog.model("someone/their-model", "text_to_image")
    assert (entry.origin, entry.source, entry.status) == ("hub", "someone/their-model", "not downloaded (offline)")
    assert "someone/their-model" not in {m.id for m in catalog.models()}  # used, never listed for everyone
    with pytest.raises(UnknownModel, match="unknown model 'nothing here'"):
        catalog.model("nothing here", "text_to_image")
    with pytest.raises(UnknownModel):
        catalog.model("someone/their-model", "gan")  # hub ids are text-to-image models only


def test_a_cached_hub_model_is_downloaded_with_its_size(models_dir: Path, tmp_path: Path) -> None:
    blobs = tmp_path / "hub" / "models--stabilityai--sd-turbo" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "abc").write_bytes(b"x" * 4096)
    (blobs.parent / "snapshots").mkdir()
    entry = Catalog(models_dirs=[models_dir]).model("stabilityai/sd-turbo")
    assert (entry.status, entry.size_bytes) == ("downloaded", 4096)


def test_a_studio_may_accept_listed_models_only(models_dir: Path) -> None:
    catalog = Catalog(models_dirs=[models_dir])
    catalog.model("someone/typed-locally", "text_to_image")  # named once where any hub id is allowed
    for typed in ("someone/typed-locally", "someone/forty-gigabytes"):
        with pytest.raises(UnknownModel, match="downloads only the models it lists"):
            catalog.model(typed, "text_to_image", any_hub_id=False)
    listed = catalog.model("stabilityai/sd-turbo", "text_to_image", any_hub_id=False)  # in the catalogue: fine
    assert listed.origin == "hub"


def test_a_typed_hub_id_is_used_for_its_request_and_never_listed(models_dir: Path) -> None:
    catalog = Catalog(models_dirs=[models_dir])
    before = [m.id for m in catalog.models()]
    for n in range(50):  # one user typing ids: no other user's lists grow, nor does the studio's memory
        assert catalog.model(f"someone/typed-{n}", "text_to_image").origin == "hub"
    assert [m.id for m in catalog.models()] == before


def test_a_hub_id_is_never_read_as_a_folder_of_the_working_directory(models_dir: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_tiny_sd(tmp_path / "assets" / "models")  # a real model in a folder named like a hub id: owner/name
    entry = Catalog(models_dirs=[models_dir]).model("assets/models", "text_to_image")
    assert entry.load_options == {"hub": True}
    with pytest.raises(ModelError, match="model assets/models is not downloaded and Atelier is offline"):
        TextToImagePipeline.load(entry.source, device="cpu", **entry.load_options)


def test_rescans_asked_at_the_same_time_share_one(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Catalog()
    scans, gate = [], threading.Event()
    real = catalog._refresh

    def slow_refresh() -> None:
        scans.append(1)
        gate.wait(5)
        real()

    monkeypatch.setattr(catalog, "_refresh", slow_refresh)
    first = threading.Thread(target=catalog.refresh)
    first.start()
    wait_for(lambda: scans, timeout=5)
    waiting = [threading.Thread(target=catalog.refresh) for _ in range(5)]  # asked while the first one runs
    for t in waiting:
        t.start()
    gate.set()
    for t in [first, *waiting]:
        t.join(10)
    assert len(scans) == 2  # the first, and one for everyone who asked while it ran
    catalog.refresh()
    assert len(scans) == 3  # asked after: a scan of its own
