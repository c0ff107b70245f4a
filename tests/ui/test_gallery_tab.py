"""The Gradio shell in-process, driven through its API names: generate, stop, gallery, favourite, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from studio.jobs import JobStatus
from studio.services import Services
from tests.conftest import make_config, wait_finished, wait_for
from tests.ui.serving import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client]]:
    with serve(make_config(tmp_path_factory.mktemp("ui") / "data")) as served:
        yield served


def make(client: Client, prompt: str, seed: int, **params: object) -> str:
    status, _, _, job_id = client.predict(model="pattern-v1", seed=seed, prompt=prompt, **params,
                                          api_name="/generate_pattern")
    assert status.startswith("Done"), status
    return f"{job_id}-0"


def gallery(client: Client, query: str = "", favourites: bool = False) -> tuple[list[dict], str]:
    return client.predict(query, "", "", favourites, 1, api_name="/gallery_page")


def test_search_favourite_and_delete(served: tuple[Services, Client]) -> None:
    services, client = served
    cat = make(client, "a sleeping cat", 1)
    dog = make(client, "a running dog", 2)

    items, _ = gallery(client, "cat")
    assert [i["caption"] for i in items] == ["a sleeping cat"]

    client.predict(dog, api_name="/toggle_favourite")
    assert services.gallery.get(dog).favourite
    items, _ = gallery(client, favourites=True)
    assert [i["caption"] for i in items] == ["a running dog"]

    artwork = services.gallery.get(cat)
    notice = client.predict(cat, api_name="/delete_artwork")
    assert notice == f"Deleted {cat}."
    assert not artwork.path.exists() and not artwork.thumb_path.exists()
    items, label = gallery(client, "cat")
    assert items == [] and label.endswith("0 artwork(s)")
    with pytest.raises(Exception, match=f"no artwork '{cat}'"):
        client.predict(cat, api_name="/open_artwork")


def test_detail_shows_the_a1111_text_and_the_recipe(served: tuple[Services, Client]) -> None:
    _, client = served
    art = make(client, "a teapot\nin the rain", 9, palette="cool")
    artwork_id, image, parameters, recipe, *_ = client.predict(art, api_name="/open_artwork")
    assert artwork_id == art and Path(image).suffix == ".png"
    assert parameters.startswith("a teapot\nin the rain\n") and "Seed: 9" in parameters
    assert recipe["params"]["palette"] == "cool" and recipe["seed"] == 9


def test_hostile_ids_and_queries_get_clear_errors(served: tuple[Services, Client]) -> None:
    _, client = served
    for bad in ("../../etc/passwd", "", "x" * 500):
        with pytest.raises(Exception, match="no artwork"):
            client.predict(bad, api_name="/open_artwork")
    for query in ('"', "AND (", "*", "-", "NEAR("):
        items, _ = gallery(client, query)
        assert isinstance(items, list)


def test_stop_from_the_ui(served: tuple[Services, Client]) -> None:
    services, client = served
    job = client.submit(model="pattern-v1", seed=3, num_steps=200, step_delay=0.05, api_name="/generate_pattern")
    job_id = wait_for(lambda: job.outputs() and job.outputs()[-1][3], what="the job id")
    wait_for(lambda: services.queue.get(job_id).step >= 1, what="the job to start")
    assert client.predict(job_id, api_name="/stop_pattern") == "Stopping…"
    assert wait_finished(services, job_id, timeout=15).status is JobStatus.CANCELED
