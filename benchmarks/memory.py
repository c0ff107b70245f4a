"""Peak memory of a model worker that switches among every installed model, with a 3 GB cache budget.

A real studio (queue, one worker process, gallery) runs one small job on each installed model of the catalogue in
turn — text to image, GAN, VAE and style transfer — for several rounds, with `--model-memory-gb 3`. The worker's
peak resident memory is read from the kernel (VmHWM, reset before each job through /proc/<pid>/clear_refs, so
each job has its own peak) and compared with the budget. The report splits it into the process's baseline —
Python, torch and the pipeline modules, measured in a fresh interpreter that loads no model — and what the
models and their runs add on top, and lists which models the worker held after each job.

The budget bounds the bytes of the loaded models' weights (`Pipeline.nbytes`); the resident memory also holds
the interpreter, torch's libraries and each run's activations, so the target — the whole process never above
the budget — is stricter than what the cache alone promises.

Run: `python -m benchmarks.memory [--quick|--full]`; writes benchmarks/results/memory.md. Linux only (/proc).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.common import Row, parse_quick, write_report
from pipelines.catalog import CORE_PIPELINES
from pipelines.models import ModelEntry
from studio.config import StudioConfig
from studio.jobs import JobStatus
from studio.services import Services, build_services

BUDGET_GB = 3.0
READY = ("installed", "downloaded")  # catalogue statuses of models that load without a download
JOB_TIMEOUT_S = 300.0
GB = 1e9
KB = 1024
# the baselines, each a fresh interpreter with more imported (keys of the report's baseline table)
PYTHON, TORCH = "Python", "Python + torch"
PIPELINES = "Python + torch + the four pipeline modules"
LIBRARIES = "… + the diffusers pipelines and transformers (what loading the text-to-image model imports)"
MODEL_LIBRARIES = "from diffusers import AutoPipelineForText2Image, AutoencoderKL; from transformers import AutoModel"


@dataclass(frozen=True)
class Sizes:
    rounds: int  # passes over every installed model
    style_modes: tuple[str, ...]  # style-transfer modes run in turn (each loads its own networks)


QUICK = Sizes(rounds=1, style_modes=("builtin",))
FULL = Sizes(rounds=3, style_modes=("builtin", "painting", "gatys"))


@dataclass(frozen=True)
class JobPeak:
    round: int
    model: str
    what: str  # the job, in words
    seconds: float
    peak_bytes: int  # the worker's resident high-water mark during this job
    after_bytes: int  # resident after the job
    held: tuple[str, ...]  # the models the worker holds afterwards, least recently used first
    error: str = ""


def proc_status(pid: int) -> dict[str, int]:
    """The memory lines of /proc/<pid>/status, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key.startswith("Vm") and rest.strip().endswith("kB"):
            values[key] = int(rest.split()[0]) * KB
    return values


def reset_peak(pid: int) -> None:
    """Restart the kernel's resident high-water mark (VmHWM) of `pid` from its current resident size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def baseline_bytes(imports: str) -> int:
    """Resident bytes of a fresh interpreter after `imports` (what every worker holds before any model)."""
    code = f"{imports}\nimport pathlib\nprint(pathlib.Path('/proc/self/status').read_text())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) * KB


def installed_models(services: Services) -> list[ModelEntry]:
    """Every model of the four core tabs that loads without a download, in tab order."""
    catalog = services.catalog
    return [m for kind in CORE_PIPELINES if catalog.has_pipeline(kind) for m in catalog.models(kind)
            if m.status in READY and not m.refusal]


def job_params(model: ModelEntry, services: Services, sizes: Sizes) -> list[tuple[str, dict[str, Any]]]:
    """(what, params) of the small jobs run on `model`: one per model, one per style-transfer mode."""
    if model.kind == "text_to_image":
        return [("64² image, 4 steps", {"prompt": "a red heart", "num_steps": 4})]
    if model.kind == "gan":
        return [("grid of 16", {"num_images": 16})]
    if model.kind == "vae":
        return [("4 samples", {"num_images": 4})]
    photo = services.inputs.put(_gradient((160, 120), (200, 60, 40)), field="content_image")
    painting = services.inputs.put(_gradient((128, 128), (30, 80, 200)), field="style_image")
    jobs = {"builtin": ("built-in style, 128 px", {"mode": "builtin", "content_image": photo, "size": 128}),
            "painting": ("any painting, 128 px", {"mode": "painting", "content_image": photo,
                                                  "style_image": painting, "size": 128}),
            "gatys": ("Gatys, 64 px, 3 iterations", {"mode": "gatys", "content_image": photo,
                                                      "style_image": painting, "size": 64, "iterations": 3})}
    return [jobs[mode] for mode in sizes.style_modes]


def _gradient(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A picture with some structure (a diagonal gradient with stripes) for the jobs that restyle one."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([tuple(min(255, c * (x + y) // (width + height) + 60 * ((x // 8) % 2)) for c in colour)
                   for y in range(height) for x in range(width)])
    return image


def worker_pid(services: Services, timeout: float = 60.0) -> int:
    """The process id of the studio's one worker process, once it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = getattr(services.pool.handles[0], "pid", None)
        if pid is not None and services.pool.status()[0].alive:
            return pid
        time.sleep(0.05)
    raise RuntimeError("the worker process did not start")


def settled_rss(pid: int, timeout: float = 30.0) -> int:
    """Resident bytes of `pid` once they stop changing for half a second (a new worker is importing its modules)."""
    deadline = time.monotonic() + timeout
    last = proc_status(pid)["VmRSS"]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proc_status(pid)["VmRSS"]
        if now == last:
            break
        last = now
    return last


def run_job(services: Services, pid: int, model: ModelEntry, params: dict[str, Any], seed: int) -> tuple[
        float, int, int, str]:
    """Submit one job and wait for its end: (seconds, peak resident bytes, resident bytes after, error or "")."""
    reset_peak(pid)
    start = time.perf_counter()
    job = services.generation.submit(model.kind, model.id, params, seed)
    while not (current := services.queue.get(job.id)).status.finished:
        if time.perf_counter() - start > JOB_TIMEOUT_S:
            raise RuntimeError(f"job on {model.id} did not finish within {JOB_TIMEOUT_S:.0f} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if worker_pid(services) != pid:
        raise RuntimeError(f"the worker process died during the job on {model.id}: {current.error}")
    status = proc_status(pid)
    error = "" if current.status == JobStatus.COMPLETED else f"{current.status}: {current.error}"
    return seconds, status["VmHWM"], status["VmRSS"], error


def switch_models(sizes: Sizes, data_dir: Path) -> tuple[list[JobPeak], int, list[ModelEntry]]:
    """Every installed model in turn, `sizes.rounds` times, in one worker with the budget: (one peak per job,
    the worker's resident bytes when idle before its first job, the models)."""
    config = StudioConfig(data_dir=data_dir, devices="cpu", open_browser=False, log_level="warning",
                          model_memory_gb=BUDGET_GB)
    services = build_services(config)
    services.start()
    try:
        pid = worker_pid(services)
        idle = settled_rss(pid)
        models = installed_models(services)
        peaks = []
        for round_ in range(1, sizes.rounds + 1):
            for model in models:
                for what, params in job_params(model, services, sizes):
                    seconds, peak, after, error = run_job(services, pid, model, params, seed=round_)
                    held = services.pool.status()[0].loaded
                    peaks.append(JobPeak(round_, model.id, what, seconds, peak, after, held, error))
        return peaks, idle, models
    finally:
        services.stop()


def report(peaks: list[JobPeak], idle: int, bases: dict[str, int], models: list[ModelEntry], sizes: Sizes,
           quick: bool) -> str:
    peak = max(p.peak_bytes for p in peaks)
    worst = max(peaks, key=lambda p: p.peak_bytes)
    lines = [
        "# Worker memory while switching among every installed model (cache budget 3 GB)", "",
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`python -m benchmarks.memory {'--quick' if quick else '--full'}`; {sizes.rounds} rounds over "
        f"{len(models)} models, style-transfer modes: {', '.join(sizes.style_modes)}.", "",
        f"**Peak resident memory of the worker: {peak / GB:.2f} GB** against a budget of {BUDGET_GB:.0f} GB "
        f"({'within' if peak <= BUDGET_GB * GB else 'ABOVE'} it), during round {worst.round}, {worst.model} "
        f"({worst.what}). Of that, {split(peak, bases)}.", "",
        "## Baseline: a fresh interpreter, no model", "",
        "| what is imported | resident |", "|---|---|",
        *[f"| {name} | {value / GB:.3f} GB |" for name, value in bases.items()],
        f"| the studio's worker process, idle before its first job | {idle / GB:.3f} GB |", "",
        "## The models", "",
        "| model | tab | on disk |", "|---|---|---|",
        *[f"| {m.id} | {m.kind} | {'—' if m.size_bytes is None else f'{m.size_bytes / 1e6:.1f} MB'} |"
          for m in models], "",
        "## Each job (peak: the worker's resident high-water mark during that job)", "",
        "| round | model | job | seconds | peak | after | held afterwards (least recent first) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in peaks:
        held = ", ".join(p.held) or "—"
        failed = f" **{p.error}**" if p.error else ""
        lines.append(f"| {p.round} | {p.model} | {p.what}{failed} | {p.seconds:.2f} | {p.peak_bytes / GB:.3f} GB | "
                     f"{p.after_bytes / GB:.3f} GB | {held} |")
    return "\n".join(lines) + "\n"


def measure(quick: bool) -> tuple[list[JobPeak], int, dict[str, int], list[ModelEntry], Sizes]:
    sizes = QUICK if quick else FULL
    modules = "; ".join(f"import {path.partition(':')[0]}" for path in CORE_PIPELINES.values())
    bases = {PYTHON: baseline_bytes("pass"), TORCH: baseline_bytes("import torch"),
             PIPELINES: baseline_bytes(f"import torch; {modules}"),
             LIBRARIES: baseline_bytes(f"import torch; {modules}; {MODEL_LIBRARIES}")}
    with tempfile.TemporaryDirectory(prefix="atelier-bench-memory-") as data:
        peaks, idle, models = switch_models(sizes, Path(data))
    return peaks, idle, bases, models, sizes


def rows(quick: bool) -> list[Row]:
    peaks, idle, bases, models, sizes = measure(quick)
    write_report("memory", report(peaks, idle, bases, models, sizes, quick))
    return [summary_row(peaks, bases)]


def summary_row(peaks: list[JobPeak], bases: dict[str, int]) -> Row:
    peak = max(p.peak_bytes for p in peaks)
    failed = [p for p in peaks if p.error]
    note = f"{len(failed)} job(s) failed, e.g. {failed[0].model}: {failed[0].error}" if failed else ""
    return Row("peak RSS of a worker switching among all installed models, 3 GB budget", "—",
               f"peak {peak / GB:.2f} GB over {len(peaks)} jobs: {split(peak, bases)}", f"≤ {BUDGET_GB:.0f} GB",
               peak <= BUDGET_GB * GB and not failed, note=note)


def split(peak: int, bases: dict[str, int]) -> str:
    """A peak in words: how much is Python + torch, the other libraries, and the models with their runs."""
    torch_, libraries = bases[TORCH], bases[LIBRARIES]
    return (f"{torch_ / GB:.2f} GB Python + torch, {(libraries - torch_) / GB:.2f} GB the pipeline modules, diffusers "
            f"and transformers, {(peak - libraries) / GB:.2f} GB the models, their runs and the allocator")


def main(argv: list[str] | None = None) -> None:
    rows(parse_quick(__doc__, "one round, built-in styles only", "three rounds, every style-transfer mode", argv))


if __name__ == "__main__":
    main()
