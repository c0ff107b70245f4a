"""A job carries the model it resolved to at submit: the worker loads exactly that and the recipe records its
hashes, whatever a rescan changes meanwhile."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from pipelines.models import BUNDLED_DIR
from studio.jobs import JobStatus
from studio.services import build_services
from tests.conftest import make_config, wait_finished, wait_for

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
