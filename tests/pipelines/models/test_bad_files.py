"""Whatever a models folder holds, the scan lists it with a plain reason (or tells it apart) and goes on."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from pipelines.catalog import Catalog
from pipelines.models import Library, kinds
from pipelines.models.header import BadModelFile, read_header
from tests.support.model_trees import checkpoint, embedding, lora


def problems(library: Library) -> dict[str, str]:
    return {f.path.name: f.problem for f in library.files() if f.problem}


def test_broken_safetensors_files_are_listed_with_what_is_wrong(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "Lora"
    folder.mkdir(parents=True)
    (folder / "empty.safetensors").write_bytes(b"")
    (folder / "tiny.safetensors").write_bytes(b"abc")
    (folder / "garbage.safetensors").write_bytes(struct.pack("<Q", 10) + b"not json!!")
    (folder / "terabytes.safetensors").write_bytes(struct.pack("<Q", 5 * 2**40) + b"{}")
    (folder / "list.safetensors").write_bytes(struct.pack("<Q", 2) + b"[]")
    whole = lora(folder / "whole.safetensors").read_bytes()
    (folder / "cut-header.safetensors").write_bytes(whole[:40])
    (folder / "cut-data.safetensors").write_bytes(whole[:-8])
    library = Library([tmp_path / "models"], bundled=None)
    library.scan()
    found = problems(library)
    assert found.pop("empty.safetensors") == "the file is empty (0 bytes)"
    assert "too short" in found.pop("tiny.safetensors")
    assert "not JSON" in found.pop("garbage.safetensors")
    assert "claims 5,497,558,138,880 bytes, more than" in found.pop("terabytes.safetensors")
    assert "not a JSON object" in found.pop("list.safetensors")
    assert "truncated" in found.pop("cut-header.safetensors") and "truncated" in found.pop("cut-data.safetensors")
    assert found == {}
    assert [f.id for f in library.files(kinds.LORA) if not f.problem] == ["whole.safetensors"]


def test_a_header_is_read_without_reading_the_tensors(tmp_path: Path) -> None:
    path = lora(tmp_path / "one.safetensors")
    header = read_header(path)
    assert header.shapes["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"] == (
        2, 768)
    with pytest.raises(BadModelFile, match="cannot read the file"):
        read_header(tmp_path / "missing.safetensors")


def test_a_pickle_is_refused_unless_allowed_and_never_unpickled_by_the_scan(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    (tmp_path / "models" / "Stable-diffusion").mkdir()
    # would run code if unpickled: the scan must not open it
    (folder / "evil.pt").write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    refused = Library([tmp_path / "models"], bundled=None)
    refused.scan()
    (evil,) = refused.files(kinds.EMBEDDING)
    assert "pickle" in evil.problem and "--allow-pickle" in evil.problem and evil.format == "pickle"
    allowed = Library([tmp_path / "models"], allow_pickle=True, bundled=None)
    allowed.scan()
    assert allowed.files(kinds.EMBEDDING)[0].problem == ""
    assert not (tmp_path / "pwned").exists()


def test_a_file_in_another_kinds_folder_is_listed_as_what_it_is_with_a_note(tmp_path: Path) -> None:
    models = tmp_path / "models"
    lora(models / "Stable-diffusion" / "actually-a-lora.safetensors")
    checkpoint(models / "Lora" / "actually-a-checkpoint.safetensors")
    embedding(models / "Lora" / "actually-an-embedding.safetensors")
    library = Library([models], bundled=None)
    library.scan()
    found = {f.path.name: (f.kind, f.note) for f in library.files()}
    assert found["actually-a-lora.safetensors"] == (
        "lora", "a LoRA in a folder of Checkpoints (Stable-diffusion/): listed as a LoRA")
    assert found["actually-a-checkpoint.safetensors"][0] == "checkpoint"
    assert found["actually-an-embedding.safetensors"][0] == "embedding"


def test_link_loops_unreadable_folders_and_broken_links_do_not_stop_the_scan(tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models"
    lora(models / "Lora" / "deep" / "ok.safetensors")
    (models / "Lora" / "deep" / "loop").symlink_to(models / "Lora", target_is_directory=True)
    (models / "Lora" / "dangling.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    locked = models / "Lora" / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):  # tests may run as root, whom file modes do not stop
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    library = Library([models], bundled=None)
    library.scan()
    found = problems(library)
    assert "a link loop" in found.pop("loop") and "Permission denied" in found.pop("locked")
    assert "broken link" in found.pop("dangling.safetensors") and found == {}
    assert [f.id for f in library.files(kinds.LORA) if not f.problem] == ["deep/ok.safetensors"]


def test_bad_sidecars_and_missing_folders_are_reasons_not_crashes(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = lora(models / "Lora" / "ink.safetensors")
    path.with_suffix(".json").write_text("{ not json")
    path.with_name("ink.civitai.info").write_text(json.dumps({"trainedWords": "not a list", "model": 3}))
    catalog = Catalog(models_dirs=[models, tmp_path / "no-such-folder", tmp_path / "broken.yaml"])
    (tmp_path / "broken.yaml").write_text("a: [unclosed")
    catalog.refresh()
    (ink,) = catalog.files(kinds.LORA)
    assert "ink.json is not readable JSON" in ink.note and not ink.problem
    reasons = {str(r.path): r.problem for r in catalog.library.roots if r.problem}
    assert "is not a folder" in reasons[str(tmp_path / "no-such-folder")]
    assert "cannot read broken.yaml" in reasons[str(tmp_path / "broken.yaml")]
    assert catalog.default_model("text_to_image").id == "atelier-emoji-diffusion"  # the studio still starts
