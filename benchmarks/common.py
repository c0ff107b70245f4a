"""Timing and reporting helpers shared by the benchmarks."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Row:
    """One line of the suite's summary table (`python -m benchmarks`): a measurement against its baseline and
    target. Each benchmark module's `rows(quick)` returns these (and may write its own detailed report)."""

    what: str  # e.g. "SD VAE decode 512²"
    baseline: str  # what it is compared with in the same run, or "—" for an absolute target
    result: str  # the measurement in words and figures, e.g. "0.41 s vs 0.52 s" or "page 12 ms"
    target: str  # e.g. "≥ 2.5×" or "≤ 30 ms"
    met: bool | None  # None: reported, no pass/fail (e.g. a target that needs hardware this machine lacks)
    ratio: float | None = None  # speed against the baseline (> 1: faster), for the chart
    note: str = ""  # why a target is not met, or what the figure means


def rows_markdown(rows: list[Row]) -> list[str]:
    """A section report's table of its rows (what, baseline, result, target, met), then each row's note."""
    verdict = {True: "yes", False: "no", None: "reported"}
    return ["| what | baseline | result | target | met |", "|---|---|---|---|---|",
            *(f"| {r.what} | {r.baseline} | {r.result} | {r.target} | {verdict[r.met]} |" for r in rows),
            "", *(f"- {r.what}: {r.note}" for r in rows if r.note)]


def section_report(title: str, about: str, rows: list[Row]) -> str:
    """A section's Markdown report: its title, the machine and method, then its rows."""
    return "\n".join([f"# {title}", "", about, "", *rows_markdown(rows)]) + "\n"


def cpu_flags() -> str:
    """The CPU features that decide the fast paths (AVX2, AVX-512, bf16 hardware), for every report's header."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "CPU flags unknown"
    have = set(flags.split(":", 1)[1].split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return "CPU features: " + ", ".join(f"{f} {'yes' if f in have else 'no'}" for f in wanted)


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of `runs` calls of `fn`, with no warm-up (for work that is not a model's forward pass)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: float  # median of the measured runs
    runs: int


def measure(name: str, fn: Callable[[], object], *, warmup: int = 1, runs: int = 3) -> Timing:
    """Median wall time of `fn` after `warmup` calls (first calls pay for oneDNN/cuDNN kernel selection)."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return Timing(name, statistics.median(times), runs)


def measure_interleaved(candidates: dict[str, Callable[[], object]], *, warmup: int = 1,
                        rounds: int = 3) -> list[Timing]:
    """Median time of each candidate, run round-robin (A B C, A B C, …): on a shared, noisy machine drift then
    hits every candidate alike instead of whichever happened to run during it."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for fn in candidates.values():
            for _ in range(warmup):
                fn()
        for _ in range(rounds):
            for name, fn in candidates.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return [Timing(name, statistics.median(t), rounds) for name, t in times.items()]


def matmul_peak(dtype: torch.dtype, size: int = 2048, runs: int = 5) -> float:
    """This machine's measured dense matmul rate in GFLOP/s for `dtype` (the physical ceiling to compare to). The
    side grows from 256 to `size` only while a product stays quick: a dtype the CPU only emulates (bf16 without
    AVX512-BF16 or AMX can run at ~1 GFLOP/s) would otherwise take minutes to measure."""
    side = 256
    while True:
        a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
        start = time.perf_counter()
        a @ b
        if side >= size or time.perf_counter() - start > 0.05:
            break
        side *= 2
    timing = measure(f"matmul {dtype}", lambda: a @ b, warmup=1, runs=runs)
    return 2 * side**3 / timing.seconds / 1e9


def ratio_table(baseline: Timing, others: list[Timing]) -> list[str]:
    lines = ["| variant | seconds | speed vs baseline |", "|---|---|---|",
             f"| {baseline.name} (baseline) | {baseline.seconds:.3f} | 1.00× |"]
    lines += [f"| {t.name} | {t.seconds:.3f} | {baseline.seconds / t.seconds:.2f}× |" for t in others]
    return lines


RESULTS = Path(__file__).resolve().parent / "results"


def parse_quick(doc: str | None, quick: str, full: str, argv: list[str] | None = None) -> bool:
    """A benchmark module's command line: `--quick` (the default) or `--full`; True for quick."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"{quick} (default)")
    size.add_argument("--full", action="store_true", help=full)
    return not parser.parse_args(argv).full


def write_report(name: str, report: str) -> Path:
    """Print a benchmark's Markdown report and keep it as benchmarks/results/<name>.md."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.md"
    out.write_text(report, encoding="utf-8")
    print(report)  # noqa: T201 -- a CLI report
    print(f"written to {out}")  # noqa: T201
    return out
