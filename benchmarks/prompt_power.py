"""Prompt power on the SD 1.5 architecture with random weights (nothing downloaded): a job with two LoRAs against
the same job without, both with the model hot; the first job with a new LoRA against reading its file; and the
prompt syntax of a 300-token prompt against tokenizing it.

Baselines (same run): the job without LoRAs; reading the LoRA file from disk; the CLIP tokenizer on the same text.
Targets: overhead ≤ 5%; first use ≤ read + 1 s; parsing ≤ 5 ms. The LoRAs are kohya-format files of rank 16 on
every attention projection of the UNet and the text encoder (random factors).

Run: `python -m benchmarks.prompt_power --quick` (256², 6 steps: a smoke run; the default) or `--full` (512², 20
steps, as the targets say); writes benchmarks/results/prompt_power.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Row, cpu_flags, parse_quick, section_report, write_report
from benchmarks.common import median_seconds as seconds
from benchmarks.text_to_image import CONFIGS, _random
from pipelines.prompts.encoding import clip_conditioning
from pipelines.prompts.networks import network_tags
from pipelines.prompts.syntax import emphasis, schedule
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_lora

PROMPT = ", ".join(f"(detailed {w}:1.1) [soft|sharp] light" for w in ("castle", "forest", "river", "sky") * 5)
TARGET_OVERHEAD, TARGET_FIRST_S, TARGET_PARSE_MS = 0.05, 1.0, 5.0


def sd15_pipeline() -> TextToImagePipeline:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder")).eval()  # its own init
    pipe = StableDiffusionPipeline(
        vae=_random(AutoencoderKL, "vae"), text_encoder=encoder, unet=_random(UNet2DConditionModel, "unet"),
        tokenizer=CLIPTokenizer.from_pretrained(CONFIGS / "tokenizer"),
        scheduler=EulerDiscreteScheduler.from_pretrained(CONFIGS / "scheduler"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    return TextToImagePipeline(pipe, device="cpu", source="random sd15", model_hash=None)


def measure(quick: bool) -> tuple[list[Row], str]:
    side, steps, runs = (256, 6, 3) if quick else (512, 20, 2)
    pipe = sd15_pipeline()
    params = {"prompt": "a castle by a river", "width": side, "height": side, "num_steps": steps,
              "sampler": "Euler"}
    with tempfile.TemporaryDirectory() as tmp:
        files = {f"lora:{name}": str(save_tiny_lora(Path(tmp) / f"{name}.safetensors", pipe.pipe, seed=seed,
                                                     scale=0.01, rank=16)) for name, seed in (("a", 1), ("b", 2))}
        plain = TextToImageParams.from_dict(params)
        tagged = TextToImageParams.from_dict({**params, "prompt": params["prompt"] + " <lora:a:0.8> <lora:b:0.5>"})

        def read() -> None:
            Path(files["lora:a"]).read_bytes()

        read_s = seconds(read, 3)
        # a 1-step job at 256² (the LoRA's load does not depend on the size), before and after the one that loads it
        small = {**params, "num_steps": 1, "width": 256, "height": 256}
        one = TextToImageParams.from_dict({**small, "prompt": "x <lora:a:1>"})
        one_plain = TextToImageParams.from_dict({**small, "prompt": "x"})
        pipe(one_plain, seed=1)  # warm at that size
        before = seconds(lambda: pipe(one_plain, seed=1), 1)
        start = time.perf_counter()
        pipe(one, seed=1, files=files)  # loads LoRA a: the first job that names it
        first_s = time.perf_counter() - start
        plain_one_s = (before + seconds(lambda: pipe(one_plain, seed=1), 1)) / 2
        warm = TextToImageParams.from_dict({**params, "num_steps": 1, "prompt": tagged.prompt})
        pipe(warm, seed=1, files=files)  # warm: both adapters loaded
        # the two jobs take turns, so a machine that slows down or speeds up meanwhile slows both alike
        times: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(runs):
            times["without"].append(seconds(lambda: pipe(plain, seed=1), 1))
            times["with"].append(seconds(lambda: pipe(tagged, seed=1, files=files), 1))
        without, with_loras = (statistics.median(times[key]) for key in ("without", "with"))
    tokenizer = pipe.pipe.tokenizer
    tokens = len(tokenizer(PROMPT, add_special_tokens=False).input_ids)
    tokenize_ms = seconds(lambda: tokenizer(PROMPT, add_special_tokens=False), 20) * 1000
    # as the encoder does it: the schedule of the steps, then the weights of each different text once
    parse_ms = seconds(lambda: [emphasis(text) for text in {t for _, t in schedule(network_tags(PROMPT)[0], steps)}],
                       20) * 1000
    encode_ms = seconds(lambda: clip_conditioning(pipe.pipe, PROMPT, "", steps, 1, []), 3) * 1000
    overhead = with_loras / without - 1
    extra = first_s - plain_one_s
    rows = [
        Row(f"job with two LoRAs, SD 1.5 {side}², {steps} steps (random weights)",
            f"the same job without ({without:.1f} s)", f"{with_loras:.1f} s ({overhead:+.1%})",
            f"≤ {TARGET_OVERHEAD:.0%} overhead", overhead <= TARGET_OVERHEAD, without / with_loras),
        Row("first job with a new LoRA (rank 16, every attention projection; a 1-step 256² job)",
            f"reading the file ({read_s * 1000:.0f} ms)", f"{extra:.2f} s more than the same 1-step job without it",
            f"≤ read + {TARGET_FIRST_S:.0f} s", extra <= read_s + TARGET_FIRST_S),
        Row(f"prompt syntax of a {tokens}-token prompt (weights, alternation, tags)",
            f"CLIP tokenizer on it ({tokenize_ms:.1f} ms)", f"{parse_ms:.2f} ms (the whole conditioning with the "
            f"encoder: {encode_ms:.0f} ms)", f"≤ {TARGET_PARSE_MS:.0f} ms", parse_ms <= TARGET_PARSE_MS,
            tokenize_ms / parse_ms),
    ]
    about = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch "
             f"{torch.__version__}; {cpu_flags()}. {pipe.pipe.unet.dtype} weights. Medians of {runs} jobs of each "
             "kind, taking turns, after a warm-up.")
    return rows, about


def rows(quick: bool) -> list[Row]:
    measured, about = measure(quick)
    write_report("prompt_power", section_report("Prompt power: LoRAs and the prompt syntax", about, measured))
    return measured


def main() -> None:
    rows(parse_quick(__doc__, "256², 6 steps", "512², 20 steps"))


if __name__ == "__main__":
    main()
