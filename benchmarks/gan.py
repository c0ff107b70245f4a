"""GAN sampling speed: the bare DCGAN generator (the baseline) against the same network as Atelier runs it —
the pipeline (per-seed noise, PIL images, the grid) and the whole studio (queue, worker, gallery write).

The issue's target is 500 images/s for 64×64 batch sampling on this CPU; the report says whether it is met and
how much the studio's layers cost on top of the network. Uses the DigiFace-1M faces when `gan-face-generate` is
installed, else the same architecture with random weights (the speed is the same).

Run: `python -m benchmarks.gan [--quick|--full]`; writes benchmarks/results/gan.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Row, Timing, matmul_peak, measure_interleaved, ratio_table, write_report
from pipelines.gan import FACES_PACKAGE, GanParams, GanPipeline, load_faces_generator
from pipelines.nets.gan_dcgan import DCGANGenerator

TARGET_IMAGES_PER_S = 500
GFLOP_PER_IMAGE = 0.21  # the 64×64 DCGAN generator: about 105 M multiply-adds per image
BATCH = 256


def load_pipeline() -> tuple[GanPipeline, str, DCGANGenerator]:
    """(the pipeline as the studio loads it, the model's name, the plain generator as saved)."""
    if importlib.util.find_spec(FACES_PACKAGE):
        source, name = f"package:{FACES_PACKAGE}", "DigiFace-1M faces (gan-face-generate)"
        plain = load_faces_generator()
    else:
        torch.manual_seed(0)
        name, plain = "DCGAN 64×64, random weights", DCGANGenerator().eval()
        source = tempfile.mkdtemp(prefix="atelier-bench-gan-")
        plain.save_pretrained(source)
    return GanPipeline.load(source, device="cpu"), name, plain


def raw(generator: torch.nn.Module, count: int, channels_last: bool, batch: int = BATCH) -> callable:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = copy.deepcopy(generator).to(memory_format=layout)
    z = torch.randn(count, generator.latent_dim)

    def run() -> None:
        for start in range(0, count, batch):
            model(z[start:start + batch])
    return run


def studio_seconds(count: int, rounds: int) -> float:
    """Median wall time of one grid job of `count` images through the queue, a worker thread and the gallery."""
    from studio.config import StudioConfig
    from studio.services import build_services

    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as data:
        config = StudioConfig(data_dir=Path(data), devices="cpu", open_browser=False, in_process_workers=True,
                              log_level="warning")
        services = build_services(config)
        services.start()
        try:
            model = services.catalog.models("gan")[0].id
            times = []
            for i in range(rounds + 1):  # the first job also loads the model: not counted
                start = time.perf_counter()
                job = services.generation.submit("gan", model, {"num_images": count}, i)
                while not services.queue.get(job.id).status.finished:
                    time.sleep(0.01)
                times.append(time.perf_counter() - start)
            return sorted(times[1:])[len(times[1:]) // 2]
        finally:
            services.stop()


def rows(quick: bool) -> list[Row]:
    """The suite's lines: the raw generator forward in batches of 64 against the pipeline and the whole studio."""
    count, rounds = (256, 2) if quick else (1024, 5)
    pipe, _, plain = load_pipeline()
    params = GanParams.from_dict({"num_images": count})
    raw64, piped = measure_interleaved({"raw": raw(plain, count, channels_last=False, batch=64),
                                        "pipeline": lambda: pipe(params, seed=0)}, rounds=rounds)
    studio = studio_seconds(count, rounds)
    rate = count / piped.seconds
    overhead = studio / raw64.seconds - 1
    return [
        Row(f"GAN sampling 64×64, {count} images", "raw generator forward, batches of 64",
            f"{rate:.0f} images/s in the pipeline, {count / raw64.seconds:.0f} raw",
            f"≥ {TARGET_IMAGES_PER_S} images/s",
            rate >= TARGET_IMAGES_PER_S, raw64.seconds / piped.seconds,
            f"the machine's fp32 matmul peak allows at most {matmul_peak(torch.float32) / GFLOP_PER_IMAGE:.0f} "
            "images/s for this network"),
        Row(f"GAN sampling through the studio ({count} images in one grid job)", "raw generator forward",
            f"{studio:.2f} s vs {raw64.seconds:.2f} s: {overhead:+.0%}", "overhead ≤ 10%", overhead <= 0.10,
            raw64.seconds / studio, "most of the studio's extra time is compressing the grid PNG it saves"),
    ]


def run(count: int, rounds: int) -> str:
    pipe, model_name, plain = load_pipeline()
    params = GanParams.from_dict({"num_images": count})
    timings = measure_interleaved({
        "bare generator, fp32": raw(plain, count, channels_last=False),
        "bare generator, channels-last": raw(plain, count, channels_last=True),
        "bare generator, channels-last + batch norm folded (Atelier's network)": raw(plain.for_inference(), count,
                                                                                   channels_last=True),
        "Atelier pipeline (noise per seed, images, grid)": lambda: pipe(params, seed=0),
    }, rounds=rounds)
    timings.append(Timing("Atelier studio (queue, worker, gallery PNG + thumbnail)", studio_seconds(count, rounds),
                          rounds))
    rate = {t.name: count / t.seconds for t in timings}
    pipeline_rate = rate["Atelier pipeline (noise per seed, images, grid)"]
    verdict = "met" if pipeline_rate >= TARGET_IMAGES_PER_S else "NOT met"
    peak = matmul_peak(torch.float32)
    ceiling = peak / GFLOP_PER_IMAGE
    lines = [f"# GAN sampling on CPU ({count} images of 64×64 per run)", "",
             f"Model: {model_name}. Machine: {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}.", "",
             *ratio_table(timings[0], timings[1:]), "", "| variant | images/s |", "|---|---|",
             *(f"| {name} | {value:.0f} |" for name, value in rate.items()), "",
             f"Target {TARGET_IMAGES_PER_S} images/s for batch sampling: {verdict} ({pipeline_rate:.0f} images/s in "
             "the pipeline). The studio row adds the queue round trip and storing the grid: most of it is zlib "
             "compressing the grid PNG (about 1.6 s for the 4.5-megapixel grid of 1,024 faces).", "",
             f"Ceiling: this machine's fp32 matmul peak is {peak:.0f} GFLOP/s, so even at 100% of it the network "
             f"could make at most {ceiling:.0f} images/s; the pipeline runs at "
             f"{pipeline_rate * GFLOP_PER_IMAGE / peak:.0%} of that peak."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="512 images, 3 rounds (default)")
    size.add_argument("--full", action="store_true", help="1024 images, 5 rounds")
    args = parser.parse_args()
    count, rounds = (1024, 5) if args.full else (512, 3)
    report = run(count, rounds)
    write_report("gan", report)


if __name__ == "__main__":
    main()
