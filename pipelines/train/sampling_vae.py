"""Train the bundled sampling VAE of the VAE tab: a diffusers `AutoencoderKL` whose prior gives coherent pictures.

The latent autoencoder of the text-to-image model keeps 1,024 numbers per image and a negligible KL term, so
noise drawn from N(0, I) decodes to texture. This one is a true VAE (Kingma & Welling, ICLR 2014): five levels
(64 → 4), an 8-channel 4×4 latent (128 numbers), and the full evidence lower bound as the loss — a Gaussian
likelihood of the pixels (σ = 0.1 on the [−1, 1] scale) plus the KL divergence to the prior, both summed per
image. The price of a prior that decodes to emoji-like pictures is blur. The ELBO on the validation images is
reported in nats per image and bits per dimension.

It is the same class as every other VAE, so the VAE tab samples, reconstructs and interpolates it by the same
code path. Run: `python -m pipelines.train.sampling_vae --out assets/models/atelier-emoji-vae [--minutes 45]`.
"""

from __future__ import annotations

import json
import math
import shutil
from typing import Any

import torch

from pipelines.train.common import ModelCard, base_arguments, save_grid, save_model, write_model_card
from pipelines.train.latent_vae import train_autoencoder

BATCH = 32
SIGMA = 0.1  # the decoder's fixed standard deviation on the [−1, 1] pixel scale
PRIOR_SAMPLES = 64


CARD = ModelCard(
    title="Atelier emoji VAE",
    description="variational autoencoder with a 128-number latent whose prior samples look like emoji and clip art",
    architecture="diffusers `AutoencoderKL`, five levels (32/64/128/128/128 channels, one ResNet block each), "
                 "8 latent channels at 4×4, f = 16. Loss: the negative ELBO (Gaussian pixels, σ = 0.1, plus KL).",
    command="python -m pipelines.train.sampling_vae --out assets/models/atelier-emoji-vae",
    limits="Blurry: a 128-number bottleneck keeps shapes and colours, not fine detail. Sample at the native 64×64; "
           "larger sizes repeat the 4×4 latent grid's structure.",
    images=(("prior_samples.png", "64 samples of the prior, z ~ N(0, I)"),
            ("reconstructions.png", "validation images (top two rows) and their reconstructions (bottom two)")),
)


def build_autoencoder() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=8, sample_size=64, norm_num_groups=16,
        block_out_channels=(32, 64, 128, 128, 128),  # 64 → 32 → 16 → 8 → 4
        down_block_types=("DownEncoderBlock2D",) * 5, up_block_types=("UpDecoderBlock2D",) * 5,
        layers_per_block=1,
    )


def negative_elbo(vae: Any, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """(−ELBO per pixel, the parts per image in nats): reconstruction NLL + KL, from one posterior sample."""
    posterior = vae.encode(batch).latent_dist
    latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
    rebuilt = vae.decode(latents).sample
    pixels = batch[0].numel()
    normaliser = pixels * math.log(SIGMA * math.sqrt(2 * math.pi))  # of the Gaussian density, per image
    nll = ((rebuilt - batch) ** 2).flatten(1).sum(1) / (2 * SIGMA**2) + normaliser
    kl = posterior.kl()  # (B,), summed over the latent
    loss = (nll + kl).mean() / pixels
    return loss, {"nll": nll.mean().item(), "kl": kl.mean().item()}


@torch.no_grad()
def validation_elbo(vae: Any, images: torch.Tensor) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    parts = [negative_elbo(vae, chunk, generator)[1] for chunk in images.split(64)]
    sizes = [len(chunk) for chunk in images.split(64)]
    nats = sum((p["nll"] + p["kl"]) * n for p, n in zip(parts, sizes, strict=True)) / len(images)
    kl = sum(p["kl"] * n for p, n in zip(parts, sizes, strict=True)) / len(images)
    # pixels were scaled by 1/127.5 from 8-bit values: add that Jacobian for bits per 8-bit dimension
    dims = images[0].numel()
    bits = (nats + dims * math.log(127.5)) / (dims * math.log(2))
    return {"neg_elbo_nats": round(nats, 1), "kl_nats": round(kl, 1), "bits_per_dim": round(bits, 3)}


def main() -> None:
    args = base_arguments("sampling_vae", __doc__, BATCH).parse_args()
    vae, data, facts = train_autoencoder(args, build_autoencoder(), negative_elbo)
    facts.update(validation_elbo(vae, data.images[data.validation]))
    save_model(vae, args.out, facts)
    shutil.copy(args.work / "reconstructions.png", args.out / "reconstructions.png")
    with torch.no_grad():
        z = torch.randn(PRIOR_SAMPLES, 8, 4, 4, generator=torch.Generator().manual_seed(args.seed))
        save_grid(args.out / "prior_samples.png", vae.decode(z).sample)
    write_model_card(args.out, CARD, vae, facts, args.data)
    print("\n" + json.dumps(facts, indent=2))  # noqa: T201 -- a CLI report


if __name__ == "__main__":
    main()
