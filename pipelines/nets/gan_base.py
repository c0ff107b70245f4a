"""What every GAN generator in Atelier is, and how a folder finds its architecture.

A generator is a diffusers `ModelMixin, ConfigMixin` class, so a model folder is the usual `config.json` +
`diffusion_pytorch_model.safetensors` and `from_pretrained` / `save_pretrained` work as for any diffusers model.
The config's `_class_name` names the architecture. Architectures are discovered, not listed: every module
`pipelines/nets/gan_<name>.py` is imported and each `GanGenerator` subclass it defines becomes loadable. Adding
an architecture (a StyleGAN-like mapping network, FastGAN…) is one new file.

Generators split into `mapping` (noise z → intermediate latent w; the identity for DCGAN) and `synthesis`
(w → image in [−1, 1]), as StyleGAN does (Karras et al., "A Style-Based Generator Architecture for Generative
Adversarial Networks", CVPR 2019), because the truncation trick works on w.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin

import pipelines.nets
from pipelines.base import PipelineError
from pipelines.catalog import read_model_config


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


def architectures() -> dict[str, type[GanGenerator]]:
    """Every generator class of the `gan_*` modules in pipelines/nets, by class name (= config `_class_name`)."""
    for module in pkgutil.iter_modules(pipelines.nets.__path__):
        if module.name.startswith("gan_") and module.name != "gan_base":
            importlib.import_module(f"pipelines.nets.{module.name}")
    found: dict[str, type[GanGenerator]] = {}
    pending = list(GanGenerator.__subclasses__())
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending += cls.__subclasses__()
    return found


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
    known = architectures()
    if name not in known:
        raise PipelineError(f"unknown GAN architecture {name!r} in {folder / 'config.json'}; Atelier knows: "
                            f"{', '.join(sorted(known))}")
    try:
        model = known[name].from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise PipelineError(f"cannot load the GAN in {folder}: {e}") from e
    return model.eval()
