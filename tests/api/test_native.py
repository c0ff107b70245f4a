"""The native job API over real HTTP: jobs, events, inputs, the gallery, the catalogue, errors, logins, schema."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from studio.accounts import add_user, issue_token
from studio.services import Services
from tests.conftest import make_config, wait_for
from tests.support.photos import photo
from tests.support.tiny_sd import save_tiny_sd
from tests.ui.serving import serve_http

API = "api/v1"


def serve_api(root: Path, **changes: Any) -> Iterator[tuple[Services, httpx.Client]]:
    models = root / "models"
    save_tiny_sd(models / "tiny-sd")
    with serve_http(make_config(root / "data", models_dirs=(models,), max_queue=50, **changes)) as (services, url), \
            httpx.Client(base_url=url, timeout=60) as client:
        yield services, client


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, httpx.Client]]:
    yield from serve_api(tmp_path_factory.mktemp("api"))


@pytest.fixture
def ray_api(tmp_path: Path, ray_cluster: None) -> Iterator[tuple[Services, httpx.Client]]:
    """The same studio with its worker a Ray actor (on a local Ray instance)."""
    yield from serve_api(tmp_path, backend="ray")


def finished(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = client.get(f"{API}/jobs/{job_id}").json()
        return job if job["status"] in ("completed", "failed", "canceled") else None
    return wait_for(done, timeout, f"job {job_id}")  # type: ignore[return-value]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_job_runs_and_its_artworks_are_served_paged_and_edited(api) -> None:
    _, client = api
    accepted = client.post(f"{API}/jobs", json={"pipeline": "pattern", "model": "pattern-v1", "seed": 5,
                                                "params": {"prompt": "a tidal pool", "num_images": 3}})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["seed"] == 5 and body["links"]["events"] == f"/{API}/jobs/{body['id']}/events"
    job = finished(client, body["id"])
    assert job["status"] == "completed" and job["params"]["prompt"] == "a tidal pool"
    assert job["params"]["palette"] == "warm"  # the full recipe: defaults filled in by the pipeline's Params
    assert len(job["image_ids"]) == 3 and job["progress"] == 1.0

    first = job["image_ids"][0]
    png = client.get(f"{API}/images/{first}")
    assert png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as image:
        assert image.size == (64, 64) and "a tidal pool" in image.info["parameters"]
    thumb = client.get(f"{API}/images/{first}/thumbnail")
    assert thumb.headers["content-type"] == "image/webp" and thumb.content[8:12] == b"WEBP"
    assert client.get(f"{API}/images/{first}", params={"format": "gif"}).status_code == 404  # not an animation

    # pages by cursor: three pages of one, then the end
    seen, cursor = [], None
    for _ in range(3):
        page = client.get(f"{API}/images", params={"query": "tidal", "limit": 1, **({"cursor": cursor} if cursor
                                                                                     else {})}).json()
        seen += [i["id"] for i in page["images"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(job["image_ids"])
    assert client.get(f"{API}/images", params={"query": "tidal", "cursor": cursor}).json() == {
        "images": [], "next_cursor": None}

    record = client.patch(f"{API}/images/{first}/record", json={"favorite": True}).json()
    assert record["favorite"] is True and record["recipe"]["seed"] == record["seed"]
    assert "Seed: " in record["parameters"] and record["recipe"]["params"]["prompt"] == "a tidal pool"
    assert [i["id"] for i in client.get(f"{API}/images", params={"favorite": True}).json()["images"]] == [first]
    assert client.delete(f"{API}/images/{first}/record").status_code == 204
    assert client.get(f"{API}/images/{first}/record").status_code == 404
    assert first not in [i["id"] for i in client.get(f"{API}/images").json()["images"]]


def test_events_stream_progress_until_the_job_ends(api) -> None:
    _, client = api
    job_id = client.post(f"{API}/jobs", json={"pipeline": "pattern", "params": {"num_steps": 5,
                                                                               "step_delay": 0.1}}).json()["id"]
    events = []
    with client.stream("GET", f"{API}/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    steps = [data["step"] for kind, data in events if kind == "progress" and data["total"]]
    assert steps == sorted(steps) and steps[-1] == 5 and len(steps) >= 3  # seen while running, not only at the end
    assert events[-1][0] == "completed" and len(events[-1][1]["image_ids"]) == 1

    # a stream opened after the end still ends, with the outcome
    with client.stream("GET", f"{API}/jobs/{job_id}/events") as stream:
        assert "event: completed" in stream.read().decode()


def test_a_running_job_is_canceled(api) -> None:
    services, client = api
    job_id = client.post(f"{API}/jobs", json={"pipeline": "pattern", "params": {"num_steps": 200,
                                                                               "step_delay": 0.05}}).json()["id"]
    wait_for(lambda: services.queue.get(job_id).step > 0, 60, "the job to start")
    assert client.delete(f"{API}/jobs/{job_id}").status_code == 200
    job = finished(client, job_id)
    assert job["status"] == "canceled" and job["image_ids"] == []
    listed = client.get(f"{API}/jobs", params={"status": "canceled"}).json()["jobs"]
    assert job_id in [j["id"] for j in listed]


@pytest.mark.parametrize("served", ["api", pytest.param("ray_api", marks=pytest.mark.slow)])
def test_every_pipeline_runs_through_the_api(served: str, request: pytest.FixtureRequest) -> None:
    services, client = request.getfixturevalue(served)
    ref = client.post(f"{API}/inputs", content=png_bytes(photo("chelsea", 96)),
                      headers={"content-type": "image/png"}).json()["ref"]
    requests = [
        {"pipeline": "text_to_image", "model": "tiny-sd", "params": {"prompt": "a red apple", "num_steps": 2,
                                                                   "width": 64, "height": 64}},
        {"pipeline": "gan", "params": {"num_images": 2}},
        {"pipeline": "vae", "params": {"mode": "reconstruct", "image_a": ref}},
        {"pipeline": "style_transfer", "params": {"content_image": ref}},
    ]
    ids = [client.post(f"{API}/jobs", json=r | {"seed": 1}).json()["id"] for r in requests]
    for request, job_id in zip(requests, ids, strict=True):
        job = finished(client, job_id, timeout=300)
        assert job["status"] == "completed", (request["pipeline"], job["error"])
        artwork = client.get(f"{API}/images/{job['image_ids'][0]}/record").json()
        assert artwork["pipeline"] == request["pipeline"] and artwork["width"] >= 64
    gan = client.get(f"{API}/jobs/{ids[1]}").json()
    assert gan["model"] == "atelier-emoji-gan"  # no model named: the tab's default, free for any use

    # the worker reports what it holds in memory: jobs on these models start without loading them again
    loaded = {m["id"] for m in client.get(f"{API}/models").json() if m["loaded"]}
    assert {"tiny-sd", "atelier-emoji-gan"} <= loaded and "dcgan-faces" not in loaded
    health = client.get(f"{API}/health").json()
    worker = health["workers"][0]
    assert health["backend"] == services.config.backend and worker["device"].startswith("cpu")
    assert worker["loaded"][-1] == client.get(f"{API}/jobs/{ids[-1]}").json()["model"]  # most recent last
    # and what those models hold, against its budgets: a CPU worker's are all in main memory
    memory = worker["memory"]
    assert 1_000_000 < memory["ram"] <= memory["ram_budget"] and memory["vram"] == memory["vram_budget"] == 0


def test_bad_requests_get_a_4xx_naming_the_problem(api, monkeypatch: pytest.MonkeyPatch) -> None:
    _, client = api

    def job(**body: Any) -> httpx.Response:
        return client.post(f"{API}/jobs", json={"pipeline": "pattern"} | body)

    cases = [
        (job(params={"colour": "red"}), 422, "colour"),
        (job(params={"width": 9999}), 422, "width"),
        (job(params={"width": 60}), 422, "divisible by 8"),
        (job(params={"palette": "neon"}), 422, "palette"),
        (job(params={"prompt": "x" * 10_000_000}), 422, "prompt"),
        (job(seed=2**40), 422, "seed"),
        (job(model="no-such-model"), 404, "unknown model 'no-such-model'"),
        (client.post(f"{API}/jobs", json={"pipeline": "sculpture"}), 422, "pipeline"),
        (client.post(f"{API}/jobs", content=b"{not json", headers={"content-type": "application/json"}), 422, ""),
        (job(params={"step_delay": -1}), 422, "step_delay"),
        (client.post(f"{API}/jobs", content=b'{"pipeline": "pattern", "params": {"step_delay": NaN}}',
                     headers={"content-type": "application/json"}), 422, "step_delay"),
        (client.get(f"{API}/jobs/nope"), 404, "no job nope"),
        (client.get(f"{API}/images/nope"), 404, "no artwork"),
        (client.get(f"{API}/images", params={"cursor": "garbage!"}), 422, "cursor"),
        (client.get(f"{API}/images", params={"limit": 0}), 422, "limit"),
        (client.post(f"{API}/inputs", content=b"not an image", headers={"content-type": "image/png"}), 422,
         "not a PNG, JPEG or WebP picture"),
        (client.post(f"{API}/inputs", content=b""), 422, "empty"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert words in response.text, (response.request.url, response.text)

    monkeypatch.setattr("studio.api.native.MAX_INPUT_BYTES", 1000)
    big = client.post(f"{API}/inputs", content=png_bytes(photo("chelsea", 256)), headers={"content-type": "image/png"})
    assert big.status_code == 413 and "larger than" in big.text

    # any body past the API's limit is refused before it is read: with its length given, or streamed without one
    monkeypatch.setattr("studio.edge.MAX_BODY_BYTES", 10_000)
    huge = {"pipeline": "pattern", "params": {"prompt": "x" * 20_000}}
    assert client.post(f"{API}/jobs", json=huge).status_code == 413
    streamed = client.post(f"{API}/jobs", content=iter([json.dumps(huge).encode()]),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "limit" in streamed.text
    small = client.post(f"{API}/jobs", content=iter([b'{"pipeline": "pattern"}']),
                        headers={"content-type": "application/json"})
    assert small.status_code == 202  # a streamed body under the limit reaches the route whole


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    with serve_http(make_config(tmp_path / "data", max_queue=1)) as (services, url), \
            httpx.Client(base_url=url, timeout=30) as client:
        slow = {"pipeline": "pattern", "params": {"num_steps": 100, "step_delay": 0.05}}
        running = client.post(f"{API}/jobs", json=slow).json()["id"]
        wait_for(lambda: services.queue.get(running).status == "running", 60, "the first job to start")
        assert client.post(f"{API}/jobs", json=slow).status_code == 202  # one may wait
        full = client.post(f"{API}/jobs", json=slow)
        assert full.status_code == 429 and "queue full" in full.text and int(full.headers["retry-after"]) > 0


def test_with_logins_every_route_needs_one_and_users_see_only_their_own(tmp_path: Path) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie")
    logins.write_text(logins.read_text() + "bob:blue-moon\n")  # an older plain line still works
    with serve_http(make_config(tmp_path / "data", auth_file=logins)) as (_, url):
        for documentation in ("openapi.json", "docs"):  # a studio with logins documents its API to them only
            assert httpx.get(url + documentation).status_code == 401
        schema = httpx.get(url + "openapi.json", auth=("ann", "apple-pie")).json()
        for path, methods in schema["paths"].items():
            for method in methods:
                concrete = path.replace("{job_id}", "x").replace("{image_id}", "x")
                response = httpx.request(method.upper(), url + concrete.lstrip("/"), timeout=30)
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"].startswith("Basic")
        wrong = httpx.get(url + f"{API}/jobs", auth=("ann", "wrong"))
        assert wrong.status_code == 401

        with httpx.Client(base_url=url, auth=("ann", "apple-pie"), timeout=60) as ann, \
                httpx.Client(base_url=url, auth=("bob", "blue-moon"), timeout=60) as bob:
            job_id = ann.post(f"{API}/jobs", json={"pipeline": "pattern", "params": {"prompt": "ann's"}}).json()["id"]
            image_id = finished(ann, job_id)["image_ids"][0]
            assert bob.get(f"{API}/jobs/{job_id}").status_code == 404
            assert bob.get(f"{API}/jobs/{job_id}/events").status_code == 404  # nor its progress previews
            assert bob.delete(f"{API}/jobs/{job_id}").status_code == 404
            assert bob.get(f"{API}/images/{image_id}").status_code == 404
            assert bob.get(f"{API}/images").json()["images"] == []
            assert bob.get(f"{API}/jobs").json()["jobs"] == []
            assert [i["id"] for i in ann.get(f"{API}/images").json()["images"]] == [image_id]
            assert ann.get(f"{API}/images/{image_id}/record").json()["recipe"]["params"]["prompt"] == "ann's"


def test_a_network_facing_studio_caps_each_job_and_downloads_only_listed_models(tmp_path: Path) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie-9")
    token = issue_token(logins, "ann")
    config = make_config(tmp_path / "data", host="0.0.0.0", auth_file=logins, max_images_per_job=4,
                         max_megapixels=0.05)
    with serve_http(config) as (services, url), \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as ann:
        assert httpx.get(url + f"{API}/jobs", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        job = ann.post(f"{API}/jobs", json={"pipeline": "pattern", "params": {"num_images": 4}})
        assert job.status_code == 202 and finished(ann, job.json()["id"])["status"] == "completed"
        assert services.queue.get(job.json()["id"]).owner == "ann"  # the token stands for its user

        refused = {
            "at most 4 per job (--max-images-per-job)": ("pattern", None, {"num_images": 5}),
            "allows at most 0.05 (--max-megapixels)": ("pattern", None, {"width": 256, "height": 256}),
            "this studio downloads only the models it lists (--allow-any-hub-model)":
                ("text_to_image", "someone/forty-gigabytes", {}),
        }
        for message, (pipeline, model, params) in refused.items():
            response = ann.post(f"{API}/jobs", json={"pipeline": pipeline, "model": model, "params": params})
            assert response.status_code in (404, 422) and message in response.text, response.text
        a1111 = {"--max-images-per-job": {"batch_size": 5},  # the A1111 API answers to the same caps
                 "--allow-any-hub-model": {"override_settings": {"sd_model_checkpoint": "someone/x"}}}
        for message, body in a1111.items():
            response = ann.post("sdapi/v1/txt2img", json=body)
            assert response.status_code in (404, 422) and message in response.text, response.text
        assert [j.id for j in services.queue.list()] == [job.json()["id"]]  # nothing refused was queued


def test_the_openapi_document_covers_the_api_and_derives_params_from_the_pipelines(api) -> None:
    _, client = api
    schema = client.get("openapi.json").json()
    paths = set(schema["paths"])
    assert {f"/{API}/jobs", f"/{API}/jobs/{{job_id}}", f"/{API}/jobs/{{job_id}}/events", f"/{API}/inputs",
            f"/{API}/images", f"/{API}/images/{{image_id}}", f"/{API}/images/{{image_id}}/thumbnail",
            f"/{API}/images/{{image_id}}/record", f"/{API}/models", f"/{API}/health"} <= paths
    assert all(p.startswith((f"/{API}/", "/sdapi/v1/")) for p in paths)  # Gradio's own routes are not in it
    parts = schema["components"]["schemas"]
    assert {"PatternJob", "TextToImageJob", "GanJob", "VaeJob", "StyleTransferJob"} <= set(parts)
    pattern = parts["PatternParams"]["properties"]
    assert pattern["width"]["maximum"] == 512 and pattern["width"]["default"] == 64
    assert pattern["palette"]["enum"] == ["warm", "cool"]
    assert "input image" in parts["StyleTransferParams"]["properties"]["content_image"]["description"]
    assert client.get("docs").status_code == 200


def test_models_and_health_describe_the_studio(api) -> None:
    _, client = api
    models = client.get(f"{API}/models", params={"kind": "gan"}).json()
    faces = next(m for m in models if m["id"] == "dcgan-faces")
    assert "non-commercial" in faces["restriction"].lower() and faces["default"] is False
    assert [m["id"] for m in models if m["default"]] == ["atelier-emoji-gan"]
    health = client.get(f"{API}/health").json()
    assert health["status"] == "ok" and "pattern" in health["pipelines"]
    assert health["workers"][0]["device"] == "cpu" and health["workers"][0]["alive"] is True


def test_seeds_reproduce_through_the_api(api) -> None:
    _, client = api
    images = []
    for _ in range(2):
        job_id = client.post(f"{API}/jobs", json={"pipeline": "pattern", "seed": 77}).json()["id"]
        image_id = finished(client, job_id)["image_ids"][0]
        images.append(client.get(f"{API}/images/{image_id}").content)
    with Image.open(io.BytesIO(images[0])) as a, Image.open(io.BytesIO(images[1])) as b:
        assert a.tobytes() == b.tobytes()


def test_a_shared_gallery_shows_everyone_everything_but_only_owners_change(tmp_path: Path) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie")
    add_user(logins, "bob", "blue-moon")
    with serve_http(make_config(tmp_path / "data", auth_file=logins, shared_gallery=True)) as (_, url), \
            httpx.Client(base_url=url, auth=("ann", "apple-pie"), timeout=60) as ann, \
            httpx.Client(base_url=url, auth=("bob", "blue-moon"), timeout=60) as bob:
        job_id = ann.post(f"{API}/jobs", json={"pipeline": "pattern", "params": {"prompt": "ann's"}}).json()["id"]
        image_id = finished(ann, job_id)["image_ids"][0]
        listed = bob.get(f"{API}/images").json()["images"]
        assert [(i["id"], i["owner"]) for i in listed] == [(image_id, "ann")]
        assert bob.get(f"{API}/images/{image_id}").status_code == 200
        assert bob.get(f"{API}/images/{image_id}/record").json()["recipe"]["params"]["prompt"] == "ann's"
        assert bob.patch(f"{API}/images/{image_id}/record", json={"favorite": True}).status_code == 403
        refused = bob.delete(f"{API}/images/{image_id}/record")
        assert refused.status_code == 403 and "ann's" in refused.text
        assert bob.get(f"{API}/jobs/{job_id}").status_code == 404  # jobs stay private
        assert ann.delete(f"{API}/images/{image_id}/record").status_code == 204


def test_inputs_are_stored_off_the_event_loop_per_user_and_within_a_quota(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie-9")
    add_user(logins, "bob", "blue-moon-9")
    picture = png_bytes(photo("chelsea", 96))
    config = make_config(tmp_path / "data", auth_file=logins, max_input_mb_per_user=0.05)
    with serve_http(config) as (services, url), \
            httpx.Client(base_url=url, auth=("ann", "apple-pie-9"), timeout=60) as ann, \
            httpx.Client(base_url=url, auth=("bob", "blue-moon-9"), timeout=60) as bob:
        # while one upload is being stored (seconds, for a large photo), the studio answers everyone else
        storing, others_answered = threading.Event(), threading.Event()
        put = services.inputs.put

        def slow_put(*args: Any, **kwargs: Any) -> str:
            storing.set()
            others_answered.wait(30)  # in the event loop, this would hold every other request until it gave up
            return put(*args, **kwargs)

        monkeypatch.setattr(services.inputs, "put", slow_put)
        upload = threading.Thread(target=lambda: ann.post(f"{API}/inputs", content=picture))
        upload.start()
        assert storing.wait(30)
        assert bob.get(f"{API}/health", timeout=5).status_code == 200
        others_answered.set()
        upload.join()
        monkeypatch.undo()

        ref = ann.post(f"{API}/inputs", content=picture).json()["ref"]
        style = {"pipeline": "style_transfer", "params": {"content_image": ref}}
        refused = bob.post(f"{API}/jobs", json=style)  # ann's upload is not bob's to use, ref or not
        assert refused.status_code == 422 and "not stored" in refused.text
        assert ann.post(f"{API}/jobs", json=style).status_code == 202

        full = ann.post(f"{API}/inputs", content=png_bytes(photo("chelsea", 256)))
        assert full.status_code == 413 and "--max-input-mb-per-user" in full.text
