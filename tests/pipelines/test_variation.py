"""Variation seeds and resized seeds, as A1111's: strength 0 is the seed's picture, 1 the variation seed's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from pipelines.variation import variation_noise
from tests.support.tiny_sd import save_tiny_sd

BASE = {"prompt": "a harbour at dawn", "width": 64, "height": 64, "num_steps": 3, "sampler": "Euler"}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu")


def picture(pipe: TextToImagePipeline, seed: int, **params: object) -> np.ndarray:
    result = pipe(TextToImageParams.from_dict({**BASE, **params}), seed=seed)
    return np.asarray(result.images[0], dtype=np.int16)


def test_strength_zero_is_the_seed_and_one_the_variation_seed(pipe: TextToImagePipeline) -> None:
    seed_picture, subseed_picture = picture(pipe, 11), picture(pipe, 99)
    assert np.array_equal(picture(pipe, 11, subseed=99, subseed_strength=0.0), seed_picture)
    assert np.abs(picture(pipe, 11, subseed=99, subseed_strength=1.0) - subseed_picture).max() <= 1
    halfway = picture(pipe, 11, subseed=99, subseed_strength=0.5)
    assert np.abs(halfway - seed_picture).mean() > 1 and np.abs(halfway - subseed_picture).mean() > 1


def test_each_picture_of_a_batch_varies_its_own_seed(pipe: TextToImagePipeline) -> None:
    batch = pipe(TextToImageParams.from_dict({**BASE, "batch_size": 2, "subseed": 50, "subseed_strength": 0.3}),
                 seed=20)
    second = picture(pipe, 21, subseed=51, subseed_strength=0.3)  # picture 2: seed + 1 and variation seed + 1
    assert np.abs(np.asarray(batch.images[1], dtype=np.int16) - second).max() <= 1


def test_a_resized_seed_keeps_its_noise_in_the_middle() -> None:
    small = variation_noise(5, 0, 0.0, (4, 8, 8), None, torch.float32)
    wider = variation_noise(5, 0, 0.0, (4, 8, 12), (4, 8, 8), torch.float32)
    assert torch.equal(wider[..., 2:10], small)  # two columns of the seed's own noise either side
    cropped = variation_noise(5, 0, 0.0, (4, 6, 8), (4, 8, 8), torch.float32)
    assert torch.equal(cropped, small[..., 1:7, :])
    assert torch.equal(variation_noise(5, 0, 0.0, (4, 8, 8), (4, 8, 8), torch.float32), small)


def test_a_random_variation_seed_is_drawn_once_and_written_as_a1111_does() -> None:
    params = TextToImageParams.from_dict({**BASE, "subseed_strength": 0.25})
    drawn = params.drawn(lambda: 1234)
    assert params.subseed == -1 and drawn.subseed == 1234 and drawn.drawn(lambda: 5).subseed == 1234
    fields = drawn.a1111_fields()
    assert (fields["Variation seed"], fields["Variation seed strength"]) == (1234, 0.25)
    assert "Variation seed" not in TextToImageParams.from_dict(BASE).a1111_fields()
    resized = TextToImageParams.from_dict({**BASE, "seed_resize_from_w": 96, "seed_resize_from_h": 64})
    assert resized.a1111_fields()["Seed resize from"] == "96x64" and resized.batch_key() is None
    # a variation seed left at strength 0 does not keep jobs from sharing a batch
    assert TextToImageParams.from_dict({**BASE, "subseed": 3}).batch_key() == TextToImageParams.from_dict(
        {**BASE, "subseed": 4}).batch_key()


@pytest.mark.parametrize(("params", "message"), [
    ({"seed_resize_from_w": 96}, "go together"),
    ({"seed_resize_from_w": 100, "seed_resize_from_h": 64}, "multiple of 8"),
    ({"subseed_strength": 1.5}, "at most 1"),
    ({"subseed_strength": 0.5, "init_image": "in-x"}, "text to image only"),
])
def test_bad_variation_settings_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextToImageParams.from_dict({**BASE, **params})
