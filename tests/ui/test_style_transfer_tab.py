"""Style Transfer through the UI and the queue, on the example photos: the three modes land in the gallery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gradio_client import Client, handle_file

from studio.gallery import parse_parameters
from studio.services import Services
from tests.conftest import make_config
from tests.support.photos import photo_path
from tests.ui.serving import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client]]:
    with serve(make_config(tmp_path_factory.mktemp("style") / "data")) as served:
        yield served


@pytest.mark.parametrize(
    ("mode", "extra", "a1111"),
    [
        ("builtin", {"style": 5, "style_b": 9, "blend": 0.3}, {"Style": "5+9@0.3"}),
        ("painting", {"strength": 0.8}, {"Strength": "0.8"}),
        ("gatys", {"iterations": 2, "size": 48}, {"Steps": "2"}),
    ],
)
def test_each_mode_lands_in_the_gallery_with_its_recipe(served, mode: str, extra: dict, a1111: dict) -> None:
    services, client = served
    params = {"mode": mode, "size": 128, "content_image": handle_file(str(photo_path("chelsea"))),
              "style_image": handle_file(str(photo_path("astronaut"))), **extra}
    status, _, results, job_id = client.predict(model="style-transfer", seed=1, **params,
                                                api_name="/generate_style_transfer")
    assert status.startswith("Done"), status
    artwork = services.gallery.get(f"{job_id}-0")
    assert max(artwork.width, artwork.height) == params["size"]
    recipe = artwork.recipe
    assert recipe.params["mode"] == mode and services.inputs.exists(recipe.params["content_image"])
    with open(artwork.path, "rb"):
        from PIL import Image

        fields = parse_parameters(Image.open(artwork.path).text["parameters"])
    assert {k: fields[k] for k in a1111} == a1111 and fields["Model"] == "style-transfer"


def test_a_missing_painting_is_named(served) -> None:
    _, client = served
    with pytest.raises(Exception, match="`style_image` is required in painting mode"):
        client.predict(model="style-transfer", seed=1, mode="painting",
                       content_image=handle_file(str(photo_path("chelsea"))), api_name="/generate_style_transfer")


def test_the_style_picker_shows_all_26_styles_as_the_network_renders_them(served, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from pipelines.train.style_thumbnails import render
    from studio.ui.tabs.pickers import thumbnails

    _, client = served
    config = client.config
    picker = next(c for c in config["components"] if c.get("props", {}).get("label", "").startswith("Built-in style:"))
    assert len(picker["props"]["value"]) == 26 and picker["props"]["value"][6]["caption"] == "7"
    fresh = render(tmp_path)  # the shipped thumbnails are what the script makes today
    for shipped, new in zip(thumbnails("assets/styles"), fresh, strict=True):
        a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in (shipped, new))
        assert np.abs(a - b).mean() < 2, shipped.name


def test_the_models_tab_shows_the_licences(served) -> None:
    _, client = served
    table = client.predict(api_name="/list_models")
    row = next(dict(zip(table["headers"], r, strict=True)) for r in table["data"] if r[0] == "style-transfer")
    assert "Apache-2.0" in row["Licence"] and "CC BY 4.0" in row["Licence"] and row["Status"] == "installed"
