"""From `python launch.py` to the first HTTP 200: how long a user waits for the studio, target ≤ 8 s on 2 cores.

Each run starts `python launch.py --no-browser --port P --data-dir D` as a user would and polls GET / (the UI page)
and GET /api/v1/health (the REST API) every 25 ms until each answers 200, then stops the studio with SIGTERM (its
orderly shutdown, also timed). Runs alternate between a fresh data dir (created and migrated at launch) and an
existing one: the data dir of an earlier launch with artworks in its gallery, reconciled at start. Models load in
the worker on first use, so no model is loaded in any of this.

Beside the wall time, each run records the server process's own CPU time until its page answered: on a machine
shared with other work the wall time moves with the load, the CPU time much less. `--full` also times what the
launch imports, each in a fresh interpreter (gradio; the four pipeline modules the catalogue imports; and torch,
which only the workers import), to show which part of the launch is which.

Run: `python -m benchmarks.launch [--quick|--full]`; writes benchmarks/results/launch.md. Linux (reads /proc).
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.common import Row, parse_quick, write_report
from pipelines.catalog import CORE_PIPELINES
from studio import __version__
from studio.gallery import GalleryStore, Recipe

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 8.0
POLL_S = 0.025
GIVE_UP_S = 120.0  # a launch slower than this is reported as failed
STOP_TIMEOUT_S = 60.0
ROUTES = {"page": "/", "health": "/api/v1/health"}
ARTWORKS = 300  # in the existing data dir's gallery


@dataclass(frozen=True)
class Sizes:
    runs: int  # launches per kind of data dir
    breakdown: bool  # also time the launch's imports in fresh interpreters


QUICK, FULL = Sizes(runs=1, breakdown=False), Sizes(runs=4, breakdown=True)


@dataclass(frozen=True)
class Launch:
    data_dir: str  # "fresh" | "existing"
    seconds: dict[str, float]  # route name → seconds from the command to its first 200
    server_cpu_s: float  # the server process's user + system CPU time when its page first answered
    stop_s: float  # SIGTERM to exit
    load: float  # the 1-minute load average just before the run (the machine is shared)


@dataclass(frozen=True)
class ImportCost:
    what: str
    wall_s: float
    cpu_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc/<pid>/stat (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def launch_once(data_dir: Path, kind: str, log: Path) -> Launch:
    """Start the studio on `data_dir`, wait until every route answers 200, stop it; what each step took."""
    load = os.getloadavg()[0]
    port = free_port()
    command = [sys.executable, "launch.py", "--no-browser", "--port", str(port), "--data-dir", str(data_dir)]
    with log.open("ab") as out:
        start = time.perf_counter()
        # its own session, so the worker it spawns goes with it if it has to be killed
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        seconds, cpu = wait_for_routes(process, f"http://127.0.0.1:{port}", start)
    except BaseException as e:  # Ctrl-C included: the studio must not outlive the benchmark
        stop(process)
        if not isinstance(e, RuntimeError):
            raise
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{e}; the end of its log:\n{tail}") from None
    return Launch(kind, seconds, cpu, stop(process), load)


def wait_for_routes(process: subprocess.Popen[bytes], url: str, start: float) -> tuple[dict[str, float], float]:
    """Seconds from `start` until each route first answered 200, and the server's CPU time at its page's 200."""
    seconds: dict[str, float] = {}
    cpu = 0.0
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while len(seconds) < len(ROUTES):
            if process.poll() is not None:
                raise RuntimeError(f"launch.py exited with code {process.returncode} before answering")
            if time.perf_counter() - start > GIVE_UP_S:
                raise RuntimeError(f"launch.py did not answer within {GIVE_UP_S:.0f} s")
            for name, route in ROUTES.items():
                if name in seconds:
                    continue
                try:
                    answered = client.get(route).status_code == 200
                except httpx.TransportError:
                    answered = False
                if answered:
                    seconds[name] = time.perf_counter() - start
                    if name == "page":
                        cpu = cpu_seconds(process.pid)
            time.sleep(POLL_S)
    return seconds, cpu


def stop(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM (the studio stops in order) and wait; the whole process group is killed if it hangs."""
    start = time.perf_counter()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return time.perf_counter() - start


def add_artworks(data_dir: Path, count: int) -> None:
    """Give a data dir's gallery `count` small artworks, as earlier sessions would have left them."""
    with GalleryStore(data_dir / "gallery") as gallery:
        for i in range(count):
            image = Image.new("RGB", (64, 64), (i * 37 % 256, i * 91 % 256, i * 53 % 256))
            recipe = Recipe(pipeline="gan", model="atelier-emoji-gan", model_hash=None, params={"num_images": 1},
                            seed=i, owner="local", job_id=f"bench-{i // 4}", index=i % 4, count=4,
                            app_version=__version__, a1111={"Seed": i}, info={}, created_at=1_700_000_000.0 + i)
            gallery.add(image, recipe)


def launches(sizes: Sizes, root: Path) -> list[Launch]:
    """`sizes.runs` launches on fresh data dirs and as many on one existing data dir, alternating."""
    log = root / "launch.log"
    existing = root / "existing"
    runs = [launch_once(existing, "fresh", log)]  # the existing dir's first launch is a fresh one
    add_artworks(existing, ARTWORKS)
    for i in range(sizes.runs * 2 - 1):
        if i % 2 == 0:
            runs.append(launch_once(existing, "existing", log))
        else:
            runs.append(launch_once(root / f"fresh-{i}", "fresh", log))
    return runs


def import_cost(what: str, code: str) -> ImportCost:
    """Wall and CPU time of a fresh interpreter running `code` (CPU: the child's user + system time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ImportCost(what, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def breakdown() -> list[ImportCost]:
    pipelines = "; ".join(f"import {path.partition(':')[0]}" for path in CORE_PIPELINES.values())
    return [import_cost("Python alone", "pass"),
            import_cost("gradio (the UI)", "import gradio"),
            import_cost("the studio's server modules (with gradio and FastAPI)",
                        "import studio.launcher, studio.services, studio.ui, studio.api"),
            import_cost("the four pipeline modules, as the catalogue imports them", pipelines),
            import_cost("torch (imported by the workers only)", "import torch")]


def median_of(runs: list[Launch], kind: str, route: str) -> float:
    return statistics.median(r.seconds[route] for r in runs if r.data_dir == kind)


def report(runs: list[Launch], costs: list[ImportCost], quick: bool) -> str:
    lines = [
        "# `python launch.py` to the first HTTP 200", "",
        f"{platform.machine()}, {os.cpu_count()} cores (shared with other work: the load average before each run "
        f"is listed), Python {platform.python_version()}; `python -m benchmarks.launch "
        f"{'--quick' if quick else '--full'}`. Target: ≤ {TARGET_S:.0f} s to both GET / and GET /api/v1/health.", "",
        "| data dir | GET / (median) | GET /api/v1/health (median) | runs |", "|---|---|---|---|",
    ]
    for kind in ("fresh", "existing"):
        count = sum(r.data_dir == kind for r in runs)
        lines.append(f"| {kind} | {median_of(runs, kind, 'page'):.2f} s | {median_of(runs, kind, 'health'):.2f} s | "
                     f"{count} |")
    lines += ["", "## Each run", "",
              "| # | data dir | GET / | health | server CPU at GET / | stop (SIGTERM → exit) | load average |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {i} | {r.data_dir} | {r.seconds['page']:.2f} s | {r.seconds['health']:.2f} s | "
              f"{r.server_cpu_s:.2f} s | {r.stop_s:.2f} s | {r.load:.2f} |" for i, r in enumerate(runs, 1)]
    lines += ["", f"The existing data dir holds {ARTWORKS} artworks in its gallery and the job queue of the earlier "
                  "launches. No model is loaded by a launch: the worker loads each on its first job."]
    if costs:
        lines += ["", "## What the launch imports, each in a fresh interpreter", "",
                  "| what | wall | CPU |", "|---|---|---|",
                  *[f"| {c.what} | {c.wall_s:.2f} s | {c.cpu_s:.2f} s |" for c in costs], "",
                  "The server imports all of these but torch before it answers: the catalogue imports each "
                  "pipeline class (its `Params` build the tabs and check requests), and the pipeline modules "
                  "import torch and diffusers only when a model loads, in a worker."]
    return "\n".join(lines) + "\n"


def measure(quick: bool) -> tuple[list[Launch], list[ImportCost]]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="atelier-bench-launch-") as root:
        runs = launches(sizes, Path(root))
    return runs, breakdown() if sizes.breakdown else []


def rows(quick: bool) -> list[Row]:
    runs, costs = measure(quick)
    write_report("launch", report(runs, costs, quick))
    return [launch_row(runs, costs, kind) for kind in ("fresh", "existing")]


def launch_row(runs: list[Launch], costs: list[ImportCost], kind: str) -> Row:
    page, health = median_of(runs, kind, "page"), median_of(runs, kind, "health")
    cpu = statistics.median(r.server_cpu_s for r in runs if r.data_dir == kind)
    met = max(page, health) <= TARGET_S
    gradio = next((c for c in costs if c.what.startswith("gradio")), None)
    cost = f" ({gradio.cpu_s:.1f} s of CPU in a fresh interpreter)" if gradio else ""
    note = "" if met else f"before it serves, the server imports gradio{cost} and builds the UI"
    return Row(f"`python launch.py` → first HTTP 200, {kind} data dir", "—",
               f"GET / {page:.1f} s, /api/v1/health {health:.1f} s (server CPU {cpu:.1f} s; median of "
               f"{sum(r.data_dir == kind for r in runs)})", f"≤ {TARGET_S:.0f} s", met, note=note)


def main(argv: list[str] | None = None) -> None:
    rows(parse_quick(__doc__, "one launch of each kind", "four launches of each kind, and the import breakdown",
                     argv))


if __name__ == "__main__":
    main()
