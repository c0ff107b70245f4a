"""Hostile input over real HTTP, through both APIs: each gets a 4xx naming the problem, nothing is stored for it,
and the studio goes on serving."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import make_config
from tests.support.photos import photo
from tests.ui.serving import serve_http


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_hostile_uploads_and_params_are_refused_by_name(tmp_path: Path) -> None:
    png, jpeg = encoded(photo("chelsea", 96), "PNG"), encoded(photo("chelsea", 96), "JPEG")
    uploads = {
        "truncated PNG": png[: len(png) // 2],
        "truncated JPEG": jpeg[: len(jpeg) // 2],
        "decompression bomb": encoded(Image.new("1", (20_000, 20_000)), "PNG"),  # 400 Mpx in a few kB
        "text named like an image": b"<svg onload=alert(1)>not a picture</svg>",
        "empty file": b"",
    }
    with serve_http(make_config(tmp_path / "data", plugins=())) as (services, url), \
            httpx.Client(base_url=url, timeout=60) as client:
        for what, data in uploads.items():
            response = client.post("api/v1/inputs", content=data, headers={"content-type": "image/png"})
            assert response.status_code == 422, (what, response.text)
            assert "image" in response.json()["detail"], (what, response.text)
            a1111 = client.post("sdapi/v1/png-info", json={"image": base64.b64encode(data).decode()})
            if what in ("truncated JPEG", "decompression bomb"):  # png-info reads text, never pixels: none here
                assert a1111.status_code == 200 and a1111.json()["info"] == "", (what, a1111.text)
            else:
                assert a1111.status_code == 422, (what, a1111.text)
        assert not any(services.inputs.root.glob("in-*"))  # nothing stored for any of them

        def job(**body: object) -> httpx.Response:
            return client.post("api/v1/jobs", json={"pipeline": "gan"} | body)

        refused = [
            (job(model="../../etc/passwd"), 404, "unknown model"),
            (job(pipeline="text_to_image", model="..%2F..%2Fsecret"), 404, "unknown model"),
            (job(pipeline="text_to_image", params={"prompt": "x" * 1_000_000}), 422, "prompt"),
            (job(params={"truncation": -1e308}), 422, "truncation"),
            (job(params={"num_images": 10**30}), 422, "num_images"),
            (job(params={"seeds": "1,2,\u202e3"}), 422, "seeds"),
            (job(pipeline="vae", params={"mode": "reconstruct", "image_a": "../../../etc/passwd"}), 422, "image_a"),
            (client.post("sdapi/v1/txt2img", json={"prompt": "a cat", "width": -64}), 422, "width"),
        ]
        for response, status, words in refused:
            assert response.status_code == status and words in response.text, (response.request.url, response.text)

        # a prompt full of control characters is only text: it is kept as given and the job runs
        odd = "\x00\x1b[31mred\u202e\u200b" + "\U0001f3a8" * 10
        made = client.post("api/v1/jobs", json={"pipeline": "gan", "params": {"num_images": 1}, "seed": 1})
        assert made.status_code == 202
        t2i = job(pipeline="text_to_image", params={"prompt": odd, "num_steps": 2})
        assert t2i.status_code == 202 and client.get(f"api/v1/jobs/{t2i.json()['id']}").json()["params"][
            "prompt"] == odd
