"""Upscale jobs through the studio: a user's upscaler file from the model library, the megapixel cap with the
result's size known before queueing, unknown and corrupt upscalers, and the recipe naming the source artwork."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines.catalog import UnknownModel
from pipelines.nets.rrdbnet import RRDBConfig, RRDBNet
from studio.jobs import JobStatus
from studio.services import build_services
from tests.conftest import make_config, wait_finished


def tiny_esrgan(path: Path) -> Path:
    torch.manual_seed(0)
    net = RRDBNet(RRDBConfig(scale=4, num_feat=8, num_block=1, num_grow_ch=4))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("upscale")
    models = root / "models"
    tiny_esrgan(models / "ESRGAN" / "4x-tiny.safetensors")
    state = {k: v.contiguous() for k, v in RRDBNet(RRDBConfig(num_feat=8, num_block=1, num_grow_ch=4)).state_dict()
             .items()}
    state["conv_first.weight"] = torch.zeros(8, 3, 5, 5)  # a layer of the wrong shape: the file cannot load
    save_file(state, str(models / "ESRGAN" / "4x-broken.safetensors"))
    built = build_services(make_config(root / "data", models_dirs=(models,), plugins=()))
    built.start()
    yield built
    built.stop()


def run(services, model: str, params: dict) -> object:
    job = services.generation.submit("upscale", model, params, owner="ann")
    return wait_finished(services, job.id, timeout=120)


def test_a_library_upscaler_makes_the_picture_and_the_recipe_names_its_source(services) -> None:
    ref = services.inputs.put(Image.new("RGB", (24, 16), "teal"), owner="ann")
    done = run(services, "4x-tiny", {"image": ref, "upscaling_resize": 4, "source_artwork": "job-1-0"})
    assert done.status is JobStatus.COMPLETED, done.error
    artwork = services.gallery.get(done.image_ids[0])
    assert (artwork.width, artwork.height) == (96, 64) and artwork.owner == "ann"
    assert artwork.recipe.params["source_artwork"] == "job-1-0"
    assert artwork.recipe.model == "ESRGAN/4x-tiny.safetensors"


def test_a_corrupt_upscaler_fails_its_job_by_name_and_the_next_job_runs(services) -> None:
    ref = services.inputs.put(Image.new("RGB", (16, 16), "red"), owner="ann")
    failed = run(services, "4x-broken", {"image": ref, "upscaling_resize": 2})
    assert failed.status is JobStatus.FAILED and "4x-broken.safetensors" in failed.error
    done = run(services, "Lanczos", {"image": ref, "upscaling_resize": 2})
    assert done.status is JobStatus.COMPLETED, done.error


def test_unknown_upscalers_and_results_past_the_cap_are_refused_before_queueing(services) -> None:
    ref = services.inputs.put(Image.new("RGB", (512, 512), "red"), owner="ann")
    before = len(services.queue.list())
    with pytest.raises(UnknownModel, match=r"unknown model 'R-ESRGAN 5x'.*R-ESRGAN 4x\+"):
        services.generation.submit("upscale", "R-ESRGAN 5x", {"image": ref}, owner="ann")
    with pytest.raises(ValueError, match="unknown Upscaler '4x-nothing'; closest: .*4x-tiny"):
        services.generation.submit("upscale", "Lanczos", {"image": ref, "upscaler_2": "4x-nothing",
                                                          "extras_upscaler_2_visibility": 0.5}, owner="ann")
    capped = services.generation
    old = capped.caps
    capped.caps = replace(old, pixels=4_000_000)
    try:
        with pytest.raises(ValueError, match=r"4\.19 megapixels; this studio allows at most 4\.00"):
            capped.submit("upscale", "Lanczos", {"image": ref, "upscaling_resize": 4}, owner="ann")
        capped.submit("upscale", "Lanczos", {"image": ref, "upscaling_resize": 3.5}, owner="ann")  # 3.2 MP: fine
    finally:
        capped.caps = old
    assert len(services.queue.list()) == before + 1
