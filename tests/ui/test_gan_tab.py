"""The GAN tab through the UI and the queue, on the DigiFace-1M faces: grids and animations land in the gallery
with recipes that make them again, exactly, and with the non-commercial licence on each record."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from studio.gallery import parse_parameters
from studio.services import Services
from tests.conftest import make_config, wait_finished
from tests.ui.serving import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client]]:
    with serve(make_config(tmp_path_factory.mktemp("gan") / "data")) as served:
        yield served


def test_an_interpolation_lands_as_gif_mp4_and_frame_sheet_and_its_recipe_remakes_it(served) -> None:
    services, client = served
    params = {"mode": "interpolate", "seeds": "3, 8, 13", "frames": 12, "fps": 6, "loop": True, "truncation": 0.8}
    status, _, results, job_id = client.predict(model="dcgan-faces", seed=1, **params, api_name="/generate_gan")
    assert status.startswith("Done: 1 animation(s) (GIF, MP4 and a frame sheet)"), status
    assert results[0]["image"].endswith(".gif")  # the tab shows the animation moving
    artwork = services.gallery.get(f"{job_id}-0")
    assert set(artwork.media) == {"gif", "mp4"}
    with Image.open(artwork.media["gif"]) as gif:
        assert gif.n_frames == 12 and gif.size == (64, 64)
    recipe = artwork.recipe
    assert recipe.info["restriction"].startswith("non-commercial") and "DigiFace-1M" in recipe.info["licence"]
    assert recipe.info["animation"]["frames"] == 12
    with Image.open(artwork.path) as png:
        fields = parse_parameters(png.text["parameters"])
        sheet = np.asarray(png.convert("RGB"))
    assert fields["Model"] == "dcgan-faces" and fields["truncation"] == "0.8" and fields["frames"] == "12"
    assert "num_images" not in fields and "variation" not in fields  # controls of other modes stay out

    again = services.generation.submit(recipe.pipeline, recipe.model, recipe.params, recipe.info["job_seed"])
    wait_finished(services, again.id)
    with Image.open(services.gallery.get(f"{again.id}-0").path) as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), sheet)


def test_a_grid_of_faces_and_its_seeds(served) -> None:
    services, client = served
    status, _, results, job_id = client.predict(model="dcgan-faces", seed=40, num_images=9, upscale=2,
                                                api_name="/generate_gan")
    assert "no new detail" in status
    artwork = services.gallery.get(f"{job_id}-0")
    assert (artwork.width, artwork.height) == (3 * 128 + 4, 3 * 128 + 4)
    assert artwork.recipe.info["seeds"] == "40-48" and not artwork.media


def test_bad_input_is_named_and_nothing_is_queued(served) -> None:
    services, client = served
    before = len(services.queue.list())
    with pytest.raises(Exception, match="10000 is greater than maximum value 600"):  # the slider's own check
        client.predict(model="dcgan-faces", seed=1, mode="walk", frames=10_000, api_name="/generate_gan")
    with pytest.raises(Exception, match="`seeds`: 'x' is not a seed"):
        client.predict(model="dcgan-faces", seed=1, seeds="1, x", api_name="/generate_gan")
    assert len(services.queue.list()) == before


def test_the_models_tab_shows_the_faces_licence_limit(served) -> None:
    _, client = served
    table = client.predict(api_name="/list_models")
    row = next(dict(zip(table["headers"], r, strict=True)) for r in table["data"] if r[0] == "dcgan-faces")
    assert row["Generator"] == "gan" and row["Licence limits"].startswith("non-commercial")
