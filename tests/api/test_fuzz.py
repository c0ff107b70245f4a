"""A schema-driven fuzz run: schemathesis draws requests from /openapi.json, valid and invalid, for every route,
and the studio must answer each without a server error; a job accepted from one must not fail on a bug.

Bounded and repeatable: derandomized draws (CI sees the same cases every run), a fixed number per route, on
loopback only. Routes that run a job skip the boundary-case phase (it alone is over a thousand jobs), and their
requests keep their drawn shape but are capped to a few steps, few images and a small size: the run checks how
requests are handled, not how fast a CPU paints 2048² images.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from studio.jobs import JobStatus
from studio.services import Services
from tests.conftest import make_config, wait_finished
from tests.support.tiny_sd import save_tiny_sd
from tests.ui.serving import serve_http

LOGIN = ("ann", "apple-pie")
AUTHORIZATION = "Basic " + base64.b64encode(":".join(LOGIN).encode()).decode()
GENERATING = {"method": "POST", "path_regex": r"/(jobs|txt2img|img2img)$"}  # routes that start a job
CAPS = {"steps": 3, "num_steps": 3, "width": 128, "height": 128, "batch_size": 2, "n_iter": 1, "batch_count": 1,
        "num_images": 2}
BOUNDED = {"deadline": None, "database": None, "derandomize": True, "suppress_health_check": list(HealthCheck),
           "phases": [Phase.explicit, Phase.generate]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    root = tmp_path_factory.mktemp("fuzz")
    save_tiny_sd(root / "models" / "tiny-sd")
    config = make_config(root / "data", models_dirs=(root / "models",), max_queue=20, auth=":".join(LOGIN),
                         plugins=())  # not the test plugin, whose `crash` really ends the process
    with serve_http(config) as (services, url):
        # A1111 requests name no model: the tiny one keeps them fast (the bundled model is ten times its size)
        assert httpx.post(f"{url}sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd"}, auth=LOGIN,
                          timeout=30).status_code == 200
        yield services, url


@pytest.fixture
def worker_errors() -> Iterator[list[str]]:
    """What the workers log as errors meanwhile: a pipeline bug a job hit (the job fails; its worker goes on)."""
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage() + (f": {record.exc_info[1]!r}" if record.exc_info else ""))

    handler = Collect(logging.ERROR)
    logging.getLogger("studio.workers").addHandler(handler)
    yield errors
    logging.getLogger("studio.workers").removeHandler(handler)


@pytest.fixture(scope="module")
def api_schema(served: tuple[Services, str]) -> Any:
    """Every phase: the schema's examples, its boundary cases ("coverage") and random draws."""
    _, url = served
    schema = schemathesis.openapi.from_url(f"{url}openapi.json", timeout=30, auth=LOGIN)  # documented to users
    assert len(list(schema.get_all_operations())) >= 25  # the whole API is in the document
    return schema


@pytest.fixture(scope="module")
def generation_schema(served: tuple[Services, str]) -> Any:
    """Examples and random draws only: the boundary cases of routes that run a job are over a thousand jobs."""
    _, url = served
    config = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
    return schemathesis.openapi.from_url(f"{url}openapi.json", timeout=30, config=config, auth=LOGIN)


schema = schemathesis.pytest.from_fixture("api_schema")
generation_schema_ = schemathesis.pytest.from_fixture("generation_schema")


@schema.exclude(**GENERATING).parametrize()
@settings(max_examples=25, **BOUNDED)
def test_no_request_gets_a_server_error(case: Any, served: tuple[Services, str]) -> None:
    _call(case, served)


@generation_schema_.include(**GENERATING).parametrize()
@settings(max_examples=15, **BOUNDED)
def test_no_generation_request_gets_a_server_error(case: Any, served: tuple[Services, str],
                                                    worker_errors: list[str]) -> None:
    """...nor a job accepted from one fails on a bug: a failed job's reason is for the user, not a traceback."""
    services, _ = served
    if isinstance(case.body, dict):
        _cap_work(case.body, a1111=case.operation.path.startswith("/sdapi/"))
    try:
        response = _call(case, served)
        if response.status_code == 202:  # a native job: let it run to its end
            job = wait_finished(services, response.json()["id"], timeout=300)
            assert not worker_errors, f"{job.spec.pipeline} job {job.spec.params} failed on a bug: {worker_errors}"
    finally:
        _cancel_unfinished(services)


def _call(case: Any, served: tuple[Services, str]) -> Any:
    _, url = served
    # the studio's login, where a case has one (invalid cases without it check the 401s)
    response = case.call(base_url=url.rstrip("/"), timeout=300, headers={"Authorization": AUTHORIZATION})
    assert response.status_code < 500, f"{case.operation.label} -> {response.status_code} {response.text[:300]}"
    return response


def _cap_work(body: dict[str, Any], a1111: bool) -> None:
    """Few steps, few images and a small size, wherever a drawn body asks for more (valid values stay valid)."""
    if a1111:
        body.setdefault("steps", CAPS["steps"])  # A1111's default is 50
    for holder in (body, body.get("params")):
        if not isinstance(holder, dict):
            continue
        for key, limit in CAPS.items():
            value = holder.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > limit:
                holder[key] = limit


def _cancel_unfinished(services: Services) -> None:
    for job in services.queue.list(statuses=[JobStatus.PENDING, JobStatus.RUNNING]):
        services.queue.cancel(job.id)
