"""The disk fills up (or turns read-only) while a job's artworks are written: the job fails saying so, the gallery
keeps no half of an artwork (no file without a record, no record without its files, no temp file), artworks saved
before the failure stay the job's, and the studio goes on."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from studio.jobs import JobStatus
from studio.services import Services
from tests.conftest import wait_finished


def gallery_files(services: Services) -> list[Path]:
    root = services.gallery.root
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("gallery.db"))


@pytest.mark.parametrize(("failing_write", "error"), [
    (1, errno.ENOSPC), (2, errno.ENOSPC), (3, errno.ENOSPC),  # the PNG, the thumbnail, the second image's PNG
    (1, errno.EROFS), (3, errno.EROFS),  # the data dir's disk turned read-only (e.g. remounted after an error)
])
def test_a_full_disk_fails_the_job_and_leaves_the_gallery_whole(studio: Services, monkeypatch,
                                                                failing_write: int, error: int) -> None:
    before = gallery_files(studio)
    writes = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # every gallery file is fsynced before it is renamed into place
        if stat.S_ISREG(os.fstat(fd).st_mode):  # files, not the directory fsynced after a rename
            writes.append(fd)
            if len(writes) == failing_write:
                raise OSError(error, os.strerror(error))
        real_fsync(fd)

    monkeypatch.setattr("studio.gallery.files.os.fsync", fsync)
    job = studio.generation.submit("pattern", "pattern-v1", {"num_images": 2}, 4)
    failed = wait_finished(studio, job.id)
    assert failed.status is JobStatus.FAILED and os.strerror(error) in failed.error
    kept = studio.gallery.page(limit=100)
    assert [a.id for a in kept] == failed.image_ids  # the job lists exactly what the gallery kept
    if failing_write <= 2:  # the first image's files
        assert kept == [] and gallery_files(studio) == before and "could not save the images" in failed.error
    else:  # the first image was whole before the disk filled: it stays, the second leaves nothing behind
        assert len(kept) == 1 and "saved 1 of 2 images" in failed.error
        assert gallery_files(studio) == sorted([*before, kept[0].path, kept[0].thumb_path])

    monkeypatch.setattr("studio.gallery.files.os.fsync", real_fsync)  # space again: the studio goes on
    again = wait_finished(studio, studio.generation.submit("pattern", "pattern-v1", {"num_images": 2}, 5).id)
    assert again.status is JobStatus.COMPLETED and len(again.image_ids) == 2
    for artwork in (studio.gallery.get(i) for i in again.image_ids):
        assert artwork.path.is_file() and artwork.thumb_path.is_file()
