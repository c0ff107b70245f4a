"""The studio as a service, against calling the pipeline directly in the same run: what a request through the REST
API, the queue, a worker process and the gallery adds; throughput with many clients at once; and what batching
compatible waiting jobs gains. The model is the bundled text-to-image model (atelier-emoji-diffusion, 64×64).

Run: `python -m benchmarks.service --quick` (about 2 minutes) or `--full`; writes benchmarks/results/service.md.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from benchmarks.common import Row, parse_quick, rows_markdown, write_report
from pipelines.catalog import Catalog
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from studio.config import StudioConfig
from studio.launcher import start_server
from studio.services import build_services

MODEL = "atelier-emoji-diffusion"
API = "api/v1"
REQUEST = {"prompt": "a red heart", "num_steps": 20, "batch_size": 4}  # the tab's everyday request
SMALL = {"num_steps": 10}  # one picture: the "many small jobs" case
PROMPTS = ["a red heart", "a blue star", "a green tree", "a yellow sun", "a smiling face", "a purple flower",
           "an orange cat", "a black dog"]


@dataclass(frozen=True)
class Sizes:
    request_rounds: int  # alternating direct / through-the-studio runs of one request
    request_steps: int  # of that request (4 pictures)
    jobs: int  # small jobs for the concurrency and batching runs
    clients: int


QUICK = Sizes(request_rounds=2, request_steps=10, jobs=8, clients=8)
FULL = Sizes(request_rounds=5, request_steps=REQUEST["num_steps"], jobs=40, clients=8)


@contextmanager
def studio(data_dir: Path, **settings: object) -> Iterator[str]:
    """The studio serving on a free port with a real worker process, its model loaded: its base URL."""
    config = StudioConfig(data_dir=data_dir, devices="cpu", open_browser=False, log_level="warning", **settings)
    services = build_services(config)
    services.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app, url, _ = start_server(services, port=port)
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            run_job(client, {**SMALL, "prompt": "warm up"}, 0)  # the worker loads the model once, here
        yield url
    finally:
        app.close()
        services.stop()


def run_job(client: httpx.Client, params: dict, seed: int) -> float:
    """Submit one job and follow its event stream to the end; the wall time of the whole request."""
    start = time.perf_counter()
    response = client.post(f"{API}/jobs", json={"pipeline": "text_to_image", "model": MODEL, "params": params,
                                                "seed": seed})
    response.raise_for_status()
    job_id = response.json()["id"]
    with client.stream("GET", f"{API}/jobs/{job_id}/events") as events:
        kind = ""
        for line in events.iter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            if kind in ("completed", "failed", "canceled") and line.startswith("data:"):
                if kind != "completed":
                    raise RuntimeError(f"job {job_id} {kind}: {json.loads(line[5:])}")
                break
    return time.perf_counter() - start


def direct_pipeline() -> TextToImagePipeline:
    entry = Catalog().model(MODEL, "text_to_image")
    return TextToImagePipeline.load(entry.source, device="cpu", **entry.load_options)


def request_overhead(pipe: TextToImagePipeline, url: str, rounds: int, steps: int) -> tuple[float, float]:
    """Median seconds of one request called directly and through the studio, run alternately."""
    request = {**REQUEST, "num_steps": steps}
    params = TextToImageParams.from_dict(request)
    direct, served = [], []
    with httpx.Client(base_url=url, timeout=600) as client:
        for seed in range(rounds):
            start = time.perf_counter()
            with torch.inference_mode():
                pipe(params, seed=seed)
            direct.append(time.perf_counter() - start)
            served.append(run_job(client, request, seed))
    return statistics.median(direct), statistics.median(served)


def back_to_back(pipe: TextToImagePipeline, jobs: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(jobs):
            pipe(TextToImageParams.from_dict({**SMALL, "prompt": PROMPTS[i % len(PROMPTS)]}), seed=i)
    return time.perf_counter() - start


def many_clients(url: str, jobs: int, clients: int) -> float:
    """Seconds for `clients` threads, each with its own connection, to get `jobs` small jobs done between them."""
    todo = list(range(jobs))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                try:
                    run_job(client, {**SMALL, "prompt": PROMPTS[i % len(PROMPTS)]}, i)
                except BaseException as e:  # noqa: BLE001 -- reported after the run
                    errors.append(e)
                    return

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def rows(quick: bool) -> list[Row]:
    sizes = QUICK if quick else FULL
    pipe = direct_pipeline()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-service-") as tmp:
        with studio(Path(tmp) / "batched") as url:
            direct, served = request_overhead(pipe, url, sizes.request_rounds, sizes.request_steps)
            alone = back_to_back(pipe, sizes.jobs)
            together = many_clients(url, sizes.jobs, sizes.clients)
        with studio(Path(tmp) / "one-at-a-time", max_batch=1) as url:
            single = many_clients(url, sizes.jobs, sizes.clients)
    overhead = served - direct
    met = overhead <= 0.05 * direct and overhead <= 0.050
    request = f"4 pictures, {sizes.request_steps} steps"
    small = f"{sizes.jobs} jobs of 1 picture, {SMALL['num_steps']} steps"
    return [
        Row(f"txt2img request through REST → queue → worker → gallery ({request})", "the pipeline called directly",
            f"{served:.3f} s vs {direct:.3f} s: {overhead * 1000:+.0f} ms ({overhead / direct:+.1%})",
            "overhead ≤ 5% and ≤ 50 ms", met, direct / served,
            "the studio's time includes writing each PNG with its recipe and a thumbnail"),
        Row(f"{sizes.clients} concurrent clients, {small}", "the same jobs back-to-back, called directly",
            f"{together:.1f} s vs {alone:.1f} s", "throughput ≥ 0.95×", alone / together >= 0.95, alone / together,
            "the studio batches waiting jobs that differ only in their prompts (--max-batch 4)"),
        Row(f"batching compatible waiting jobs ({small}, {sizes.clients} clients)",
            "the same studio with --max-batch 1 (one job at a time)", f"{together:.1f} s vs {single:.1f} s",
            "≥ 1.1× on CPU", single / together >= 1.1, single / together),
    ]


def report(result: list[Row], quick: bool) -> str:
    sizes = QUICK if quick else FULL
    lines = ["# The studio as a service (bundled text-to-image model, 64×64, CPU)", "",
             f"{torch.get_num_threads()} torch threads; one worker process; {sizes.request_rounds} alternating rounds "
             f"for the request, {sizes.jobs} small jobs from {sizes.clients} clients for throughput.", "",
             *rows_markdown(result)]
    return "\n".join(lines) + "\n"


def main() -> None:
    quick = parse_quick(__doc__, f"{QUICK.jobs} small jobs", f"{FULL.jobs} small jobs")
    write_report("service", report(rows(quick), quick))


if __name__ == "__main__":
    main()
