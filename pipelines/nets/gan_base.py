"""What every GAN generator in Atelier is, and how a folder finds its architecture.

A generator is a diffusers `ModelMixin, ConfigMixin` class, so a model folder is the usual `config.json` +
`diffusion_pytorch_model.safetensors` and `from_pretrained` / `save_pretrained` work as for any diffusers model.
The config's `_class_name` names the architecture. Architectures are discovered, not listed: each `GanGenerator`
subclass defined in a module `pipelines/nets/gan_<name>.py` is loadable (pipelines/nets/registry.py finds them
without importing torch; a module is imported when one of its generators loads). Adding an architecture (a
StyleGAN-like mapping network, FastGAN…) is one new file.

Generators split into `mapping` (noise z → intermediate latent w; the identity for DCGAN) and `synthesis`
(w → image in [−1, 1]), as StyleGAN does (Karras et al., "A Style-Based Generator Architecture for Generative
Adversarial Networks", CVPR 2019), because the truncation trick works on w.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin

from pipelines.base import PipelineError
from pipelines.models.entries import read_model_config
from pipelines.nets.registry import gan_architectures


class GanGenerator(ModelMixin, ConfigMixin):
    """Base of the generator architectures. Subclasses register their config with diffusers'
    `@register_to_config` and implement `latent_dim` and `synthesis`; `mapping` defaults to the identity."""

    config_name = "config.json"

    @property
    def latent_dim(self) -> int:
        """Size of the noise vector z."""
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        """Side of the square images it makes, in pixels."""
        raise NotImplementedError

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) noise → (B, …) intermediate latent, the space truncation and averages live in."""
        return z

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """(B, …) intermediate latent → (B, 3, H, W) image in [−1, 1]."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))

    def for_inference(self) -> GanGenerator:
        """The network as sampling should run it (e.g. with batch norm folded into the weights); the same outputs
        up to float rounding. The result is for running, not for `save_pretrained`."""
        return self.eval()


def architecture_of(folder: Path) -> str | None:
    """The `_class_name` in a folder's config.json, or None when there is no readable config."""
    name = (read_model_config(folder) or {}).get("_class_name")
    return name if isinstance(name, str) else None


def load_generator(folder: Path) -> GanGenerator:
    """The generator saved in `folder`; PipelineError for a folder without a config or of an unknown architecture."""
    folder = Path(folder)
    name = architecture_of(folder)
    if name is None:
        raise PipelineError(f"{folder} is not a GAN model folder: no readable config.json with a `_class_name`")
    known = gan_architectures()
    if name not in known:
        raise PipelineError(f"unknown GAN architecture {name!r} in {folder / 'config.json'}; Atelier knows: "
                            f"{', '.join(sorted(known))}")
    architecture: type[GanGenerator] = getattr(importlib.import_module(known[name]), name)
    try:
        model = architecture.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise PipelineError(f"cannot load the GAN in {folder}: {e}") from e
    return model.eval()
