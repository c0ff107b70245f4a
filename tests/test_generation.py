"""A job carries the model it resolved to at submit: the worker loads exactly that and the recipe records its
hashes, whatever a rescan changes meanwhile."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from pipelines.models import BUNDLED_DIR
from studio.gallery import metadata
from studio.jobs import JobStatus
from studio.services import build_services
from tests.conftest import make_config, wait_finished, wait_for
from tests.support import model_trees as trees

GAN = "atelier-emoji-gan"


def test_a_rescan_while_a_job_waits_changes_nothing_it_runs_or_records(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    services = build_services(make_config(tmp_path / "data", models_dirs=(models,)))
    weights = next(BUNDLED_DIR.joinpath(GAN).glob("*.safetensors"))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    wait_for(lambda: services.catalog.model(GAN, "gan").sha256, timeout=20, what="the bundled GAN's hash")
    job = services.generation.submit("gan", GAN, {"num_images": 1}, seed=1)
    assert job.spec.model_entry["sha256"] == digest and job.spec.model_entry["origin"] == "bundled"
    # the user's folder now holds a model of the same name: the bundled one is renamed "bundled:…" by the rescan
    shutil.copytree(BUNDLED_DIR / GAN, models / GAN)
    (models / GAN / "MODEL_CARD.md").write_text("---\nlicence: someone else's\n---\n")
    services.catalog.refresh()
    assert {m.id for m in services.catalog.models("gan")} >= {f"bundled:{GAN}", f"atelier:{GAN}"}
    services.start()
    try:
        done = wait_finished(services, job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        recipe = services.gallery.get(done.image_ids[0]).recipe
        assert (recipe.model, recipe.model_hash, recipe.info["model_sha256"]) == (GAN, digest[:10], digest)
        assert recipe.info["licence"] != "someone else's"
    finally:
        services.stop()


def test_a_jobs_loras_are_resolved_at_submit_and_their_hashes_recorded(tmp_path: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from tests.support.tiny_sd import save_tiny_lora, save_tiny_sd

    models = tmp_path / "models"
    folder = save_tiny_sd(models / "tiny-sd")
    lora = save_tiny_lora(models / "styles" / "ink.safetensors", StableDiffusionPipeline.from_pretrained(folder))
    trees.lora(models / "glow_xl.safetensors", "sdxl")
    embedding = models / "shinyfur.safetensors"
    save_file({"emb_params": torch.randn(1, 32)}, str(embedding))  # the tiny text encoder's width
    services = build_services(make_config(tmp_path / "data", models_dirs=(models,), plugins=()))
    params = {"prompt": "a cat <lora:ink:0.7>", "negative_prompt": "shinyfur", "width": 64, "height": 64,
              "num_steps": 2}
    with pytest.raises(ValueError, match=r"unknown LoRA 'inc'; closest: ink"):
        services.generation.submit("text_to_image", "tiny-sd", {**params, "prompt": "<lora:inc:1>"})
    with pytest.raises(ValueError, match="`prompt`: the tag '<lora:ink:nan>'"):
        services.generation.submit("text_to_image", "tiny-sd", {**params, "prompt": "<lora:ink:nan>"})
    job = services.generation.submit("text_to_image", "tiny-sd", params, seed=3)
    assert job.spec.model_entry["files"]["lora:ink"]["path"] == str(lora)
    assert job.spec.model_entry["files"]["embedding:shinyfur"]["path"] == str(embedding)  # named as a word
    services.start()
    try:
        done = wait_finished(services, job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        recipe = services.gallery.get(done.image_ids[0]).recipe
        digest = hashlib.sha256(lora.read_bytes()).hexdigest()
        assert recipe.info["lora_sha256"] == {"ink": digest}
        assert f'Lora hashes: "ink: {digest[:12]}"' in metadata.format_parameters(recipe)
        ti = hashlib.sha256(embedding.read_bytes()).hexdigest()[:12]
        assert f'TI hashes: "shinyfur: {ti}"' in metadata.format_parameters(recipe)
    finally:
        services.stop()


def test_a_lora_made_for_another_base_model_is_refused_naming_both(tmp_path: Path) -> None:
    models = tmp_path / "models"
    trees.checkpoint(models / "classic.safetensors", "sd1")
    trees.lora(models / "glow_xl.safetensors", "sdxl")
    services = build_services(make_config(tmp_path / "data", models_dirs=(models,), plugins=()))
    try:
        with pytest.raises(ValueError, match="LoRA glow_xl.safetensors was made for SDXL, but the model "
                                             "classic.safetensors is SD 1.x"):
            services.generation.build_spec("text_to_image", "classic.safetensors", {"prompt": "<lora:glow_xl:1>"})
    finally:
        services.stop()


def test_embeddings_are_found_by_word_and_a_shared_name_is_no_refusal(tmp_path: Path) -> None:
    trees.a1111_tree(tmp_path / "webui")
    trees.comfyui_tree(tmp_path / "ComfyUI")
    trees.embedding(tmp_path / "webui" / "embeddings" / "neg.safetensors", "sd2")  # a second file named neg
    services = build_services(make_config(tmp_path / "data", plugins=(),
                                          models_dirs=(tmp_path / "webui", tmp_path / "ComfyUI")))
    try:
        spec = services.generation.build_spec("text_to_image", "sd2/wide.safetensors", {
            "prompt": "a castle, badhands", "negative_prompt": "(neg:1.2), blurry."})
    finally:
        services.stop()
    files = spec.model_entry["files"]
    assert list(files) == ["embedding:neg"]  # badhands is made for SD 1.x: skipped, as A1111 does
    assert files["embedding:neg"]["path"] == str(tmp_path / "webui" / "embeddings" / "neg.safetensors")


def test_a_dynamic_prompt_is_checked_at_submit_and_each_picture_records_its_own_prompt(tmp_path: Path) -> None:
    from tests.support.tiny_sd import tiny_sd_library

    models = tiny_sd_library(tmp_path / "models")
    (models / "wildcards" / "inks.txt").write_text("<lora:ink:0.5> wash\npaperstyle sketch\n")
    services = build_services(make_config(tmp_path / "data", models_dirs=(models,), plugins=()))
    params = {"prompt": "a {cat|dog|fox} in __colors__, __inks__", "width": 64, "height": 64, "num_steps": 2,
              "batch_size": 2, "batch_count": 2}
    for prompt, words in (("a __colour__", "unknown wildcard __colour__; closest: colors"),
                          ("a {cat|dog", "cannot be read")):
        with pytest.raises(ValueError, match=words):
            services.generation.submit("text_to_image", "tiny-sd", {**params, "prompt": prompt})
    assert not services.queue.list()  # nothing was queued
    job = services.generation.submit("text_to_image", "tiny-sd", params, seed=11)
    assert set(job.spec.model_entry["files"]) == {"wildcards:colors", "wildcards:inks", "lora:ink",
                                                  "embedding:paperstyle"}
    assert job.spec.batch_key is None
    services.start()
    try:
        done = wait_finished(services, job.id, timeout=180)
        assert done.status is JobStatus.COMPLETED, done.error
        recipes = [services.gallery.get(i).recipe for i in done.image_ids]
    finally:
        services.stop()
    prompts = [r.params["prompt"] for r in recipes]
    assert [r.seed for r in recipes] == [11, 12, 13, 14] and len(set(prompts)) > 1
    for recipe in recipes:
        assert "{" not in recipe.params["prompt"] and "__" not in recipe.params["prompt"]
        assert recipe.info["prompt_template"]["prompt"] == params["prompt"]
        assert metadata.parse_parameters(metadata.format_parameters(recipe))["Template"] == params["prompt"]
        assert "prompts" not in recipe.info
