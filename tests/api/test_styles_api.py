"""Prompt styles over real HTTP: A1111's styles.csv in and out, `styles` on txt2img and on a native job (the job runs
the expanded prompts, the PNG names the styles as A1111 writes them), /sdapi/v1/prompt-styles, and each user's
styles their own."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from studio.accounts import add_user
from studio.gallery import metadata
from studio.services import Services
from tests.conftest import make_config
from tests.support.tiny_sd import save_tiny_sd
from tests.ui.serving import serve_http

API, SD = "api/v1", "sdapi/v1"
CSV = ('name,prompt,negative_prompt\n'
       'cinematic,"cinematic still of {prompt}, film grain",cartoon\n'
       'moody,"dark, moody lighting",\n')


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    root = tmp_path_factory.mktemp("styles")
    save_tiny_sd(root / "models" / "tiny-sd")
    logins = root / "logins"
    add_user(logins, "ann", "apple-pie-9")
    add_user(logins, "bob", "blue-moon-9")
    config = make_config(root / "data", models_dirs=(root / "models",), plugins=(), auth_file=logins)
    with serve_http(config) as (services, url):
        yield services, url


def client(url: str, user: str) -> httpx.Client:
    password = {"ann": "apple-pie-9", "bob": "blue-moon-9"}[user]
    return httpx.Client(base_url=url, auth=(user, password), timeout=120)


def test_a1111_styles_csv_goes_in_and_comes_back_out_for_its_user_alone(served) -> None:
    _, url = served
    with client(url, "ann") as ann, client(url, "bob") as bob:
        imported = ann.post(f"{API}/styles.csv", content=CSV.encode(), headers={"content-type": "text/csv"})
        assert imported.status_code == 200 and imported.json() == {"imported": 2, "styles": 2}
        listed = ann.get(f"{SD}/prompt-styles").json()
        assert listed == [{"name": "cinematic", "prompt": "cinematic still of {prompt}, film grain",
                           "negative_prompt": "cartoon"},
                          {"name": "moody", "prompt": "dark, moody lighting", "negative_prompt": ""}]
        assert ann.get(f"{API}/styles").json() == listed
        exported = ann.get(f"{API}/styles.csv")
        assert exported.headers["content-type"].startswith("text/csv") and exported.text == CSV
        assert bob.get(f"{SD}/prompt-styles").json() == [] and bob.get(f"{API}/styles.csv").text.count("\n") == 1
        saved = bob.put(f"{API}/styles/ink", json={"prompt": "ink drawing of {prompt}"})
        assert saved.status_code == 200 and saved.json()["name"] == "ink"
        assert [s["name"] for s in ann.get(f"{API}/styles").json()] == ["cinematic", "moody"]
        assert bob.delete(f"{API}/styles/cinematic").status_code == 404  # ann's is not bob's to delete
        assert bob.delete(f"{API}/styles/ink").status_code == 204 and bob.get(f"{API}/styles").json() == []


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"title,prompt\nx,y\n", 422, "no `name` column"),
    (b"name,prompt\n" + b"x" * 2_100_000, 413, "at most"),
    (b"name,prompt\nx,\"" + b"y" * 6000 + b"\"\n", 422, "line 2"),
])
def test_a_styles_csv_that_cannot_be_taken_is_refused_and_changes_nothing(served, body, status, words) -> None:
    _, url = served
    with client(url, "bob") as bob:
        before = bob.get(f"{API}/styles").json()
        refused = bob.post(f"{API}/styles.csv", content=body, headers={"content-type": "text/csv"})
        assert refused.status_code == status and words in refused.text
        assert bob.get(f"{API}/styles").json() == before


def test_txt2img_applies_the_callers_styles_and_the_png_names_them(served) -> None:
    services, url = served
    with client(url, "ann") as ann, client(url, "bob") as bob:
        ann.post(f"{API}/styles.csv", content=CSV.encode(), headers={"content-type": "text/csv"})
        payload = {"prompt": "a cat", "negative_prompt": "blurry", "styles": ["cinematic", "moody"], "steps": 2,
                   "width": 64, "height": 64}
        response = ann.post(f"{SD}/txt2img", json=payload)
        assert response.status_code == 200, response.text
        info = json.loads(response.json()["info"])
        expanded = "cinematic still of a cat, film grain, dark, moody lighting"
        assert info["styles"] == ["cinematic", "moody"] and info["prompt"] == "a cat"
        assert info["all_prompts"] == [expanded] and info["all_negative_prompts"] == ["blurry, cartoon"]
        parsed = metadata.parse_parameters(info["infotexts"][0])
        assert parsed["prompt"] == expanded and json.loads(parsed["Styles array"]) == ["cinematic", "moody"]
        refused = bob.post(f"{SD}/txt2img", json=payload)
        assert refused.status_code == 422 and "unknown style 'cinematic'" in refused.text

        job = ann.post(f"{API}/jobs", json={"pipeline": "text_to_image", "model": "tiny-sd", "styles": ["moody"],
                                           "params": {"prompt": "a dog", "num_steps": 2, "width": 64,
                                                      "height": 64}})
        assert job.status_code == 202, job.text
        queued = services.queue.get(job.json()["id"])
        assert queued.spec.params["prompt"] == "a dog, dark, moody lighting" and queued.spec.styles == ("moody",)
        unknown = ann.post(f"{API}/jobs", json={"pipeline": "text_to_image", "styles": ["mood"],
                                               "params": {"prompt": "a dog"}})
        assert unknown.status_code == 422 and "closest: moody" in unknown.text
