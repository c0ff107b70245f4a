"""Gatys style transfer (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
CVPR 2016): optimise an image so that its VGG19 content features match the photo's and the Gram matrices of
its style features match the painting's, plus a total-variation term for smoothness.

Optimiser: L-BFGS, as in the paper's reference implementations; one "iteration" is one L-BFGS step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipelines.base import OnStep, ShouldStop
from pipelines.imaging import to_image

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class GatysSettings:
    iterations: int = 200
    content_weight: float = 1.0
    style_weight: float = 100.0
    tv_weight: float = 0.1
    preview_every: int = 20


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C, C), normalised by the number of entries so layers of any size weigh alike."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    return (image[..., 1:, :] - image[..., :-1, :]).abs().mean() + (image[..., 1:] - image[..., :-1]).abs().mean()


def gatys_transfer(vgg: torch.nn.Module, content: torch.Tensor, style: torch.Tensor, settings: GatysSettings, *,
                   seed: int, on_step: OnStep | None = None,
                   should_stop: ShouldStop | None = None) -> tuple[torch.Tensor, bool]:
    """(best image (1, 3, H, W) in [0, 1], stopped early). Starts from the photo plus a little seeded noise."""
    with torch.no_grad():
        content_targets = vgg(content, list(CONTENT_LAYERS))
        style_targets = {k: gram(v) for k, v in vgg(style, list(STYLE_LAYERS)).items()}
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(content.shape, generator=generator).to(content.device) * 0.05
    # optimise in logit space: the image stays in (0, 1) without clamping, which L-BFGS handles badly
    logits = torch.logit((content + noise).clamp(0.01, 0.99)).contiguous().requires_grad_(True)
    # strong Wolfe line search: without it a first step on a large loss overshoots into saturated pixels
    optimizer = torch.optim.LBFGS([logits], lr=1.0, max_iter=1, history_size=20, line_search_fn="strong_wolfe")
    # each term is divided by its target's mean square, so the weights are relative and need no retuning
    # when the image size or the layer changes
    content_scale = {k: v.pow(2).mean().clamp_min(1e-8) for k, v in content_targets.items()}
    style_scale = {k: v.pow(2).mean().clamp_min(1e-8) for k, v in style_targets.items()}
    best, best_loss = content.clone(), math.inf

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        image = torch.sigmoid(logits)
        features = vgg(image, list(CONTENT_LAYERS + STYLE_LAYERS))
        content_loss = sum(torch.nn.functional.mse_loss(features[k], content_targets[k]) / content_scale[k]
                           for k in CONTENT_LAYERS)
        style_loss = sum(torch.nn.functional.mse_loss(gram(features[k]), style_targets[k]) / style_scale[k]
                         for k in STYLE_LAYERS)
        loss = (settings.content_weight * content_loss / len(CONTENT_LAYERS)
                + settings.style_weight * style_loss / len(STYLE_LAYERS)
                + settings.tv_weight * total_variation(image))
        loss.backward()
        return loss

    for iteration in range(1, settings.iterations + 1):
        if should_stop is not None and should_stop():
            return best, True
        loss = float(optimizer.step(closure).detach())
        if not math.isfinite(loss):
            break
        if loss < best_loss:
            best_loss, best = loss, torch.sigmoid(logits).detach().clone()
        if on_step is not None:
            show = iteration % settings.preview_every == 0 or iteration == settings.iterations
            on_step(iteration, settings.iterations, to_image(best) if show else None)
    return best, False

