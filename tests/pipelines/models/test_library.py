"""The model library reads an A1111/Forge tree, a ComfyUI tree (and its extra_model_paths.yaml) and Atelier's own
folder: every kind of file under its kind and family, with sidecars, names as each studio writes them, hashes."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from pipelines.models import AmbiguousModel, Library, kinds
from pipelines.models.hashes import HashCache, file_key
from tests.conftest import wait_for
from tests.support.model_trees import a1111_tree, checkpoint, comfyui_tree, lora


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("trees")
    return root / "webui", a1111_tree(root / "webui"), root / "ComfyUI", comfyui_tree(root / "ComfyUI")


def listed(library: Library) -> dict[str, tuple[str, str, str]]:
    """path → (kind, family, id)"""
    return {str(f.path): (f.kind, f.family, f.id) for f in library.files()}


def test_an_a1111_tree_lists_every_file_under_its_kind_and_family(trees) -> None:
    webui, files, _, _ = trees
    for root in (webui, webui / "models"):  # the webui folder or its models/: both are read the same way
        library = Library([root], bundled=None)
        library.scan()
        assert library.roots[0].layout == "a1111"
        found = listed(library)
        assert {name: found[str(path)][:2] for name, path in files.items()} == {
            "checkpoint": ("checkpoint", "sd1"), "checkpoint_xl": ("checkpoint", "sdxl"), "lora": ("lora", "sd1"),
            "lora_xl": ("lora", "sdxl"), "lycoris": ("lora", "sd1"), "vae": ("vae", ""),
            "controlnet": ("controlnet", "sd1"), "esrgan": ("upscaler", ""), "realesrgan": ("upscaler", ""),
            "embedding": ("embedding", "sd1"), "embedding_xl": ("embedding", "sdxl")}
        assert all(not f.problem and not f.note for f in library.files())


def test_a_comfyui_tree_and_its_extra_model_paths_yaml_list_the_same_files(trees, tmp_path: Path) -> None:
    _, _, comfy, files = trees
    direct = Library([comfy], bundled=None)
    direct.scan()
    assert direct.roots[0].layout == "comfyui"
    expected = {"checkpoint": ("checkpoint", "sd2"), "lora": ("lora", "sd1"), "vae": ("vae", ""),
                "embedding": ("embedding", "sd2"), "controlnet": ("controlnet", "sdxl"), "upscaler": ("upscaler", "")}
    assert {name: listed(direct)[str(path)][:2] for name, path in files.items()} == expected
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(textwrap.dedent(f"""
        comfyui:
            base_path: {comfy}
            checkpoints: models/checkpoints/
            loras: |
                models/loras
            vae: models/vae
            embeddings: models/embeddings
            controlnet: models/controlnet
            upscale_models: models/upscale_models
        """))
    from_yaml = Library([yaml_file], bundled=None)
    from_yaml.scan()
    assert listed(from_yaml) == listed(direct)


def test_names_resolve_as_a1111_and_comfyui_users_write_them(trees) -> None:
    webui, files, comfy, _ = trees
    alone = Library([webui], bundled=None)
    alone.scan()
    ink = alone.find(kinds.LORA, "ink")  # <lora:ink:0.8>: the file name alone
    assert ink is not None and ink.path == files["lora"] and ink.id == "styles/ink.safetensors"
    assert alone.find(kinds.LORA, "styles/ink.safetensors") == ink == alone.find(kinds.LORA, "styles/ink")
    assert alone.find(kinds.LORA, "no-such-lora") is None and alone.find(kinds.CHECKPOINT, "ink") is None
    both = Library([webui, comfy], bundled=None)
    both.scan()
    twins = [f for f in both.files(kinds.LORA) if f.name == "ink"]
    assert sorted(f.id for f in twins) == ["a1111:styles/ink.safetensors", "comfyui:styles/ink.safetensors"]
    with pytest.raises(AmbiguousModel, match=r"LoRA name 'ink' matches more than one file: a1111:styles/ink"):
        both.find(kinds.LORA, "ink")
    found = both.find(kinds.LORA, "comfyui:styles/ink.safetensors")
    assert found is not None and found.path == comfy / "models/loras/styles/ink.safetensors"


def test_sidecars_and_training_metadata_give_previews_descriptions_and_trigger_words(trees) -> None:
    webui, files, _, _ = trees
    library = Library([webui], bundled=None)
    library.scan()
    by_path = {f.path: f for f in library.files()}
    ink, glow, dreamy = by_path[files["lora"]], by_path[files["lora_xl"]], by_path[files["checkpoint"]]
    assert ink.preview == files["lora"].with_suffix(".preview.png") and ink.about == "ink wash style"
    assert ink.triggers[:2] == ("inkwash", "brush strokes") and "ink wash" in ink.triggers  # A1111 json, then kohya
    assert ink.metadata["ss_network_dim"] == "2"
    assert glow.triggers == ("glowing",) and glow.about == "Glow XL"  # a civitai helper's .civitai.info
    assert dreamy.preview == files["checkpoint"].with_suffix(".png")
    assert by_path[files["embedding"]].vectors == 2


def test_hashes_come_in_the_background_and_survive_a_restart(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = checkpoint(models / "one.safetensors")
    db = tmp_path / "hashes.sqlite3"
    library = Library([models], hash_db=db, bundled=None)
    library.scan()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert wait_for(lambda: library.sha256(library.files()[0]), timeout=10) == digest
    assert library.short_hash(path) == digest[:10]  # A1111's "Model hash"
    library.close()
    assert HashCache(db).get(file_key(path)) == digest  # a new process finds it without reading the file
    path.write_bytes(path.read_bytes() + b" ")  # changed: its old hash no longer counts
    assert HashCache(db).get(file_key(path)) is None


def test_a_rescan_finds_new_files_and_forgets_removed_ones(tmp_path: Path) -> None:
    models = tmp_path / "models"
    lora(models / "Lora" / "one.safetensors")
    library = Library([models], bundled=None)
    library.scan()
    assert [f.id for f in library.files(kinds.LORA)] == ["one.safetensors"]
    lora(models / "Lora" / "two.safetensors", "sdxl")
    (models / "Lora" / "one.safetensors").unlink()
    library.scan()
    assert [(f.id, f.family) for f in library.files(kinds.LORA)] == [("two.safetensors", "sdxl")]
    assert library.files(kinds.LORA, family="sd1") == []  # an SDXL LoRA is not offered for SD 1.x


def test_the_bundled_models_are_in_the_library_with_their_kinds() -> None:
    library = Library()
    library.scan({"DCGANGenerator": kinds.GAN})
    found = {f.id: f.kind for f in library.files() if f.origin == "bundled"}
    assert found["atelier-emoji-diffusion"] == "checkpoint" and found["atelier-emoji-gan"] == "gan"
    assert found["atelier-emoji-vae"] == found["atelier-latent-vae"] == "vae"
