"""Text-to-image speed on CPU: the SD 1.5 architectures with random weights (no download), diffusers' plain fp32
defaults against what Atelier's pipeline chooses, per UNet step (CFG batch 2), per VAE decode and per image.

Run: `python -m benchmarks.text_to_image --quick` (256², a minute) or `--full` (512², several minutes).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import Row, matmul_peak, measure_interleaved, ratio_table, write_report
from pipelines.diffusion_utils import cpu_has_fast_bf16, pick_dtype

CONFIGS = Path(__file__).resolve().parent.parent / "assets" / "configs" / "sd15"
UNET_GFLOP_512_CFG = 2 * 2 * 338.0  # ≈ 2 × MACs of one SD1.5 UNet pass at 64×64 latents (~338 GMAC), batch 2


def build_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The SD 1.5 UNet and VAE with random weights (the speed does not depend on them; nothing is downloaded)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return _random(UNet2DConditionModel, "unet"), _random(AutoencoderKL, "vae")


def _random(cls: type, name: str) -> torch.nn.Module:
    """A model built without torch's own initialisation (10 s for the UNet here), then filled at the same scales:
    matrices and kernels uniform within ±1/√fan-in as torch's default, norm scales 1, biases 0. Activations keep
    their usual size, so no denormal numbers slow a variant down."""
    with torch.device("meta"):
        model = cls.from_config(cls.load_config(CONFIGS / name))
    model = model.to_empty(device="cpu").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if p.dim() > 1:
                bound = 1 / math.sqrt(p[0].numel())
                p.uniform_(-bound, bound, generator=generator)
            else:
                p.fill_(1.0 if key.endswith("weight") else 0.0)
    return model


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


def converted(model: torch.nn.Module, dtype: torch.dtype, channels_last: bool = False) -> torch.nn.Module:
    """`model` itself when it already runs as asked, else a converted copy (variants run interleaved, each with
    its own weights; copying the UNet takes ~13 s here, so variants that need no conversion share it)."""
    if dtype == next(model.parameters()).dtype and not channels_last:
        return model
    model = copy.deepcopy(model).to(dtype=dtype)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def unet_step(unet: torch.nn.Module, side: int, dtype: torch.dtype, channels_last: bool) -> callable:
    model = converted(unet, dtype, channels_last)
    latents = torch.randn(2, 4, side // 8, side // 8, dtype=dtype)  # (B=2 for CFG, C, H, W)
    if channels_last:
        latents = latents.to(memory_format=torch.channels_last)
    context = torch.randn(2, 77, 768, dtype=dtype)  # (B, tokens, D)
    t = torch.tensor([500, 500])
    return lambda: model(latents, t, encoder_hidden_states=context)


def vae_decode(vae: torch.nn.Module, side: int, dtype: torch.dtype) -> callable:
    model = converted(vae, dtype)
    latents = torch.randn(1, 4, side // 8, side // 8, dtype=dtype)
    return lambda: model.decode(latents)


UNET_TARGET, VAE_TARGET, PEAK_TARGET = 4.0, 2.5, 0.5  # speed-ups over diffusers' fp32 defaults; share of bf16 peak


def rows(quick: bool) -> list[Row]:
    """The suite's lines: one UNet step and one VAE decode, diffusers' fp32 defaults against Atelier's choice."""
    side, runs = (128, 1) if quick else (512, 3)  # quick: a smoke run; one round after the warm-up
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
        # at a quarter of the area and one round: the suite has 15 minutes; quick: spent elsewhere
        *([] if quick else sweep(unet, side // 2, 1, auto)),
    ]


def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def sweep(unet: torch.nn.Module, side: int, runs: int, dtype: torch.dtype) -> list[Row]:
    """The other CPU levers on Atelier's UNet step, each against the step as Atelier runs it: fewer threads (one
    per core is torch's default), and channels_last memory format (measured last: it converts `unet` in place)."""
    threads = torch.get_num_threads()
    step = unet_step(unet, side, dtype, channels_last=False)
    fewer = max(1, threads // 2)
    t = measure_interleaved({"default": step, "fewer": with_threads(fewer, step)}, rounds=runs)
    unet.to(memory_format=torch.channels_last)
    c = measure_interleaved({"channels_last": unet_step(unet, side, dtype, channels_last=True)}, rounds=runs)[0]
    name = str(dtype).removeprefix("torch.")
    return [
        Row(f"UNet step {side}² on {fewer} thread(s) instead of {threads}", f"the same step on {threads} threads "
            f"({name})", f"{t[1].seconds:.2f} s vs {t[0].seconds:.2f} s", "reported (keep what wins)", None,
            t[0].seconds / t[1].seconds, f"Atelier keeps torch's default of {threads} threads"
            if t[0].seconds <= t[1].seconds else "fewer threads won here: a busy machine?"),
        Row(f"UNet step {side}² in channels_last memory format", f"the same step, default format ({name})",
            f"{c.seconds:.2f} s vs {t[0].seconds:.2f} s (run after it)", "reported (keep what wins)", None,
            t[0].seconds / c.seconds, "within noise or slower: Atelier's text-to-image keeps the default format"
            if c.seconds >= 0.95 * t[0].seconds else "faster here: worth switching the pipeline to it"),
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
