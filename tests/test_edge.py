"""The studio's HTTP edge over real HTTP: host names, other sites' pages, body sizes, logins before bodies, headers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from gradio_client import Client

from studio.accounts import add_user
from tests.conftest import make_config, wait_finished
from tests.ui.serving import serve_http

API = "api/v1"
APP = "https://app.example"  # a site the owner lets call the studio
EVIL = "https://evil.example"
PATTERN_JOB = {"pipeline": "pattern", "params": {"prompt": "tide"}}


@pytest.fixture(scope="module")
def open_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A studio without logins, as on a desktop, knowing one more host name and one other site."""
    config = make_config(tmp_path_factory.mktemp("edge") / "data", allowed_hosts=("studio.lan",),
                         cors_allow_origins=(APP,))
    with serve_http(config) as served:
        yield served


@pytest.fixture(scope="module")
def login_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    root = tmp_path_factory.mktemp("edge-logins")
    add_user(root / "logins", "ann", "apple-pie-9")
    add_user(root / "logins", "bob", "blue-moon-9")
    with serve_http(make_config(root / "data", auth_file=root / "logins")) as served:
        yield served


def test_a_studio_without_logins_answers_only_to_its_own_names(open_studio: tuple[Any, str]) -> None:
    _, url = open_studio
    port = urlsplit(url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "studio.lan", "10.1.2.3:7860", "[::1]:7860"):
        assert httpx.get(f"{url}{API}/health", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "studio.lan.evil.example"):
        refused = httpx.get(f"{url}{API}/health", headers={"Host": host})
        assert refused.status_code == 421 and "--allowed-hosts" in refused.text, host
        assert httpx.get(url, headers={"Host": host}).status_code == 421  # the UI too


def test_a_studio_with_logins_answers_to_any_name(login_studio: tuple[Any, str]) -> None:
    _, url = login_studio
    assert httpx.get(f"{url}{API}/health", headers={"Host": "studio.example.org"}).status_code == 401


def test_pages_of_other_sites_can_neither_change_nor_read(open_studio: tuple[Any, str]) -> None:
    services, url = open_studio
    before = len(services.queue.list())
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": f"{url.rstrip('/')}.evil.example"}):
        assert httpx.post(f"{url}{API}/jobs", json=PATTERN_JOB, headers=headers).status_code == 403, headers
        assert httpx.post(f"{url}gradio_api/queue/join", json={}, headers=headers).status_code == 403, headers
    read = httpx.get(f"{url}{API}/images", headers={"Origin": EVIL})
    assert read.status_code == 403 and "access-control-allow-origin" not in read.headers
    preflight = httpx.options(f"{url}{API}/jobs", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert len(services.queue.list()) == before  # nothing was queued

    # the studio's own page, and a plain client, are served; neither gets CORS headers it does not need
    own = httpx.post(f"{url}{API}/jobs", json=PATTERN_JOB, headers={"Origin": url.rstrip("/"),
                                                                    "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 202 and "access-control-allow-origin" not in own.headers
    wait_finished(services, own.json()["id"])
    navigation = httpx.get(url, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert navigation.status_code == 200  # following a link to the studio from elsewhere still opens it


def test_a_site_the_owner_allows_may_call_the_api_with_cors(open_studio: tuple[Any, str]) -> None:
    _, url = open_studio
    preflight = httpx.options(f"{url}{API}/jobs", headers={"Origin": APP, "Access-Control-Request-Method": "POST",
                                                           "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == APP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    listed = httpx.get(f"{url}{API}/images", headers={"Origin": APP})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == APP
    assert listed.headers["access-control-allow-credentials"] == "true" and "Origin" in listed.headers["vary"]


def test_bodies_past_the_limit_are_refused_on_every_route(open_studio: tuple[Any, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = open_studio
    monkeypatch.setattr("studio.edge.MAX_BODY_BYTES", 10_000)
    huge = json.dumps({"data": ["x" * 20_000], "fn_index": 0, "session_hash": "abc"}).encode()
    for route in ("gradio_api/queue/join", "gradio_api/run/predict", "login", f"{API}/jobs"):
        assert httpx.post(url + route, content=huge).status_code == 413, route
        streamed = httpx.post(url + route, content=iter([huge]), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "limit" in streamed.text, route


def test_gradio_routes_do_not_echo_rejected_input(open_studio: tuple[Any, str]) -> None:
    _, url = open_studio
    rejected = httpx.post(f"{url}gradio_api/queue/join", json={"data": "secret-value-1234", "fn_index": "no"})
    assert rejected.status_code == 422 and "secret-value-1234" not in rejected.text


def test_with_logins_the_api_asks_for_one_before_reading_a_body(login_studio: tuple[Any, str]) -> None:
    _, url = login_studio
    # a body FastAPI would refuse as malformed (422) or too large (413) gets the 401 first: it was never read
    assert httpx.post(f"{url}{API}/jobs", content=b"{not json", headers={"content-type": "application/json"}
                      ).status_code == 401
    assert httpx.post(f"{url}sdapi/v1/txt2img", content=iter([b"x" * 200_000_000])).status_code == 401
    wrong = httpx.post(f"{url}{API}/jobs", content=b"{not json", auth=("ann", "wrong-password"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    right = httpx.post(f"{url}{API}/jobs", content=b"{not json", auth=("ann", "apple-pie-9"),
                       headers={"content-type": "application/json"})
    assert right.status_code == 422


def test_answers_forbid_framing_and_sniffing_and_sessions_are_lax(login_studio: tuple[Any, str]) -> None:
    services, url = login_studio
    page = httpx.get(url)
    assert page.headers["x-frame-options"] == "SAMEORIGIN" and page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    with httpx.Client(base_url=url, timeout=60) as browser:
        login = browser.post("login", data={"username": "ann", "password": "apple-pie-9"})
        cookies = login.headers.get_list("set-cookie")
        assert login.status_code == 200 and len(cookies) == 2
        assert all("samesite=lax" in c.lower() and "samesite=none" not in c.lower() for c in cookies), cookies
        job = services.generation.submit("pattern", "pattern-v1", {}, 1, owner="ann")
        artwork = services.gallery.get(wait_finished(services, job.id).image_ids[0])
        served = browser.get(f"gradio_api/file={artwork.path}")
        assert served.status_code == 200 and "sandbox" in served.headers["content-security-policy"]


def test_a_gradio_session_serves_only_the_user_who_opened_it(login_studio: tuple[Any, str]) -> None:
    _, url = login_studio
    ann = Client(url, auth=("ann", "apple-pie-9"), verbose=False)
    status = ann.predict(model="pattern-v1", seed=1, num_steps=2, api_name="/generate_pattern")[0]
    assert status.startswith("Done")
    with httpx.Client(base_url=url, timeout=30) as bob:
        assert bob.post("login", data={"username": "bob", "password": "blue-moon-9"}).status_code == 200
        for request in (bob.build_request("GET", "gradio_api/queue/data", params={"session_hash": ann.session_hash}),
                        bob.build_request("POST", "gradio_api/queue/join", json={
                            "data": [], "fn_index": 0, "session_hash": ann.session_hash}),
                        bob.build_request("GET", f"gradio_api/heartbeat/{ann.session_hash}")):
            refused = bob.send(request)
            assert refused.status_code == 403 and "another user" in refused.text, request.url
    assert ann.predict(model="pattern-v1", seed=2, num_steps=2, api_name="/generate_pattern")[0].startswith("Done")


def test_the_api_and_the_file_guard_are_in_place_before_the_server_listens(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio.http_server

    seen: list[set[str]] = []
    start = gradio.http_server.start_server

    def paths(routes: list[Any]) -> Iterator[str]:  # FastAPI keeps an included router as one route holding its own
        for route in routes:
            yield getattr(route, "path", "")
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            yield from paths(getattr(inner, "routes", []))

    def recording_start(app: Any, **kwargs: Any) -> Any:
        seen.append(set(paths(app.routes)))
        return start(app=app, **kwargs)

    monkeypatch.setattr(gradio.http_server, "start_server", recording_start)
    with serve_http(make_config(tmp_path / "data")) as (_, url):
        assert httpx.get(f"{url}{API}/health").status_code == 200
    assert seen and {f"/{API}/health", "/sdapi/v1/txt2img", "/docs", "/openapi.json"} <= seen[0]
