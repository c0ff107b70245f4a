"""diffusers' `callback_on_step_end` for the text-to-image pipelines: progress with a cheap preview, Stop between
steps, NaN detection, and prompt editing's embeddings swapped in where a stretch of steps ends (SDXL's pooled
embeddings with them). torch is imported where it runs: the server imports the text-to-image module, and this one
with it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipelines.base import OnStep, ShouldStop
from pipelines.diffusion_utils import latent_preview
from pipelines.prompts.encoding import Conditioning

if TYPE_CHECKING:
    import torch


class StepCallback:
    """One pipeline call may serve several jobs (`on_steps`, each owning `per_job` consecutive latents); `batch` of
    `batches` is the call's place among a job's batch count."""

    def __init__(self, on_steps: Sequence[OnStep | None], per_job: int, should_stop: ShouldStop, family: str,
                 batch: int = 0, batches: int = 1, conditioning: Conditioning | None = None):
        self.on_steps, self.per_job, self.should_stop = on_steps, per_job, should_stop
        self.batch, self.batches, self.family = batch, batches, family
        self.conditioning = conditioning  # one job's prompt editing (jobs that edit their prompts run alone)
        self.tensor_inputs = ["latents"]
        if conditioning is not None:
            # the names diffusers' loops hold the embeddings under; SDXL's pooled ones condition its added embedding
            pooled = conditioning.at(1).pooled is not None
            self.tensor_inputs += ["prompt_embeds", "add_text_embeds"] if pooled else ["prompt_embeds"]
        self.stopped = False
        self.not_finite = False
        self.last_step = 0

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        import torch

        self.last_step = step + 1
        total = pipe.num_timesteps
        if not torch.isfinite(kwargs["latents"]).all():
            self.not_finite = True
            pipe._interrupt = True
            return kwargs
        for j, on_step in enumerate(self.on_steps):
            if on_step is not None:
                preview = latent_preview(kwargs["latents"][j * self.per_job], self.family)
                on_step(self.batch * total + step + 1, self.batches * total, preview)
        if self.should_stop():
            self.stopped = True
            pipe._interrupt = True  # diffusers' own flag: the loop ends after this step
        if self.conditioning is not None:
            then = self.conditioning.at(step + 2)
            if then is not self.conditioning.at(step + 1):
                kwargs["prompt_embeds"] = for_guidance(pipe, then.positive, then.negative, self.per_job)
                if then.pooled is not None:
                    kwargs["add_text_embeds"] = for_guidance(pipe, then.pooled, then.negative_pooled, self.per_job)
        return kwargs


def for_guidance(pipe: Any, positive: torch.Tensor, negative: torch.Tensor, images: int) -> torch.Tensor:
    """Embeddings as diffusers' denoising loop holds them: repeated per image, the negative ones first when
    classifier-free guidance is on."""
    import torch

    positive = positive.repeat(images, *[1] * (positive.dim() - 1))
    if not pipe.do_classifier_free_guidance:
        return positive
    return torch.cat([negative.repeat(images, *[1] * (negative.dim() - 1)), positive])
