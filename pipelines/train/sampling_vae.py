"""Train the bundled sampling VAE of the VAE tab: a diffusers `AutoencoderKL` whose prior gives coherent pictures.

The latent autoencoder of the text-to-image model keeps 1,024 numbers per image and a negligible KL term, so
noise drawn from N(0, I) decodes to texture. This one is a true VAE (Kingma & Welling, ICLR 2014) with a single
128-number latent vector per image: seven levels take 64×64 down to 1×1, and the loss is the full evidence lower
bound — a Gaussian likelihood of the pixels plus the KL divergence to the prior, both summed per image.

Two choices decide whether the prior's samples are pictures. A spatial latent (say 8 channels at 4×4) drawn
independently per position decodes to a patchwork; one global vector does not. And the decoder's σ sets the
weight of the KL term: at σ = 0.1 (on the [−1, 1] scale) reconstructions win, the posteriors shrink to points
far from N(0, I) (aggregate variance ~5 per dimension against posterior std ~0.09 in a 45-minute run), and
prior samples are mush; at σ = 0.3, close to the actual reconstruction error, the ELBO is calibrated and the
posteriors fill the prior. The price is blur. The ELBO on the validation images is reported in nats per image and
in bits per 8-bit dimension.

It is the same class as every other VAE, so the VAE tab samples, reconstructs and interpolates it by the same
code path. Run: `python -m pipelines.train.sampling_vae --out assets/models/atelier-emoji-vae [--minutes 85]`.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from typing import Any

import torch

from pipelines.train.common import ModelCard, base_arguments, save_grid, save_model, write_model_card
from pipelines.train.latent_vae import train_autoencoder

BATCH = 32
SIGMA = 0.3  # the decoder's fixed standard deviation on the [−1, 1] pixel scale
PRIOR_SAMPLES = 64
LATENT = 128  # channels of the 1×1 latent: one 128-number vector per image


CARD = ModelCard(
    title="Atelier emoji VAE",
    description="variational autoencoder with a 128-number latent whose prior samples look like emoji and clip art",
    architecture="diffusers `AutoencoderKL`, seven levels (16/32/64/128/128/128/128 channels, one ResNet block "
                 "each), a 128-channel latent at 1×1 (f = 64). Loss: the negative ELBO (Gaussian pixels with "
                 "σ = 0.3 on the [−1, 1] scale, plus the KL divergence to N(0, I)).",
    command="python -m pipelines.train.sampling_vae --out assets/models/atelier-emoji-vae --minutes 85",
    limits="Blurry: 128 numbers per image keep layout and colour, not detail or text. Made for its native 64×64 "
           "(use the upscale option to view larger); reconstructions centre-crop inputs to a multiple of 64 px.",
    images=(("prior_samples.png", "64 samples of the prior, z ~ N(0, I)"),
            ("reconstructions.png", "validation images (top two rows) and their reconstructions (bottom two)")),
)


def build_autoencoder() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT, sample_size=64, norm_num_groups=16,
        block_out_channels=(16, 32, 64, 128, 128, 128, 128),  # 64 → 32 → 16 → 8 → 4 → 2 → 1
        down_block_types=("DownEncoderBlock2D",) * 7, up_block_types=("UpDecoderBlock2D",) * 7,
        layers_per_block=1,
    )


def negative_elbo(vae: Any, batch: torch.Tensor, generator: torch.Generator,
                  sigma: float = SIGMA) -> tuple[torch.Tensor, dict[str, float]]:
    """(−ELBO per pixel, the parts per image in nats): reconstruction NLL + KL, from one posterior sample."""
    posterior = vae.encode(batch).latent_dist
    latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
    rebuilt = vae.decode(latents).sample
    pixels = batch[0].numel()
    normaliser = pixels * math.log(sigma * math.sqrt(2 * math.pi))  # of the Gaussian density, per image
    nll = ((rebuilt - batch) ** 2).flatten(1).sum(1) / (2 * sigma**2) + normaliser
    kl = posterior.kl()  # (B,), summed over the latent
    loss = (nll + kl).mean() / pixels
    return loss, {"nll": nll.mean().item(), "kl": kl.mean().item()}


@torch.no_grad()
def validation_elbo(vae: Any, images: torch.Tensor, sigma: float = SIGMA) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    parts = [negative_elbo(vae, chunk, generator, sigma)[1] for chunk in images.split(64)]
    sizes = [len(chunk) for chunk in images.split(64)]
    nats = sum((p["nll"] + p["kl"]) * n for p, n in zip(parts, sizes, strict=True)) / len(images)
    kl = sum(p["kl"] * n for p, n in zip(parts, sizes, strict=True)) / len(images)
    # pixels were scaled by 1/127.5 from 8-bit values: add that Jacobian for bits per 8-bit dimension
    dims = images[0].numel()
    bits = (nats + dims * math.log(127.5)) / (dims * math.log(2))
    return {"neg_elbo_nats": round(nats, 1), "kl_nats": round(kl, 1), "bits_per_dim": round(bits, 3)}


def main() -> None:
    parser = base_arguments("sampling_vae", __doc__, BATCH)
    parser.add_argument("--sigma", type=float, default=SIGMA,
                        help=f"the decoder's standard deviation on the [−1, 1] pixel scale (default {SIGMA})")
    args = parser.parse_args()
    vae, data, facts = train_autoencoder(args, build_autoencoder(), functools.partial(negative_elbo, sigma=args.sigma))
    facts.update(validation_elbo(vae, data.images[data.validation], args.sigma), sigma=args.sigma)
    save_model(vae, args.out, facts)
    shutil.copy(args.work / "reconstructions.png", args.out / "reconstructions.png")
    with torch.no_grad():
        z = torch.randn(PRIOR_SAMPLES, LATENT, 1, 1, generator=torch.Generator().manual_seed(args.seed))
        save_grid(args.out / "prior_samples.png", vae.decode(z).sample)
    write_model_card(args.out, CARD, vae, facts, args.data)
    print("\n" + json.dumps(facts, indent=2))  # noqa: T201 -- a CLI report


if __name__ == "__main__":
    main()
