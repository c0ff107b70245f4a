"""What AUTOMATIC1111's routes share: base64 pictures in, a job waited for."""

from __future__ import annotations

import base64
import binascii

from PIL import Image

from studio.gallery.inputs import decode_image
from studio.jobs import Job
from studio.services import Services


def decode_image_field(text: str, field: str) -> Image.Image:
    return decode_image(base64_bytes(text, field), field)


def base64_bytes(text: str, field: str) -> bytes:
    """A base64 file as A1111 accepts it: plain, or a data: URL."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"`{field}` is not base64") from None


def wait_for_job(services: Services, job: Job) -> Job:
    """Block until the job ends (this runs in FastAPI's thread pool, as A1111's own routes do)."""
    for _ in services.generation.follow(job.id):  # it ends with the job
        pass
    return services.queue.get(job.id)
