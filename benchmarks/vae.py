"""VAE speed on CPU: the Stable Diffusion 1.x VAE architecture (random weights, no download) decoding one latent,
plain diffusers in fp32 (the baseline) against bf16 and against Atelier's VAE pipeline as the studio loads it
(its dtype is bf16 only on CPUs with bf16 hardware, AMX or AVX512-BF16); and a decode at twice the native size,
whole against tiled.

Run: `python -m benchmarks.vae --quick` (256², about a minute) or `--full` (512²); writes
benchmarks/results/vae_<side>.md.
"""

from __future__ import annotations

import argparse
import copy
import platform
import tempfile
from pathlib import Path

import torch

from benchmarks.common import matmul_peak, measure_interleaved, ratio_table, write_report
from pipelines.diffusion_utils import cpu_has_fast_bf16
from pipelines.vae import VaeParams, VaePipeline

CONFIGS = Path(__file__).resolve().parent.parent / "assets" / "configs" / "sd15"


def sd_vae(sample_size: int) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    config = {**AutoencoderKL.load_config(CONFIGS / "vae"), "sample_size": sample_size}
    return AutoencoderKL.from_config(config).eval()


def decode(vae: torch.nn.Module, side: int, dtype: torch.dtype, tiled: bool = False) -> callable:
    model = copy.deepcopy(vae).to(dtype=dtype)
    if tiled:
        model.enable_tiling()
    latents = torch.randn(1, 4, side // 8, side // 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    return lambda: model.decode(latents)


def run(side: int, rounds: int) -> str:
    vae = sd_vae(side)
    with tempfile.TemporaryDirectory(prefix="atelier-bench-vae-") as folder:
        vae.save_pretrained(folder)
        pipe = VaePipeline.load(folder, device="cpu")
        params = VaeParams.from_dict({"mode": "sample", "num_images": 1})
        native = measure_interleaved({
            "diffusers decode, fp32": decode(vae, side, torch.float32),
            "diffusers decode, bf16": decode(vae, side, torch.bfloat16),
            f"Atelier VAE pipeline, sample mode ({pipe.vae.dtype})": lambda: pipe(params, seed=0),
        }, rounds=rounds)
    large = measure_interleaved({
        f"fp32 whole at {2 * side}²": decode(vae, 2 * side, torch.float32),
        f"fp32 tiled at {2 * side}² ({side}² tiles)": decode(vae, 2 * side, torch.float32, tiled=True),
    }, rounds=max(1, rounds - 1))
    lines = [f"# VAE decode on CPU ({side}×{side}, SD 1.x VAE architecture, random weights)", "",
             f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}; bf16 hardware (AMX / AVX512-BF16): {cpu_has_fast_bf16()}. Measured matmul peak: "
             f"fp32 {matmul_peak(torch.float32):.0f} GFLOP/s, bf16 {matmul_peak(torch.bfloat16):.0f} GFLOP/s.", "",
             "## One decode at the native size", "", *ratio_table(native[0], native[1:]), "",
             f"## Twice the native size ({2 * side}²): whole against tiled", "",
             *ratio_table(large[0], large[1:]), "",
             "Tiles overlap and are blended, so a tiled decode does more work; what it saves is memory, which grows "
             "with the square of the side when the image is decoded whole."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="256×256, 2 rounds (default)")
    size.add_argument("--full", action="store_true", help="512×512, 3 rounds")
    args = parser.parse_args()
    side, rounds = (512, 3) if args.full else (256, 2)
    report = run(side, rounds)
    write_report(f"vae_{side}", report)


if __name__ == "__main__":
    main()
