"""Train the bundled sampling VAE of the VAE tab: a diffusers `AutoencoderKL` whose prior gives coherent pictures.

The latent autoencoder of the text-to-image model keeps 1,024 numbers per image and a negligible KL term, so
noise drawn from N(0, I) decodes to texture. This one is a true VAE (Kingma & Welling, ICLR 2014): five levels
(64 → 4), an 8-channel 4×4 latent (128 numbers), and the full evidence lower bound as the loss — a Gaussian
likelihood of the pixels (σ = 0.1 on the [−1, 1] scale) plus the KL divergence to N(0, I), both summed per
image. The ELBO on the validation images is reported in nats per image and in bits per 8-bit dimension.

Even so, its posteriors do not fill N(0, I): after 45 minutes they sit in clusters (aggregate variance ~5 per
dimension against posterior std ~0.09), and N(0, I) noise decodes to a patchwork. A larger σ (0.3, which weighs
the KL term 9× more) pulled them together only slowly in trials of 10–25 minutes, with grey blobs for samples.
So after training, a mixture of 32 full-covariance Gaussians is fitted to the latents of the training images
(pipelines/latent_prior.py) and shipped as `prior.safetensors`; the VAE tab samples from it. Both kinds of sample
are drawn into the model card.

It is the same class as every other VAE, so the VAE tab samples, reconstructs and interpolates it by the same
code path. Run: `python -m pipelines.train.sampling_vae --out assets/models/atelier-emoji-vae [--minutes 45]`.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from typing import Any

import torch

from pipelines.latent_prior import GaussianMixturePrior
from pipelines.train.common import ModelCard, base_arguments, save_grid, save_model, write_model_card
from pipelines.train.latent_vae import train_autoencoder

BATCH = 32
SIGMA = 0.1  # the decoder's fixed standard deviation on the [−1, 1] pixel scale
PRIOR_SAMPLES = 64
LATENT_SHAPE = (8, 4, 4)  # (C, H/16, W/16) of a 64×64 image: 128 numbers
PRIOR_COMPONENTS = 32
PRIOR_TEMPERATURE = 0.7  # the card's grid; the tab's default is 1


CARD = ModelCard(
    title="Atelier emoji VAE",
    description="variational autoencoder with a 128-number latent whose prior samples look like emoji and clip art",
    architecture="diffusers `AutoencoderKL`, five levels (32/64/128/128/128 channels, one ResNet block each), "
                 "8 latent channels at 4×4, f = 16. Loss: the negative ELBO (Gaussian pixels, σ = 0.1, plus KL). "
                 "Prior for sampling: a mixture of 32 full-covariance Gaussians fitted to the latents of the "
                 "training images (`prior.safetensors`).",
    command="python -m pipelines.train.sampling_vae --out assets/models/atelier-emoji-vae --minutes 45",
    limits="Blurry: a 128-number bottleneck keeps shapes and colours, not fine detail. The fitted prior applies at "
           "the native 64×64; larger sizes fall back to N(0, I), which decodes to a patchwork.",
    images=(("prior_samples.png", "64 samples of the fitted prior (temperature 0.7), as the VAE tab draws them"),
            ("normal_samples.png", "64 samples of z ~ N(0, I) for comparison: why the fitted prior ships"),
            ("reconstructions.png", "validation images (top two rows) and their reconstructions (bottom two)")),
)


def build_autoencoder() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_SHAPE[0], sample_size=64, norm_num_groups=16,
        block_out_channels=(32, 64, 128, 128, 128),  # 64 → 32 → 16 → 8 → 4
        down_block_types=("DownEncoderBlock2D",) * 5, up_block_types=("UpDecoderBlock2D",) * 5,
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
    prior, log_likelihood = fit_prior(vae, data.images[data.train], args.seed)
    facts.update(prior_components=prior.components, prior_log_likelihood=round(log_likelihood, 1))
    save_model(vae, args.out, facts)
    prior.save(args.out)
    shutil.copy(args.work / "reconstructions.png", args.out / "reconstructions.png")
    with torch.no_grad():
        z = prior.sample(PRIOR_SAMPLES, torch.Generator().manual_seed(args.seed), PRIOR_TEMPERATURE)
        save_grid(args.out / "prior_samples.png", vae.decode(z.view(-1, *LATENT_SHAPE)).sample)
        z = torch.randn(PRIOR_SAMPLES, *LATENT_SHAPE, generator=torch.Generator().manual_seed(args.seed))
        save_grid(args.out / "normal_samples.png", vae.decode(z).sample)
    write_model_card(args.out, CARD, vae, facts, args.data)
    print("\n" + json.dumps(facts, indent=2))  # noqa: T201 -- a CLI report


@torch.no_grad()
def fit_prior(vae: Any, images: torch.Tensor, seed: int) -> tuple[GaussianMixturePrior, float]:
    """The mixture over the posterior means of every training image and its mirror image."""
    means = [vae.encode(torch.cat([chunk, chunk.flip(-1)])).latent_dist.mean.flatten(1) for chunk in images.split(256)]
    points = torch.cat(means)
    return GaussianMixturePrior.fit(points, min(PRIOR_COMPONENTS, len(points)), seed=seed)


if __name__ == "__main__":
    main()
