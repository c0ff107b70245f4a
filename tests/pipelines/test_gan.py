"""GAN sampling on a tiny DCGAN built here and on the DigiFace-1M faces shipped in `gan-face-generate`."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import torch

import pipelines.nets
from pipelines.base import Interrupted, PipelineError
from pipelines.gan import FACES_ID, GanParams, GanPipeline
from pipelines.nets.gan_base import GanGenerator, load_generator
from pipelines.nets.gan_dcgan import DCGANGenerator
from pipelines.nets.registry import GAN_BASE, gan_architectures
from tests.support.model_trees import scanned


def save_tiny_dcgan(folder: Path) -> Path:
    torch.manual_seed(0)
    DCGANGenerator(latent_dim=8, base_channels=4, image_size=16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> GanPipeline:
    folder = save_tiny_dcgan(tmp_path_factory.mktemp("models") / "tiny-dcgan")
    return GanPipeline.load(str(folder), device="cpu")


def run(pipe: GanPipeline, seed: int = 7, **values: object):
    return pipe(GanParams.from_dict(values), seed=seed)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_a_saved_generator_loads_back_identically_and_unknown_architectures_are_named(tmp_path: Path) -> None:
    folder = save_tiny_dcgan(tmp_path / "gan")
    original = DCGANGenerator.from_pretrained(folder).eval()
    loaded = load_generator(folder)
    z = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.equal(original(z), loaded(z))
    assert gan_architectures()["DCGANGenerator"] == "pipelines.nets.gan_dcgan"

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_class_name": "StyleGAN9"}))
    with pytest.raises(PipelineError, match="unknown GAN architecture 'StyleGAN9'.*DCGANGenerator"):
        load_generator(folder)
    with pytest.raises(PipelineError, match="not a GAN model folder"):
        load_generator(tmp_path)


def test_the_architectures_read_from_the_source_are_the_generator_classes_python_sees() -> None:
    for module in pkgutil.iter_modules(pipelines.nets.__path__):
        if module.name.startswith("gan_"):
            importlib.import_module(f"pipelines.nets.{module.name}")
    every = {}
    pending = list(GanGenerator.__subclasses__())
    while pending:
        cls = pending.pop()
        every[cls.__name__] = cls.__module__
        pending += cls.__subclasses__()
    assert GanGenerator.__name__ == GAN_BASE
    assert gan_architectures() == {name: module for name, module in every.items()
                                   if module.startswith("pipelines.nets.gan_")}


def test_models_folder_gan_is_listed_by_architecture(tmp_path: Path) -> None:
    save_tiny_dcgan(tmp_path / "mine")
    (tmp_path / "notes").mkdir()
    library = scanned(tmp_path, GanPipeline.folder_classes())
    entries = [e for e in GanPipeline.list_models(library) if e.origin == "local"]
    assert [(e.id, e.kind, e.description) for e in entries] == [("mine", "gan", "DCGANGenerator")]


def test_same_seed_same_image_and_an_image_depends_on_its_seed_only(tiny: GanPipeline) -> None:
    a, b = run(tiny, seed=3, num_images=1), run(tiny, seed=3, num_images=1)
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert not np.array_equal(pixels(a.images[0]), pixels(run(tiny, seed=4, num_images=1).images[0]))
    separate = run(tiny, seeds="9, 3-4", layout="separate")
    assert separate.seeds == [9, 3, 4]
    assert np.array_equal(pixels(separate.images[1]), pixels(a.images[0]))
    # empty seeds: the job seed and the ones after it
    following = run(tiny, seed=2, num_images=3, layout="separate")
    assert following.seeds == [2, 3, 4] and np.array_equal(pixels(following.images[1]), pixels(a.images[0]))


def test_grid_holds_every_image_and_records_its_seeds(tiny: GanPipeline) -> None:
    result = run(tiny, seed=10, num_images=5)
    assert len(result.images) == 1 and result.seeds == [10]
    assert result.images[0].size == (3 * 16 + 2 * 2, 2 * 16 + 2)  # 3 columns × 2 rows, 2 px apart
    assert result.info["seeds"] == "10-14"
    alone = run(tiny, seed=11, num_images=1).images[0]
    assert np.array_equal(pixels(result.images[0])[:16, 18:34], pixels(alone))


def test_truncation_pulls_every_image_toward_the_mean(tiny: GanPipeline) -> None:
    images = lambda psi: [pixels(i) for i in run(tiny, seeds="1-6", layout="separate", truncation=psi).images]  # noqa: E731
    zero, half, full = images(0.0), images(0.5), images(1.0)
    assert all(np.array_equal(zero[0], z) for z in zero[1:])  # ψ = 0: every seed gives the mean image
    assert all(np.array_equal(f, p) for f, p in zip(full, images(1.0), strict=True))
    plain = [pixels(i) for i in run(tiny, seeds="1-6", layout="separate").images]
    assert all(np.array_equal(f, p) for f, p in zip(full, plain, strict=True))  # ψ = 1 is off
    distance = lambda xs: np.mean([np.abs(x - zero[0]).mean() for x in xs])  # noqa: E731
    assert distance(half) < distance(full)


def test_interpolation_starts_at_seed_a_and_ends_at_seed_b(tiny: GanPipeline) -> None:
    a, b = run(tiny, seed=21, num_images=1).images[0], run(tiny, seed=22, num_images=1).images[0]
    result = run(tiny, mode="interpolate", seeds="21, 22", frames=9, loop=False, fps=8)
    animation = result.animations[0]
    assert len(animation.frames) == 9 and animation.fps == 8 and not animation.loop
    assert np.array_equal(pixels(animation.frames[0]), pixels(a))
    assert np.array_equal(pixels(animation.frames[-1]), pixels(b))
    assert result.images[0].size == (3 * 16 + 4, 3 * 16 + 4)  # the frame sheet, 3 × 3
    looped = run(tiny, mode="interpolate", seeds="21, 22", frames=8, loop=True).animations[0]
    assert np.array_equal(pixels(looped.frames[0]), pixels(a)) and looped.loop
    assert np.array_equal(pixels(looped.frames[4]), pixels(b))  # halfway round the loop
    assert not np.array_equal(pixels(looped.frames[-1]), pixels(a))  # no doubled frame at the seam


def test_walk_and_vary_start_from_the_seed(tiny: GanPipeline) -> None:
    start = pixels(run(tiny, seed=5, num_images=1).images[0])
    walk = run(tiny, seed=5, mode="walk", frames=6, step_size=0.3)
    frames = walk.animations[0].frames
    assert len(frames) == 6 and np.array_equal(pixels(frames[0]), start)
    assert not np.array_equal(pixels(frames[1]), start)
    assert np.array_equal(pixels(run(tiny, seed=5, mode="walk", frames=6, step_size=0.3).animations[0].frames[5]),
                          pixels(frames[5]))
    same = run(tiny, seed=5, mode="vary", num_images=2, variation=0.0, layout="separate")
    assert all(np.array_equal(pixels(i), start) for i in same.images)
    varied = run(tiny, seed=5, mode="vary", num_images=2, variation=0.2, layout="separate").images
    assert not np.array_equal(pixels(varied[0]), start) and not np.array_equal(pixels(varied[0]), pixels(varied[1]))


def test_upscale_is_a_resample_and_says_so(tiny: GanPipeline) -> None:
    result = run(tiny, num_images=1, upscale=4)
    assert result.images[0].size == (64, 64)
    assert "no new detail" in result.info["notes"][0]


@pytest.mark.parametrize(("values", "message"), [
    ({"seeds": "abc"}, "`seeds`: 'abc' is not a seed"),
    ({"seeds": "9-3"}, "runs backwards"),
    ({"seeds": "4294967296"}, "out of range"),
    ({"seeds": "0-5000"}, "more than 1024 seeds"),
    ({"num_images": -1}, "`num_images` must be at least 1"),
    ({"frames": 10_000}, "`frames` must be at most 600"),
    ({"truncation": 2.5}, "`truncation` must be at most 2.0"),
    ({"truncation": -0.1}, "`truncation` must be at least 0.0"),
    ({"truncation": float("nan")}, "`truncation` must be a finite number"),
    ({"mode": "interpolate", "seeds": "4"}, "interpolate needs at least two seeds"),
    ({"mode": "walk", "seeds": "4, 5"}, "walk starts from one seed"),
    ({"layout": "separate", "num_images": 100}, "at most 64 separate images"),
    ({"noise": "pink"}, "`noise` must be one of"),
])
def test_bad_input_is_refused_with_the_field_named(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GanParams.from_dict(values)


def test_stop_between_batches(tiny: GanPipeline) -> None:
    with pytest.raises(Interrupted):
        tiny(GanParams.from_dict({"num_images": 4}), seed=1, should_stop=lambda: True)


def test_faces_model_from_the_package_matches_its_own_generator_and_is_marked_non_commercial() -> None:
    from gan_face_generate.models import Generator  # only torch inside: safe to import without its deps

    entry = next(e for e in GanPipeline.list_models(scanned()) if e.id == FACES_ID)
    assert entry.origin == "package" and "non-commercial" in entry.restriction and "DigiFace-1M" in entry.licence
    pipe = GanPipeline.load(entry.source, device="cpu")
    theirs = Generator(ngpu=0, nc=3, nz=100, ngf=64)
    import importlib.resources

    with importlib.resources.as_file(importlib.resources.files("gan_face_generate") / "weights.tar") as path:
        theirs.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"])
    theirs.eval()
    result = pipe(GanParams.from_dict({"num_images": 1}), seed=123)
    z = torch.Generator().manual_seed(123)
    with torch.no_grad():
        expected = theirs(torch.randn(1, 100, generator=z)[:, :, None, None])
    expected_pixels = ((expected[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert result.images[0].size == (64, 64)
    assert np.abs(pixels(result.images[0]) - expected_pixels.astype(np.int16)).max() <= 1
    assert pixels(result.images[0]).std() > 20  # a picture, not a flat or blank square
