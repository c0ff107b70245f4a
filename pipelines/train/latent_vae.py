"""Train the latent autoencoder of the bundled text-to-image model: a small diffusers `AutoencoderKL`,
64×64×3 ↔ 16×16×4, on the emoji + clip-art set.

As in latent diffusion (Rombach et al., CVPR 2022), the KL term is tiny (weight 1e-6): it only keeps the latents
from drifting in scale, the autoencoder's job is to reconstruct. Loss = L1 + MSE on pixels + 1e-6 · KL; AdamW,
batch 32, horizontal flips. Validation PSNR (posterior mode) is logged as it trains. When it stops, the latents'
standard deviation over the training set sets the config's `scaling_factor`, so the diffusion model sees
unit-variance latents (Stable Diffusion's 0.18215 was found the same way).

Run: `python -m pipelines.train.latent_vae --out assets/models/atelier-latent-vae [--minutes 30]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.train.common import (
    Checkpoints,
    Dataset,
    ModelCard,
    Progress,
    base_arguments,
    load_dataset,
    log_line,
    psnr,
    save_grid,
    save_model,
    write_model_card,
)

BATCH = 32
LEARNING_RATE = 1e-3
KL_WEIGHT = 1e-6
EVAL_EVERY = 200  # steps


def build_autoencoder() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, norm_num_groups=32,
        block_out_channels=(32, 64, 128),  # three levels: 64 → 32 → 16, f = 4
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
    )


def loss_of(vae: Any, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    posterior = vae.encode(batch).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator)
    latents = posterior.mean + posterior.std * noise  # the reparameterised sample (B, 4, 16, 16)
    rebuilt = vae.decode(latents).sample
    l1, mse = F.l1_loss(rebuilt, batch), F.mse_loss(rebuilt, batch)
    kl = posterior.kl().mean() / batch[0].numel()  # per pixel, as the pixel losses are
    return l1 + mse + KL_WEIGHT * kl, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


@torch.no_grad()
def validate(vae: Any, images: torch.Tensor) -> tuple[float, torch.Tensor]:
    vae.eval()
    rebuilt = torch.cat([vae.decode(vae.encode(chunk).latent_dist.mode()).sample
                         for chunk in images.split(64)])
    vae.train()
    return psnr(rebuilt, images), rebuilt


@torch.no_grad()
def latent_scale(vae: Any, images: torch.Tensor) -> float:
    """1 / std of the posterior means over `images`: the factor that makes the latents unit-variance."""
    vae.eval()
    latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in images.split(128)])
    return float(1.0 / latents.std())


LossFn = Callable[[Any, torch.Tensor, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


def train_autoencoder(args: argparse.Namespace, vae: Any, loss_fn: LossFn) -> tuple[Any, Dataset, dict[str, Any]]:
    """The loop both autoencoders share: AdamW, flips, validation PSNR and grids, resumable checkpoints.
    Returns the trained model, the data and the facts of the run."""
    torch.manual_seed(args.seed)
    data = load_dataset(args.data, args.limit)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed)
    checkpoints = Checkpoints(args.work, {"model": vae, "optimiser": optimiser}, generator)
    step, minutes_before = checkpoints.resume()
    train = torch.tensor(data.train)
    validation = data.images[data.validation]
    progress = Progress(args.steps, args.minutes, step)

    vae.train()
    while (args.steps is None or step < args.steps) and progress.elapsed_minutes() < args.minutes:
        batch = data.images[train[torch.randint(len(train), (args.batch,), generator=generator)]]
        flip = torch.rand(args.batch, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        loss, parts = loss_fn(vae, batch, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        progress.update(step, args.batch, parts)
        if step % EVAL_EVERY == 0:
            value, rebuilt = validate(vae, validation)
            log_line(args.work, {"step": step, "minutes": minutes_before + progress.elapsed_minutes(),
                                 "val_psnr": value, **parts})
            save_grid(args.work / "samples" / f"step_{step:06d}.png", torch.cat([validation[:16], rebuilt[:16]]))
        checkpoints.save_now_and_then(step, minutes_before + progress.elapsed_minutes())
    trained = minutes_before + progress.elapsed_minutes()  # training time: the final checks below do not count
    checkpoints.save(step, trained)
    value, rebuilt = validate(vae, validation)
    save_grid(args.work / "reconstructions.png", torch.cat([validation[:16], rebuilt[:16]]))
    facts = {"steps": step, "batch": args.batch, "minutes": round(trained, 1),
             "val_psnr_db": round(value, 2), "seed": args.seed, "train_images": len(data.train),
             "validation_images": len(data.validation)}
    return vae.eval(), data, facts


def main() -> None:
    args = base_arguments("latent_vae", __doc__, BATCH).parse_args()
    vae, data, facts = train_autoencoder(args, build_autoencoder(), loss_of)
    vae.register_to_config(scaling_factor=latent_scale(vae, data.images[data.train[:2048]]))
    facts["scaling_factor"] = vae.config.scaling_factor
    save_model(vae, args.out, facts)
    shutil.copy(args.work / "reconstructions.png", args.out / "reconstructions.png")
    write_model_card(args.out, CARD, vae, facts, args.data)
    print("\n" + json.dumps(facts, indent=2))  # noqa: T201 -- a CLI report


CARD = ModelCard(
    title="Atelier latent autoencoder (emoji + clip art)",
    description="KL autoencoder 64×64×3 ↔ 16×16×4: the latent space of the bundled text-to-image model",
    architecture="diffusers `AutoencoderKL`, three levels (32/64/128 channels, one ResNet block each, attention "
                 "in the middle block), 4 latent channels, f = 4. Loss: L1 + MSE + 1e-6 × KL (as latent "
                 "diffusion); `scaling_factor` = 1 / std of the training latents.",
    command="python -m pipelines.train.latent_vae --out assets/models/atelier-latent-vae",
    limits="Made for reconstruction, not sampling: noise from N(0, I) decodes to texture (use "
           "atelier-emoji-vae to sample). Fine lines and small text in clip art blur at 64 px.",
    images=(("reconstructions.png", "validation images (top two rows) and their reconstructions (bottom two)"),),
)


if __name__ == "__main__":
    main()
