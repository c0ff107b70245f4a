"""The server dies between writing an image and recording it: the restart re-indexes, completes the job from
what it saved, and neither loses nor duplicates anything."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio.jobs import JobStatus
from studio.services import build_services
from tests.conftest import make_config, wait_finished

pytestmark = pytest.mark.slow

# Run a studio whose gallery dies (os._exit: no cleanup, like kill -9) when it records image number `die_at`.
DOOMED_SERVER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from studio.gallery.records import GalleryRecords
    from studio.services import build_services
    from tests.conftest import make_config

    data_dir, num_images, die_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    real_upsert, calls = GalleryRecords.upsert, []

    def upsert(self, record):
        calls.append(record)
        if len(calls) == die_at:
            os._exit(9)
        return real_upsert(self, record)

    GalleryRecords.upsert = upsert
    services = build_services(make_config(data_dir))
    services.start()
    job = services.generation.submit("pattern", "pattern-v1", {"num_images": num_images}, seed=11)
    print(job.id, flush=True)
    time.sleep(60)
""")


def run_doomed_server(data_dir: Path, num_images: int, die_at: int) -> str:
    proc = subprocess.run([sys.executable, "-c", DOOMED_SERVER, str(data_dir), str(num_images), str(die_at)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 9, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(("num_images", "die_at"), [(1, 1), (3, 2)])
def test_restart_after_a_kill_between_image_and_record(tmp_path: Path, num_images: int, die_at: int) -> None:
    data_dir = tmp_path / "data"
    job_id = run_doomed_server(data_dir, num_images, die_at)
    on_disk = sorted((data_dir / "gallery" / "images").rglob("*.png"))
    assert len(on_disk) == die_at  # the last PNG was written, its record never was

    services = build_services(make_config(data_dir))
    services.start()
    try:
        job = wait_finished(services, job_id)
        assert job.status is JobStatus.COMPLETED
        if die_at == num_images:  # every image had reached the disk: completed from the gallery, not re-run
            assert job.attempts == 1
        artworks = services.gallery.by_job(job_id)
        assert [a.recipe.index for a in artworks] == list(range(num_images))
        assert sorted(job.image_ids) == sorted(a.id for a in artworks)
        assert services.gallery.count() == num_images  # nothing duplicated
        assert len(list((data_dir / "gallery" / "images").rglob("*.png"))) == num_images
        assert all(a.recipe.seed == 11 + a.recipe.index for a in artworks)
    finally:
        services.stop()
