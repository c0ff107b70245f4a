"""Hires fix ×2 on the SD 1.5 architecture with random weights (nothing downloaded): one hires-fix job against the
two separate jobs a user would run for the same picture without it (text to image at the first size, then img2img
of its Lanczos ×2 at the same denoising strength and steps), both with the model hot.

Baseline (same run): the two separate jobs. Target: no slower (hires fix saves the decode and encode between the
passes in its Latent mode, and the PNG in between). The two ways take turns, so a machine that slows down meanwhile
slows both alike.

Run: `python -m benchmarks.hires_fix --quick` (128² → 256², 6 steps; the default) or `--full` (256² → 512²,
20 steps); writes benchmarks/results/hires_fix.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch
from PIL import Image

from benchmarks.common import Row, cpu_flags, parse_quick, section_report, write_report
from benchmarks.prompt_power import sd15_pipeline
from pipelines.text_to_image import TextToImageParams

RUNS = 2  # of each way, in a quick run; a full one times each way once (a pass takes minutes on a laptop CPU)


def measure(quick: bool) -> tuple[list[Row], str]:
    side, steps, runs = (128, 6, RUNS) if quick else (256, 20, 1)
    pipe = sd15_pipeline()
    first = {"prompt": "a castle by a river", "width": side, "height": side, "num_steps": steps, "sampler": "Euler",
             "strength": 0.5}
    rows = []
    for upscaler in ("Latent", "Lanczos"):
        hires = TextToImageParams.from_dict({**first, "enable_hr": True, "hr_upscaler": upscaler})
        draft = TextToImageParams.from_dict(first)
        second = TextToImageParams.from_dict({**first, "init_image": "draft", "width": 2 * side, "height": 2 * side})

        def separate(draft: TextToImageParams = draft, second: TextToImageParams = second) -> None:
            picture = pipe(draft, seed=1).images[0].resize((2 * side, 2 * side), Image.Resampling.LANCZOS)
            pipe(second, seed=1, inputs={"draft": picture})

        pipe(TextToImageParams.from_dict({**first, "num_steps": 1}), seed=1)  # warm
        times: dict[str, list[float]] = {"hires": [], "separate": []}
        for _ in range(runs):
            start = time.perf_counter()
            pipe(hires, seed=1)
            times["hires"].append(time.perf_counter() - start)
            start = time.perf_counter()
            separate()
            times["separate"].append(time.perf_counter() - start)
        together, apart = statistics.median(times["hires"]), statistics.median(times["separate"])
        rows.append(Row(f"hires fix ×2 ({upscaler}), SD 1.5 {side}² → {2 * side}², {steps} + {steps // 2} steps",
                        f"txt2img, then img2img of its Lanczos ×2 ({apart:.1f} s)", f"{together:.1f} s",
                        "no slower (within 2%)", together <= apart * 1.02, apart / together))
    about = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch "
             f"{torch.__version__}; {cpu_flags()}. {pipe.pipe.unet.dtype} weights (random). Medians of {runs} runs "
             "of each way, taking turns, after a warm-up.")
    return rows, about


def rows(quick: bool) -> list[Row]:
    measured, about = measure(quick)
    write_report("hires_fix", section_report("Hires fix against two separate jobs", about, measured))
    return measured


def main() -> None:
    rows(parse_quick(__doc__, "128² → 256², 6 steps", "256² → 512², 20 steps"))


if __name__ == "__main__":
    main()
