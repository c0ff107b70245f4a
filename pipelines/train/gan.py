"""Train the bundled emoji + clip-art GAN: a DCGAN (Radford et al., ICLR 2016) at 64×64.

The generator is Atelier's `DCGANGenerator` (pipelines/nets/gan_dcgan.py), so the result loads in the GAN tab like
any model folder. The discriminator mirrors it (strided convolutions, batch norm, LeakyReLU 0.2) and is only
needed here. Training follows the paper: Adam (lr 2e-4, β1 0.5), batch 64, weights from N(0, 0.02), the
non-saturating loss; real labels are smoothed to 0.9 (Salimans et al., 2016), which steadies small-data runs.
Horizontal flips double the data.

When it stops it reports a diversity measure: the mean pairwise distance between samples in the latent space
of the bundled autoencoder (`--vae`), beside the same measure on real images (a collapsed GAN scores far lower).

Run: `python -m pipelines.train.gan --out assets/models/atelier-emoji-gan [--minutes 45]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.nets.gan_dcgan import DCGANGenerator
from pipelines.train.common import (
    Checkpoints,
    ModelCard,
    Progress,
    base_arguments,
    load_dataset,
    log_line,
    save_grid,
    save_model,
    write_model_card,
)

BATCH = 64
LEARNING_RATE = 2e-4
BETAS = (0.5, 0.999)
REAL_LABEL = 0.9
CHANNELS = 48  # base channels of generator and discriminator: sized so a run of ~45 min sees ~30 epochs on 2 cores
LATENT_DIM = 100
SAMPLE_EVERY = 300  # steps
DIVERSITY_SAMPLES = 500


CARD = ModelCard(
    title="Atelier emoji GAN",
    description="DCGAN, 64×64 emoji and clip art",
    architecture=f"Atelier's `DCGANGenerator` (latent 100, base {CHANNELS} channels: transposed convolutions "
                 "4 → 64 px with batch norm and ReLU, tanh out); trained against a mirrored strided-convolution "
                 "discriminator with the non-saturating loss, Adam 2e-4 (β1 0.5), real labels 0.9.",
    command="python -m pipelines.train.gan --out assets/models/atelier-emoji-gan",
    limits="Small data (about 8,000 pictures) and a short training: shapes and palettes are emoji-like, details "
           "are often garbled. The diversity figures compare mean pairwise latent distances (higher = more "
           "varied) of samples and of real images.",
    images=(("samples.png", "64 samples (seed 7)"),),
)


class Discriminator(nn.Module):
    """64×64 image → one logit: four stride-2 convolutions (64 → 4), then a 4×4 convolution to 1×1."""

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for i in range(3):
            width = channels * 2**i
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(channels * 8, 1, 4, 1, 0, bias=False))  # (B, 1, 1, 1)
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: convolutions from N(0, 0.02), batch-norm scales from N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def train_step(generator: DCGANGenerator, discriminator: Discriminator, optimisers: tuple[Any, Any],
               real: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
    g_opt, d_opt = optimisers
    z = torch.randn(len(real), LATENT_DIM, generator=rng)
    fake = generator(z)
    # 1. discriminator: real → 0.9, fake → 0
    d_real, d_fake = discriminator(real), discriminator(fake.detach())
    d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, REAL_LABEL))
              + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    # 2. generator: make the discriminator call its images real (the non-saturating loss)
    g_scores = discriminator(fake)
    g_loss = F.binary_cross_entropy_with_logits(g_scores, torch.ones_like(g_scores))
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    return {"d": d_loss.item(), "g": g_loss.item(), "d_real": torch.sigmoid(d_real).mean().item()}


@torch.no_grad()
def diversity(vae_folder: Path, images: torch.Tensor) -> float:
    """Mean pairwise L2 distance of the images' latents (posterior modes) in the bundled autoencoder."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(vae_folder, dtype=torch.float32).eval()
    latents = torch.cat([vae.encode(chunk).latent_dist.mode().flatten(1) for chunk in images.split(100)])
    return float(torch.pdist(latents).mean())


def main() -> None:
    parser = base_arguments("gan", __doc__, BATCH)
    parser.add_argument("--vae", type=Path, default=Path("assets/models/atelier-latent-vae"),
                        help="the autoencoder whose latent space measures diversity (skipped when missing)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = load_dataset(args.data, args.limit)
    generator = DCGANGenerator(latent_dim=LATENT_DIM, base_channels=CHANNELS, image_size=64)
    discriminator = Discriminator()
    generator.apply(init_weights)
    discriminator.apply(init_weights)
    optimisers = (torch.optim.Adam(generator.parameters(), LEARNING_RATE, betas=BETAS),
                  torch.optim.Adam(discriminator.parameters(), LEARNING_RATE, betas=BETAS))
    rng = torch.Generator().manual_seed(args.seed)
    fixed = torch.randn(64, LATENT_DIM, generator=torch.Generator().manual_seed(args.seed + 1))
    checkpoints = Checkpoints(args.work, {"generator": generator, "discriminator": discriminator,
                                          "generator_optimiser": optimisers[0],
                                          "discriminator_optimiser": optimisers[1]}, rng)
    step, minutes_before = checkpoints.resume()
    train = torch.tensor(data.train)
    progress = Progress(args.steps, args.minutes, step)

    generator.train()
    while (args.steps is None or step < args.steps) and progress.elapsed_minutes() < args.minutes:
        real = data.images[train[torch.randint(len(train), (args.batch,), generator=rng)]]
        flip = torch.rand(args.batch, generator=rng) < 0.5
        real = torch.where(flip[:, None, None, None], real.flip(-1), real)
        losses = train_step(generator, discriminator, optimisers, real, rng)
        step += 1
        progress.update(step, args.batch, losses)
        if step % SAMPLE_EVERY == 0:
            generator.eval()
            with torch.no_grad():
                save_grid(args.work / "samples" / f"step_{step:06d}.png", generator(fixed))
            generator.train()
            log_line(args.work, {"step": step, "minutes": minutes_before + progress.elapsed_minutes(), **losses})
        checkpoints.save_now_and_then(step, minutes_before + progress.elapsed_minutes())
    checkpoints.save(step, minutes_before + progress.elapsed_minutes())
    generator.eval()
    count = min(DIVERSITY_SAMPLES, len(train))  # as many fakes as real images: the two means compare fairly
    with torch.no_grad():
        z = torch.randn(max(count, 64), LATENT_DIM, generator=torch.Generator().manual_seed(7))
        samples = generator(z)
    epochs = round(step * args.batch / len(data.train), 1)
    facts: dict[str, Any] = {"steps": step, "batch": args.batch, "epochs": epochs,
                             "minutes": round(minutes_before + progress.elapsed_minutes(), 1), "seed": args.seed,
                             "base_channels": CHANNELS, "train_images": len(data.train)}
    if args.vae.is_dir():
        real = data.images[train[:count]]
        facts["diversity_samples"] = round(diversity(args.vae, samples[:count]), 3)
        facts["diversity_real"] = round(diversity(args.vae, real), 3)
    save_model(generator, args.out, facts)
    save_grid(args.out / "samples.png", samples[:64])
    write_model_card(args.out, CARD, generator, facts, args.data)
    print("\n" + json.dumps(facts, indent=2))  # noqa: T201 -- a CLI report


if __name__ == "__main__":
    main()
