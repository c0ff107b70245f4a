"""`python launch.py` for real: serve the UI, drive it with gradio_client, stop it with Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from PIL import Image

from studio.gallery import read_recipe
from studio.jobs import JobStatus, SqliteJobQueue
from tests.conftest import wait_for
from tests.support.launched import ROOT, Studio, living_in_group

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, Path]]:
    """One launched studio for the tests that only use it (a launch costs seconds): none changes what another sees."""
    data_dir = tmp_path_factory.mktemp("launched") / "data"
    with Studio(data_dir, free_port()) as studio:
        yield studio, data_dir


def test_a_job_through_gradio_client_streams_lands_and_can_be_reused(launched: tuple[Studio, Path]) -> None:
    studio, data_dir = launched
    client = Client(studio.url, verbose=False)
    params = {"prompt": "a lighthouse at dusk", "width": 48, "height": 32, "num_images": 1, "num_steps": 5,
              "step_delay": 0.05, "palette": "cool", "crash": False, "fail": ""}
    job = client.submit(model="pattern-v1", seed=1234, **params, api_name="/generate_pattern")
    statuses = [update[0] for update in job]
    assert any(s.startswith("Step 1 of 5") for s in statuses) and any(s.startswith("Step 5 of 5") for s in statuses)
    status, _, results, job_id = job.outputs()[-1]
    assert status.startswith("Done: 1 image(s)") and len(results) == 1

    [png] = (data_dir / "gallery" / "images").rglob(f"{job_id}-0.png")
    with Image.open(png) as image:
        assert image.size == (48, 32)
        assert image.text["parameters"].startswith("a lighthouse at dusk\n")
        assert "Seed: 1234" in image.text["parameters"] and "Size: 48x32" in image.text["parameters"]
    recipe = read_recipe(png)
    assert recipe.params == params and recipe.seed == 1234 and recipe.model == "pattern-v1"

    # the outputs are every generator tab's controls in tab order; the pattern tab comes last
    model, seed, *values = client.predict(f"{job_id}-0", api_name="/reuse_settings")[-(2 + len(params)):]
    assert (model, seed) == ("pattern-v1", 1234) and dict(zip(params, values, strict=True)) == params

    items, page = client.predict("lighthouse", "", "", False, 1, api_name="/gallery_search")
    assert len(items) == 1 and page.endswith("1 artwork(s)")


def test_bad_input_is_refused_with_the_field_named(launched: tuple[Studio, Path]) -> None:
    studio, _ = launched
    client = Client(studio.url, verbose=False)
    with pytest.raises(Exception, match="`width` and `height` must be divisible by 8"):
        client.predict(model="pattern-v1", seed=1, width=50, api_name="/generate_pattern")
    with pytest.raises(Exception, match="ghost is not in the list of choices"):
        client.predict(model="ghost", seed=1, api_name="/generate_pattern")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_keeps_the_running_job(tmp_path: Path, how: signal.Signals) -> None:
    data_dir = tmp_path / "data"
    with Studio(data_dir, free_port()) as studio:
        stop_running_job(studio, data_dir, how)


def stop_running_job(studio: Studio, data_dir: Path, how: signal.Signals) -> None:
    client = Client(studio.url, verbose=False)
    job = client.submit(model="pattern-v1", seed=1, num_steps=200, step_delay=0.1, api_name="/generate_pattern")
    deadline = time.monotonic() + 60
    while not any(str(u[0]).startswith("Step") for u in job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    job_id = job.outputs()[-1][3]
    assert studio.interrupt(how=how) == 0
    queue = SqliteJobQueue(data_dir / "jobs.db")
    back = queue.get(job_id)
    assert back.status is JobStatus.PENDING and back.attempts == 0  # it runs again at the next launch
    assert not list((data_dir / "gallery" / "images").rglob("*.png"))  # nothing half-written
    queue.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal is Linux's")
def test_a_studio_and_its_workers_end_with_the_test_process_that_launched_it(tmp_path: Path) -> None:
    """A test process that dies without cleaning up (as pytest-timeout's thread method ends a hung session) leaves
    no studio behind; and `stop()` ends the studio's workers too."""
    script = textwrap.dedent("""
        import os, sys
        from pathlib import Path
        from tests.support.launched import Studio
        from tests.test_launch import free_port

        studio = Studio(Path(sys.argv[1]), free_port())
        print(studio.proc.pid, flush=True)
        os._exit(1)  # no finally, no atexit
    """)
    died = subprocess.run([sys.executable, "-c", script, str(tmp_path / "died")], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    group = int(died.stdout.split()[0])
    wait_for(lambda: not living_in_group(group), 60, "the studio's processes to end")

    studio = Studio(tmp_path / "stopped", free_port())
    wait_for(lambda: len(living_in_group(studio.proc.pid)) > 1, 60, "the studio's worker")  # launcher + worker(s)
    studio.stop()
    assert living_in_group(studio.proc.pid) == []


def test_a_busy_port_is_reported_and_the_next_one_taken(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        studio = Studio(tmp_path / "data", busy)
        try:
            assert not studio.url.endswith(f":{busy}/")
            assert studio.interrupt() == 0
            assert f"port {busy} is busy" in studio.proc.stderr.read()
        finally:
            studio.stop()


def test_a_second_launch_on_the_same_data_dir_points_at_the_running_studio(launched: tuple[Studio, Path]) -> None:
    studio, data_dir = launched
    proc = subprocess.run([sys.executable, "launch.py", "--no-browser", "--data-dir", str(data_dir),
                           "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"Atelier is already running at {studio.url}"]
    assert studio.proc.poll() is None  # the first one keeps serving


def users(data_dir: Path, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "launch.py", "users", "--data-dir", str(data_dir), *args], cwd=ROOT,
                          input=password + "\n", capture_output=True, text=True, timeout=60)


def test_users_added_on_the_command_line_are_the_studios_logins(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert users(data_dir, "add", "ana", password="apple-pie-42").stdout.startswith("added ana")
    assert users(data_dir, "add", "ben", password="blue-moon-7").returncode == 0
    short = users(data_dir, "add", "cy", password="short")
    assert short.returncode == 2 and "at least 8" in short.stderr
    assert users(data_dir, "add", "../evil", password="long-enough").returncode == 2
    assert users(data_dir, "list").stdout.split() == ["ana", "ben"]
    assert users(data_dir, "token", "ben").returncode == 0
    assert users(data_dir, "remove", "ben").returncode == 0
    assert users(data_dir, "remove", "ben").returncode == 2
    assert users(data_dir, "token", "ben").returncode == 2  # gone, and so is the token
    made = users(data_dir, "token", "ana")
    token = made.stdout.strip()  # the token alone on stdout, for TOKEN=$(...)
    assert token.startswith("atelier_") and "Bearer" in made.stderr
    stored = (data_dir / "logins").read_text()
    assert "apple-pie" not in stored and "ana:$argon2id$" in stored and "ben" not in stored
    assert (data_dir / "logins").stat().st_mode & 0o077 == 0  # readable by its owner only

    studio = Studio(data_dir, free_port())  # the data dir's logins file is read without a flag
    try:
        health = studio.url + "api/v1/health"
        assert httpx.get(health, timeout=30).status_code == 401
        assert httpx.get(health, auth=("ana", "wrong-password"), timeout=30).status_code == 401
        assert httpx.get(health, auth=("ana", "apple-pie-42"), timeout=30).status_code == 200
        assert httpx.get(health, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
        Client(studio.url, auth=("ana", "apple-pie-42"), verbose=False)  # the UI's login page takes it too
        with pytest.raises(ValueError, match="Could not login"):
            Client(studio.url, auth=("ana", "nope"), verbose=False)
        assert studio.interrupt() == 0
    finally:
        studio.stop()


def test_a_generated_password_is_printed_once_and_works(tmp_path: Path) -> None:
    studio = Studio(tmp_path / "data", free_port(), "--share-generate-password")
    try:
        match = re.search(r"Login: (\S+) / (\S+)", "".join(studio.printed))
        assert match, studio.printed
        user, password = match.groups()
        assert user == "atelier" and len(password) >= 20
        assert httpx.get(studio.url + "api/v1/health", timeout=30).status_code == 401
        assert httpx.get(studio.url + "api/v1/health", auth=(user, password), timeout=30).status_code == 200
        assert studio.interrupt() == 0
        assert password not in studio.proc.stderr.read()  # printed for the user, never logged
        assert not (tmp_path / "data" / "logins").exists()  # nor stored
    finally:
        studio.stop()


def test_a_shared_studio_without_logins_refuses_to_start(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "launch.py", "--no-browser", "--share", "--data-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "--share puts the studio on the internet, and it has no logins" in proc.stderr

    assert users(tmp_path, "add", "ana", password="apple-pie-42").returncode == 0
    assert users(tmp_path, "remove", "ana").returncode == 0  # the logins file is left with nobody in it
    proc = subprocess.run([sys.executable, "launch.py", "--no-browser", "--host", "0.0.0.0", "--data-dir",
                           str(tmp_path), "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "holds no user" in proc.stderr
