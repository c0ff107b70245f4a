"""Two users of one network-facing studio, each logged in through the UI's login page (gradio_client, real HTTP):
neither can see, open, reuse, favourite, delete or stop the other's work, and the studio's caps hold in the UI."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from gradio_client import Client

from studio.accounts import add_user
from studio.jobs import JobStatus
from studio.services import Services
from tests.conftest import make_config, wait_finished, wait_for
from tests.ui.serving import serve_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client, Client, str]]:
    root = tmp_path_factory.mktemp("two-users")
    add_user(root / "logins", "ann", "apple-pie-9")
    add_user(root / "logins", "bob", "blue-moon-9")
    config = make_config(root / "data", host="0.0.0.0", auth_file=root / "logins", max_images_per_job=4)
    with serve_http(config) as (services, url):
        yield (services, Client(url, auth=("ann", "apple-pie-9"), verbose=False),
               Client(url, auth=("bob", "blue-moon-9"), verbose=False), url)


def make(client: Client, prompt: str, **params: object) -> str:
    status, _, _, job_id = client.predict(model="pattern-v1", seed=1, prompt=prompt, **params,
                                          api_name="/generate_pattern")
    assert status.startswith("Done"), status
    return job_id


def captions(client: Client) -> list[str]:
    items, _ = client.predict("", "", "", False, 1, api_name="/gallery_page")
    return [item["caption"] for item in items]


def test_neither_user_can_see_or_touch_the_others_work(two_users: tuple[Services, Client, Client, str]) -> None:
    services, ann, bob, url = two_users
    job_id = make(ann, "ann's secret garden")
    art = f"{job_id}-0"
    assert services.gallery.get(art).owner == "ann"
    make(bob, "bob's boat")
    assert captions(ann) == ["ann's secret garden"] and captions(bob) == ["bob's boat"]

    for api_name in ("/open_artwork", "/reuse_settings", "/toggle_favourite", "/delete_artwork"):
        with pytest.raises(Exception, match=f"no artwork '{art}'"):  # not even told that it exists
            bob.predict(art, api_name=api_name)
    artwork = services.gallery.get(art)
    assert artwork.path.is_file() and not artwork.favourite
    assert ann.predict(art, api_name="/open_artwork")[0] == art  # still there for its owner

    running = ann.submit(model="pattern-v1", seed=2, num_steps=200, step_delay=0.05, api_name="/generate_pattern")
    running_id = wait_for(lambda: running.outputs() and running.outputs()[-1][3], what="the job id")
    wait_for(lambda: services.queue.get(running_id).status is JobStatus.RUNNING, what="ann's job to run")
    [ann_row], [bob_row] = ann.predict(api_name="/list_workers")["data"], bob.predict(api_name="/list_workers")["data"]
    assert ann_row[3] == running_id and bob_row[3] == "1 of other users"  # the id leads to ann's work: hers alone
    ann_health, bob_health = (httpx.get(f"{url}api/v1/health", auth=login).json()["workers"]
                              for login in (("ann", "apple-pie-9"), ("bob", "blue-moon-9")))
    assert ann_health[0]["current_jobs"] == [running_id] and ann_health[0]["other_jobs"] == 0
    assert bob_health[0]["current_jobs"] == [] and bob_health[0]["other_jobs"] == 1
    with pytest.raises(Exception, match=f"no job {running_id}"):
        bob.predict(running_id, api_name="/stop_pattern")
    assert services.queue.get(running_id).status in (JobStatus.PENDING, JobStatus.RUNNING)
    assert ann.predict(running_id, api_name="/stop_pattern") in ("Stopping…", "Job canceled.")
    assert wait_finished(services, running_id, timeout=30).status is JobStatus.CANCELED


def test_the_caps_and_the_listed_models_hold_in_the_ui(two_users: tuple[Services, Client, Client, str]) -> None:
    services, ann, _, _ = two_users
    before = len(services.queue.list())
    with pytest.raises(Exception, match="at most 4 per job"):
        ann.predict(model="pattern-v1", seed=1, num_images=5, api_name="/generate_pattern")
    with pytest.raises(Exception, match="someone/forty-gigabytes"):  # typed in: no download
        ann.predict(model="someone/forty-gigabytes", seed=1, api_name="/generate_text_to_image")
    assert len(services.queue.list()) == before


def test_presets_recent_prompts_and_the_last_seed_stay_with_their_user(
        two_users: tuple[Services, Client, Client, str]) -> None:
    services, ann, bob, _ = two_users
    ann.predict(name="Ann's warm look", num_steps=6, palette="warm", api_name="/save_preset_pattern")
    assert services.presets.names("ann", "pattern") == ["Ann's warm look"]
    assert services.presets.names("bob", "pattern") == []
    with pytest.raises(Exception, match="no saved preset named"):
        bob.predict("Ann's warm look", api_name="/apply_preset_pattern")

    job_id = make(ann, "ann's quiet lake")
    assert ann.predict(job_id, api_name="/last_seed_pattern") == 1
    with pytest.raises(Exception, match=f"no job {job_id}"):
        bob.predict(job_id, api_name="/last_seed_pattern")
    mine = [value for _, value in ann.predict(api_name="/prompt_history_pattern")["choices"]]
    theirs = [value for _, value in bob.predict(api_name="/prompt_history_pattern")["choices"]]
    assert "ann's quiet lake" in mine and "ann's quiet lake" not in theirs
