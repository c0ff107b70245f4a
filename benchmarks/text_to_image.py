"""Text-to-image speed on CPU: the SD 1.5 architectures with random weights (no download), diffusers' plain fp32
defaults against what Atelier's pipeline chooses, per UNet step (CFG batch 2), per VAE decode and per image.

Run: `python -m benchmarks.text_to_image --quick` (256², a minute) or `--full` (512², several minutes).
"""

from __future__ import annotations

import argparse
import copy
import platform
from pathlib import Path

import torch

from benchmarks.common import Row, matmul_peak, measure_interleaved, ratio_table, write_report
from pipelines.diffusion_utils import cpu_has_fast_bf16, pick_dtype

CONFIGS = Path(__file__).resolve().parent.parent / "assets" / "configs" / "sd15"
UNET_GFLOP_512_CFG = 2 * 2 * 338.0  # ≈ 2 × MACs of one SD1.5 UNet pass at 64×64 latents (~338 GMAC), batch 2


def build_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The SD 1.5 UNet and VAE with random weights (the speed does not depend on them; nothing is downloaded)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "unet")).eval()
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "vae")).eval()
    return unet, vae


def variants(auto: torch.dtype) -> dict[str, tuple[torch.dtype, bool]]:
    """name → (dtype, channels_last for the UNet). The first is the baseline: diffusers' defaults on CPU; the
    second is what Atelier's pipeline does on this machine (the same as the baseline where bf16 is slow, which
    shows the run's noise)."""
    return {
        "diffusers fp32 default": (torch.float32, False),
        f"Atelier auto ({str(auto).removeprefix('torch.')})": (auto, False),
        "fp32 channels_last": (torch.float32, True),
        "bf16": (torch.bfloat16, False),
        "bf16 channels_last": (torch.bfloat16, True),
    }


def unet_step(unet: torch.nn.Module, side: int, dtype: torch.dtype, channels_last: bool) -> callable:
    model = copy.deepcopy(unet).to(dtype=dtype)  # one copy per variant: they run interleaved
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    latents = torch.randn(2, 4, side // 8, side // 8, dtype=dtype)  # (B=2 for CFG, C, H, W)
    if channels_last:
        latents = latents.to(memory_format=torch.channels_last)
    context = torch.randn(2, 77, 768, dtype=dtype)  # (B, tokens, D)
    t = torch.tensor([500, 500])
    return lambda: model(latents, t, encoder_hidden_states=context)


def vae_decode(vae: torch.nn.Module, side: int, dtype: torch.dtype) -> callable:
    model = copy.deepcopy(vae).to(dtype=dtype)
    latents = torch.randn(1, 4, side // 8, side // 8, dtype=dtype)
    return lambda: model.decode(latents)


UNET_TARGET, VAE_TARGET, PEAK_TARGET = 4.0, 2.5, 0.5  # speed-ups over diffusers' fp32 defaults; share of bf16 peak


def rows(quick: bool) -> list[Row]:
    """The suite's lines: one UNet step and one VAE decode, diffusers' fp32 defaults against Atelier's choice."""
    side, runs = (128, 2) if quick else (512, 3)
    unet, vae = build_models()
    auto = pick_dtype("cpu")
    peak = matmul_peak(auto)
    chosen = dict(list(variants(auto).items())[:2])  # the baseline and what Atelier runs
    u = measure_interleaved({n: unet_step(unet, side, d, cl) for n, (d, cl) in chosen.items()}, rounds=runs)
    v = measure_interleaved({n: vae_decode(vae, side, d) for n, (d, _) in chosen.items()}, rounds=runs)
    rate = UNET_GFLOP_512_CFG * (side / 512) ** 2 / u[1].seconds
    why = "" if cpu_has_fast_bf16() else (
        "this CPU has no AMX or AVX512-BF16, so bf16 is emulated and slower than fp32 (see text_to_image report): "
        "Atelier stays on fp32, which runs at the speed of diffusers' own default")
    dtype = str(auto).removeprefix("torch.")
    return [
        Row(f"SD 1.5 UNet step {side}², CFG batch 2 (random weights)", "diffusers defaults, fp32",
            f"{u[1].seconds:.2f} s vs {u[0].seconds:.2f} s ({dtype}); {rate:.0f} GFLOP/s = {rate / peak:.0%} of the "
            f"{dtype} matmul peak", f"≥ {UNET_TARGET:.0f}× and ≥ {PEAK_TARGET:.0%} of the bf16 peak",
            u[0].seconds / u[1].seconds >= UNET_TARGET and rate / peak >= PEAK_TARGET and auto == torch.bfloat16,
            u[0].seconds / u[1].seconds, why),
        Row(f"SD VAE decode {side}²", "diffusers, fp32", f"{v[1].seconds:.2f} s vs {v[0].seconds:.2f} s ({dtype})",
            f"≥ {VAE_TARGET}×", v[0].seconds / v[1].seconds >= VAE_TARGET, v[0].seconds / v[1].seconds, why),
    ]


def run(side: int, runs: int, steps: int) -> str:
    unet, vae = build_models()
    auto = pick_dtype("cpu")
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    lines = [f"# Text-to-image on CPU ({side}×{side}, SD 1.5 architecture, random weights)", "",
             f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}; bf16 hardware (AMX / AVX512-BF16): {cpu_has_fast_bf16()}.",
             f"Measured matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s.", ""]
    chosen = variants(auto)
    results = {
        "unet": measure_interleaved({n: unet_step(unet, side, d, cl) for n, (d, cl) in chosen.items()}, rounds=runs),
        "vae": measure_interleaved({n: vae_decode(vae, side, d) for n, (d, _) in chosen.items()}, rounds=runs),
    }
    for part, title in (("unet", "UNet step (CFG batch 2)"), ("vae", "VAE decode")):
        lines += [f"## {title}", "", *ratio_table(results[part][0], results[part][1:]), ""]
    gflop = UNET_GFLOP_512_CFG * (side / 512) ** 2
    lines += ["## Per image", "", f"{steps} steps + one decode; fraction of the matching matmul peak for the UNet.",
              "", "| variant | seconds per image | speed vs baseline | UNet GFLOP/s | of peak |",
              "|---|---|---|---|---|"]
    base = steps * results["unet"][0].seconds + results["vae"][0].seconds
    for u, v in zip(results["unet"], results["vae"], strict=True):
        per_image = steps * u.seconds + v.seconds
        rate = gflop / u.seconds
        peak = peak16 if "bf16" in u.name else peak32
        lines.append(f"| {u.name} | {per_image:.1f} | {base / per_image:.2f}× | {rate:.0f} | {rate / peak:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="256×256, 2 runs each (default)")
    size.add_argument("--full", action="store_true", help="512×512, 3 runs each")
    args = parser.parse_args()
    side, runs = (512, 3) if args.full else (256, 2)
    report = run(side, runs, steps=20)
    write_report(f"text_to_image_{side}", report)


if __name__ == "__main__":
    main()
