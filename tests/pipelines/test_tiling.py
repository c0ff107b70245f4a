"""Seamless tiling: a tiled picture continues across its edges, and nothing of it stays for the next job."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from pipelines.tiling import seamless
from tests.support.tiny_sd import save_tiny_sd

BASE = {"prompt": "a tiled floor", "width": 64, "height": 64, "num_steps": 3}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    # float32 on every CPU: the tests feed float32 noise to the diffusers pipeline itself
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu",
                                    dtype="fp32")


def picture(pipe: TextToImagePipeline, seed: int = 1, **params: object) -> np.ndarray:
    result = pipe(TextToImageParams.from_dict({**BASE, **params}), seed=seed)
    return np.asarray(result.images[0], dtype=np.float64)


def test_a_tiled_picture_wraps_around_its_edges(pipe: TextToImagePipeline) -> None:
    """On a torus there are no edges: the same noise moved sideways gives the same picture moved sideways."""
    sd = pipe.pipe
    factor = 2 ** (len(sd.vae.config.block_out_channels) - 1)  # pixels per latent
    latents = torch.randn(1, 4, 64 // factor, 64 // factor, generator=torch.Generator().manual_seed(0))
    shift = 2  # latents: a multiple of the UNet's downsampling, so the shift survives its strides

    def run(noise: torch.Tensor) -> np.ndarray:
        return sd(prompt="a tiled floor", latents=noise, num_inference_steps=2, width=64, height=64,
                  guidance_scale=5.0, output_type="np").images[0]

    with seamless(sd.unet, sd.vae):
        moved, still = run(torch.roll(latents, shift, dims=3)), run(latents)
        assert np.allclose(moved, np.roll(still, shift * factor, axis=1), atol=2e-3)
    plain_moved, plain_still = run(torch.roll(latents, shift, dims=3)), run(latents)
    assert not np.allclose(plain_moved, np.roll(plain_still, shift * factor, axis=1), atol=2e-3)  # edges


def test_the_tiling_param_switches_the_models_convolutions_for_its_job(pipe: TextToImagePipeline) -> None:
    seen: list[str] = []
    unet = pipe.pipe.unet
    forward = unet.forward

    def recording(*args, **kwargs):
        seen.append(unet.conv_in.padding_mode)
        return forward(*args, **kwargs)

    unet.forward = recording
    try:
        picture(pipe, tiling=True)
        picture(pipe)
    finally:
        unet.forward = forward
    assert set(seen[:3]) == {"circular"} and set(seen[3:]) == {"zeros"}


def test_the_decoder_wraps_around_while_tiling_and_not_after(pipe: TextToImagePipeline) -> None:
    vae = pipe.pipe.vae
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(1, vae.config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))

    def decode(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vae.decode(z).sample

    with seamless(vae) as switched:
        assert switched > 0
        rolled = decode(torch.roll(latents, 3, dims=3))
        assert torch.allclose(rolled, torch.roll(decode(latents), 3 * factor, dims=3), atol=1e-4)  # a torus
    assert not torch.allclose(decode(torch.roll(latents, 3, dims=3)), torch.roll(decode(latents), 3 * factor, dims=3),
                              atol=1e-4)
    assert all(m.padding_mode == "zeros" for m in vae.modules() if isinstance(m, torch.nn.Conv2d))


def test_tiling_leaves_nothing_behind_and_is_written_as_a1111_does(pipe: TextToImagePipeline) -> None:
    before = picture(pipe)
    picture(pipe, tiling=True)
    assert np.array_equal(picture(pipe), before)
    assert TextToImageParams.from_dict({**BASE, "tiling": True}).a1111_fields()["Tiling"] is True
    assert "Tiling" not in TextToImageParams.from_dict(BASE).a1111_fields()
