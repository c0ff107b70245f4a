"""The benchmark suite: every section's lines in one table, each a measurement against a baseline run in the same
process (or an absolute target), with the machine's measured matmul peaks beside them.

Run: `python -m benchmarks --quick` (a few minutes: smaller sizes, fewer rounds) or `--full` (the sizes the
targets name). Writes benchmarks/results/suite.md and suite.png; `--full` also puts the table and chart into
the README, between its benchmark markers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from benchmarks.common import RESULTS, Row, matmul_peak
from pipelines.diffusion_utils import cpu_has_fast_bf16

SECTIONS = ["text_to_image", "prompt_power", "hires_fix", "service", "style_transfer", "upscale", "gan", "gallery",
            "model_library", "launch", "memory", "ray_backend"]
README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- benchmark table: written by `python -m benchmarks --full` -->", "<!-- end of benchmark table -->"


def run_sections(names: list[str], quick: bool) -> tuple[list[Row], dict[str, float]]:
    """Every section's rows, and the seconds each took; a section that fails gives one row saying how."""
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)  # noqa: T201 -- progress of a long CLI run
        try:
            rows += importlib.import_module(f"benchmarks.{name}").rows(quick)
        except Exception as e:  # noqa: BLE001 -- one broken section must not lose the others' figures
            traceback.print_exc()
            rows.append(Row(f"{name} section", "—", f"failed: {type(e).__name__}: {e}", "—", False))
        seconds[name] = time.perf_counter() - start
    return rows, seconds


def machine() -> str:
    fp32, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    return (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch "
            f"{torch.__version__}; bf16 hardware (AMX / AVX512-BF16): {'yes' if cpu_has_fast_bf16() else 'no'}; "
            f"measured matmul peak fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")


def table(rows: list[Row]) -> list[str]:
    verdict = {True: "✅ met", False: "❌ not met", None: "reported"}
    lines = ["| what | baseline (same run) | result | speed vs baseline | target | |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "—"
        lines.append(f"| {r.what} | {r.baseline} | {r.result} | {ratio} | {r.target} | {verdict[r.met]} |")
    notes = [f"- **{r.what}**: {r.note}" for r in rows if r.note]
    return lines + (["", *notes] if notes else [])


def chart(rows: list[Row], path: Path) -> None:
    """Speed against each baseline as horizontal bars (log scale, 1× marked): green met, red not met."""
    shown = [r for r in rows if r.ratio is not None and r.ratio > 0]
    font = ImageFont.load_default(size=15)
    label_w, bar_w, row_h, pad = 560, 420, 30, 16
    image = Image.new("RGB", (label_w + bar_w + 2 * pad + 80, pad * 4 + row_h * (len(shown) + 2)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), "speed against the baseline of the same run (log scale; right of the line: faster)",
              fill="black", font=font)
    low, high = 0.1, 10.0

    def x(value: float) -> float:
        clamped = min(max(value, low), high)
        return label_w + pad + bar_w * (math.log10(clamped) - math.log10(low)) / (math.log10(high) - math.log10(low))

    top = pad * 2 + row_h
    for i, r in enumerate(shown):
        y = top + i * row_h
        label = _plain(r.what if len(r.what) <= 70 else r.what[:67] + "...")
        draw.text((pad, y + 6), label, fill="black", font=font)
        colour = {True: (46, 160, 67), False: (218, 54, 51), None: (140, 140, 140)}[r.met]
        left, right = sorted((x(1.0), x(r.ratio)))
        draw.rectangle((left, y + 4, right, y + row_h - 4), fill=colour)
        draw.text((right + 6, y + 6), f"{r.ratio:.2f}x", fill="black", font=font)  # Pillow's font has no "×"
    draw.line((x(1.0), top - 4, x(1.0), top + row_h * len(shown)), fill="black", width=2)
    for tick in (0.1, 0.5, 1, 2, 5, 10):
        draw.text((x(tick) - 8, top + row_h * len(shown) + 4), f"{tick:g}x", fill="black", font=font)
    image.save(path)


def _plain(text: str) -> str:
    """Pillow's built-in font has no superscripts, arrows or ×."""
    return text.replace("²", "^2").replace("→", "->").replace("×", "x")


def update_readme(section: str) -> None:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no benchmark markers ({BEGIN} … {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (default)")
    size.add_argument("--full", action="store_true", help="the sizes the targets name")
    parser.add_argument("--only", help="comma-separated sections (default: all of " + ", ".join(SECTIONS) + ")")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    quick = not args.full
    names = [n.strip() for n in args.only.split(",")] if args.only else SECTIONS
    started = time.perf_counter()
    about = machine()
    rows, seconds = run_sections(names, quick)
    took = time.perf_counter() - started
    timing = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
    command = f"python -m benchmarks {'--quick' if quick else '--full'}"
    body = "\n".join([f"Machine: {about}.", "", *table(rows), "", f"`{command}` took {took / 60:.1f} min ({timing})."])
    RESULTS.mkdir(exist_ok=True)
    chart(rows, RESULTS / "suite.png")
    report = f"# Atelier benchmark suite ({'quick' if quick else 'full'})\n\n{body}\n\n![speed chart](suite.png)\n"
    (RESULTS / "suite.md").write_text(report, encoding="utf-8")
    print(report)  # noqa: T201 -- a CLI report
    if not quick and not args.only:
        update_readme(f"{body}\n\n![speed against each baseline](benchmarks/results/suite.png)")
    return 0 if all(r.met is not False for r in rows) else 1
