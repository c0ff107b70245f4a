"""The VAE tab through the UI and the queue, on a tiny AutoencoderKL in the models folder: reconstruction with its
PSNR, an interpolation animation of two photos of different sizes, latent arithmetic, each with its recipe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from studio.services import Services
from tests.conftest import make_config, wait_finished
from tests.support.tiny_sd import save_tiny_vae
from tests.ui.serving import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client]]:
    root = tmp_path_factory.mktemp("vae")
    save_tiny_vae(root / "models" / "tiny-vae")
    with serve(make_config(root / "data", models_dirs=(root / "models",))) as served:
        yield served


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.support.photos import photo

    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, size in (("chelsea", 48), ("astronaut", 40)):
        paths[name] = folder / f"{name}.png"
        photo(name, size).save(paths[name])
    return paths


def test_reconstruction_shows_its_psnr_and_a_comparison(served, photos) -> None:
    services, client = served
    status, _, results, job_id = client.predict(model="tiny-vae", seed=1, mode="reconstruct",
                                                image_a=handle_file(str(photos["chelsea"])), api_name="/generate_vae")
    assert status.startswith("Done: 2 image(s)") and "PSNR" in status, status
    rebuilt, sheet = services.gallery.get(f"{job_id}-0"), services.gallery.get(f"{job_id}-1")
    assert (rebuilt.width, rebuilt.height) == (48, 32)  # chelsea, 451×300, saved at 48×32: already a multiple of 2
    assert (sheet.width, sheet.height) == (3 * 48 + 4, 32)  # input | output | difference
    assert rebuilt.recipe.info["psnr_db"] > 0


def test_an_interpolation_of_two_sizes_is_resized_with_a_notice_and_animates(served, photos) -> None:
    services, client = served
    status, _, results, job_id = client.predict(
        model="tiny-vae", seed=5, mode="interpolate", image_a=handle_file(str(photos["chelsea"])),
        image_b=handle_file(str(photos["astronaut"])), frames=6, loop=False, api_name="/generate_vae")
    assert "image B was resized from 40x40 to 48x32" in status, status
    assert results[0]["image"].endswith(".gif")
    artwork = services.gallery.get(f"{job_id}-0")
    assert set(artwork.media) == {"gif", "mp4"} and artwork.recipe.info["animation"]["frames"] == 6
    with Image.open(artwork.media["gif"]) as gif:
        assert gif.n_frames == 6 and gif.size == (48, 32)

    recipe = artwork.recipe
    again = services.generation.submit(recipe.pipeline, recipe.model, recipe.params, recipe.info["job_seed"])
    wait_finished(services, again.id)
    with Image.open(artwork.path) as first, Image.open(services.gallery.get(f"{again.id}-0").path) as second:
        assert np.array_equal(np.asarray(first), np.asarray(second))


def test_arithmetic_and_its_missing_image(served, photos) -> None:
    services, client = served
    a, b = handle_file(str(photos["chelsea"])), handle_file(str(photos["astronaut"]))
    status, *_ = client.predict(model="tiny-vae", seed=1, mode="arithmetic", image_a=a, image_b=b, image_c=b,
                                api_name="/generate_vae")
    assert status.startswith("Done: 1 image(s)"), status
    with pytest.raises(Exception, match="`image_c` is required in arithmetic mode"):
        client.predict(model="tiny-vae", seed=1, mode="arithmetic", image_a=a, image_b=b, api_name="/generate_vae")


def test_a_file_that_is_not_an_image_is_refused(served, tmp_path) -> None:
    _, client = served
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"these are not the pixels you are looking for")
    with pytest.raises(Exception, match="`image_a` is not a PNG, JPEG or WebP picture"):
        client.predict(model="tiny-vae", seed=1, mode="reconstruct", image_a=handle_file(str(fake)),
                       api_name="/generate_vae")
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.bmp")  # a picture, but not of a format the studio reads
    with pytest.raises(Exception, match="`image_a` is not a PNG, JPEG or WebP picture"):
        client.predict(model="tiny-vae", seed=1, mode="reconstruct", image_a=handle_file(str(tmp_path / "photo.bmp")),
                       api_name="/generate_vae")
