"""The desktop launch: the browser opens once the server answers, a second launch on the same data dir opens the
running studio, and --window shows the studio in a pywebview window (or says why not and opens the browser).

The launched processes get a `sitecustomize` that replaces `webbrowser.open` with a "browser" that fetches the URL
and notes the status it got, so each opening also proves that the server answered by then.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from filelock import FileLock

from studio import launcher
from studio.launcher import URL_FILE, claim_data_dir, open_window, show
from tests.conftest import PLUGIN, make_config, wait_for
from tests.support.launched import ROOT, Studio
from tests.test_launch import free_port

BROWSER_HOOK = textwrap.dedent('''
    """Test hook, run at interpreter start: the browser fetches the URL it is asked to open and notes the answer."""
    import os
    import webbrowser


    def _open(url, new=0, autoraise=True):
        import httpx

        try:
            answer = str(httpx.get(url, timeout=30, trust_env=False).status_code)
        except httpx.HTTPError as e:
            answer = type(e).__name__
        with open(os.environ["OPENED_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{answer} {url}\\n")
        return True


    webbrowser.open = _open
''')

# pywebview as the user sees it: a window with the URL; its GUI loop returns when the window is closed, here at once
FAKE_WEBVIEW = textwrap.dedent('''
    """A stand-in for pywebview that notes the windows asked for, and what they showed, in WEBVIEW_LOG."""
    import json
    import os
    import threading

    _windows = []


    def create_window(title, url=None, **kwargs):
        _windows.append([title, url])


    def start(*args, **kwargs):
        import httpx

        answers = [httpx.get(url, timeout=30, trust_env=False).status_code for _, url in _windows]
        with open(os.environ["WEBVIEW_LOG"], "w", encoding="utf-8") as log:
            json.dump({"windows": _windows, "answers": answers,
                       "main_thread": threading.current_thread() is threading.main_thread()}, log)
''')


def opened(log: Path) -> list[str]:
    """What the browser hook was asked to open, as "STATUS URL" lines."""
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.fixture
def desktop(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for a launched studio whose browser is the hook (and which cannot import pywebview)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BROWSER_HOOK, encoding="utf-8")
    # whatever this machine has installed, `import webview` fails as it does without pywebview
    (hooks / "webview.py").write_text('raise ImportError("No module named \'webview\'")\n', encoding="utf-8")
    log = tmp_path / "opened.log"
    path = [str(hooks), str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(path), "OPENED_LOG": str(log)}, log


def atelier_command() -> tuple[str, ...]:
    """The `atelier` console script of this interpreter's install (`pip install -e .` puts it there)."""
    script = shutil.which("atelier", path=str(Path(sys.executable).parent)) or shutil.which("atelier")
    if script is None:
        pytest.skip("the `atelier` command is not installed (python -m pip install -e .)")
    return (script,)


@pytest.mark.slow
def test_the_browser_opens_once_at_the_printed_url_after_the_server_answers(
        tmp_path: Path, desktop: tuple[dict[str, str], Path]) -> None:
    # `atelier` is the same program (test_the_atelier_command_is_launch_py): one launch covers both
    env, log = desktop
    data_dir = tmp_path / "data"
    studio = Studio(data_dir, free_port(), env=env, command=(sys.executable, "launch.py"), browser=True)
    try:
        assert wait_for(lambda: opened(log), 60, "the browser") == [f"200 {studio.url}"]
        assert (data_dir / URL_FILE).read_text(encoding="utf-8") == studio.url + "\n"  # for a second launch
        assert studio.interrupt() == 0
        assert opened(log) == [f"200 {studio.url}"]  # once
        assert not (data_dir / URL_FILE).exists()
    finally:
        studio.stop()


def test_the_atelier_command_is_launch_py() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"atelier": "studio.launcher:main"}
    assert "from studio.launcher import main" in (ROOT / "launch.py").read_text(encoding="utf-8")
    # this tree's studio, wherever the editable install was made from
    path = os.pathsep.join([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    via_script = subprocess.run([*atelier_command(), "--help"], env={**os.environ, "PYTHONPATH": path},
                                capture_output=True, text=True, timeout=60)
    via_launch = subprocess.run([sys.executable, "launch.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
    assert via_script.returncode == via_launch.returncode == 0
    assert via_script.stdout == via_launch.stdout and "--window" in via_script.stdout


@pytest.mark.slow
def test_a_second_launch_opens_the_running_studio_and_another_data_dir_gets_its_own(
        tmp_path: Path, desktop: tuple[dict[str, str], Path]) -> None:
    env, log = desktop
    first = Studio(tmp_path / "data", free_port(), env=env)
    other = None
    try:
        second = subprocess.run(
            [sys.executable, "launch.py", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
            cwd=ROOT, env={**os.environ, "ATELIER_PLUGINS": PLUGIN, "ATELIER_DEVICES": "cpu", **env},
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert second.stdout.splitlines() == [f"Atelier is already running at {first.url}"]
        assert "does not answer yet" not in second.stderr  # found at once, no waiting
        assert opened(log) == [f"200 {first.url}"]
        assert first.proc.poll() is None and httpx.get(first.url + "api/v1/health", timeout=30).status_code == 200

        port = free_port()  # another data dir on an explicit port is another studio, as before
        other = Studio(tmp_path / "other", port, env=env)
        assert other.url == f"http://127.0.0.1:{port}/" != first.url
        assert other.interrupt() == 0
        assert first.proc.poll() is None
        assert first.interrupt() == 0
    finally:
        for studio in (first, other):
            if studio is not None:
                studio.stop()


@pytest.mark.slow
def test_window_without_pywebview_says_why_and_opens_the_browser(
        tmp_path: Path, desktop: tuple[dict[str, str], Path]) -> None:
    env, log = desktop
    studio = Studio(tmp_path / "data", free_port(), "--window", env=env, browser=True)
    try:
        said = studio.next_line().rstrip("\n")
        assert said == ('No window: pywebview is not installed (for the window: python -m pip install '
                        '"pywebview>=5", Atelier\'s "window" extra); opening the browser instead.')
        assert wait_for(lambda: opened(log), 60, "the browser") == [f"200 {studio.url}"]
        assert studio.interrupt() == 0
    finally:
        studio.stop()


@pytest.mark.slow
def test_window_shows_the_studio_and_closing_it_stops_the_studio_in_order(
        tmp_path: Path, desktop: tuple[dict[str, str], Path]) -> None:
    env, log = desktop
    fake = tmp_path / "fake"
    (fake / "webview").mkdir(parents=True)
    (fake / "webview" / "__init__.py").write_text(FAKE_WEBVIEW, encoding="utf-8")
    record = tmp_path / "window.json"
    env = {**env, "PYTHONPATH": os.pathsep.join([str(fake), env["PYTHONPATH"]]), "WEBVIEW_LOG": str(record),
           "DISPLAY": ":0"}
    data_dir = tmp_path / "data"
    studio = Studio(data_dir, free_port(), "--window", "--log-level", "info", env=env, browser=True)
    try:
        stderr = studio.proc.stderr.read()  # to its end: the window "closes" at once, and the studio stops
        assert studio.proc.wait(timeout=120) == 0, stderr
        assert json.loads(record.read_text()) == {"windows": [["Atelier", studio.url]], "answers": [200],
                                                  "main_thread": True}
        assert opened(log) == []  # the window instead of the browser
        assert "the window was closed" in stderr
        assert stderr.index("stopping the server, then the workers") < stderr.index("workers stopped")
        assert not (data_dir / URL_FILE).exists()
        FileLock(data_dir / "atelier.lock").acquire(timeout=0)  # the data dir is free again
    finally:
        studio.stop()


# -- in-process: how a launch finds a studio that holds its data dir ------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/api/v1/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback server answering /api/v1/health with the status the test asks for; its URL."""
    handler = type("Handler", (_Health,), {"status": getattr(request, "param", 200)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def held(data_dir: Path) -> FileLock:
    """The data dir's lock as another studio holds it (releasable from any thread)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(data_dir / "atelier.lock", thread_local=False)
    lock.acquire(timeout=0)
    return lock


@pytest.mark.parametrize(("health_server", "found"), [(200, True), (401, True), (404, False)],
                         indirect=["health_server"])
def test_a_busy_data_dir_waits_for_its_studio_to_announce_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, health_server: str, found: bool) -> None:
    monkeypatch.setattr(launcher, "RUNNING_WAIT", 3.0)
    data_dir = tmp_path / "data"
    lock = held(data_dir)
    # the other studio is still starting: it writes its URL a moment after this launch looked
    later = threading.Timer(1.0, lambda: (data_dir / URL_FILE).write_text(health_server + "\n"))
    later.start()
    started = time.monotonic()
    try:
        if found:  # 200, or 401 from a studio with logins
            assert claim_data_dir(make_config(data_dir)) == health_server
            assert time.monotonic() - started >= 1.0
        else:  # something answers there, but not a studio
            with pytest.raises(SystemExit, match="did not answer within 3 s"):
                claim_data_dir(make_config(data_dir))
    finally:
        later.join()
        lock.release()


def test_a_busy_data_dir_whose_studio_never_answers_is_an_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "RUNNING_WAIT", 1.0)
    data_dir = tmp_path / "data"
    lock = held(data_dir)
    (data_dir / URL_FILE).write_text(f"http://127.0.0.1:{free_port()}/\n")  # nothing listens there
    try:
        with pytest.raises(SystemExit) as exc:
            claim_data_dir(make_config(data_dir))
    finally:
        lock.release()
    assert str(exc.value.code) == (
        f"launch.py: error: {data_dir} is in use by another running Atelier, which did not answer within 1 s "
        "(starting, stopping or stuck); try again in a moment, stop it, or pass another --data-dir")


def test_a_data_dir_let_go_during_the_wait_is_taken_and_a_crashed_studios_url_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "RUNNING_WAIT", 30.0)
    data_dir = tmp_path / "data"
    lock = held(data_dir)  # a studio stopping
    (data_dir / URL_FILE).write_text(f"http://127.0.0.1:{free_port()}/\n")
    later = threading.Timer(1.0, lock.release)
    later.start()
    services = claim_data_dir(make_config(data_dir))
    later.join()
    try:
        assert not isinstance(services, str)
        assert not (data_dir / URL_FILE).exists()  # this studio writes its own once it serves
    finally:
        services.stop()


# -- in-process: the window, or why not ------------------------------------------------------------------------------


def fake_webview(fails: Exception | None = None) -> types.ModuleType:
    module = types.ModuleType("webview")
    module.windows = []

    def start() -> None:
        if fails is not None:
            raise fails

    module.create_window = lambda title, url: module.windows.append((title, url))
    module.start = start
    return module


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What `webbrowser.open` was asked to open."""
    asked: list[str] = []
    monkeypatch.setattr(launcher.webbrowser, "open", lambda url: asked.append(url) or True)
    return asked


def test_without_pywebview_the_reason_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webview", None)  # `import webview` raises ImportError
    assert open_window("http://127.0.0.1:7860/") == (
        'pywebview is not installed (for the window: python -m pip install "pywebview>=5", Atelier\'s "window" extra)')


def test_without_a_display_no_window_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    webview = fake_webview()
    monkeypatch.setitem(sys.modules, "webview", webview)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert open_window("http://127.0.0.1:7860/") == (
        "there is no display to show it on (neither DISPLAY nor WAYLAND_DISPLAY is set)")
    assert webview.windows == []


@pytest.mark.parametrize("open_browser", [True, False])
def test_a_window_that_cannot_start_falls_back_to_the_browser_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], browser: list[str],
        open_browser: bool) -> None:
    error = RuntimeError("You must have either QT or GTK with Python extensions installed\nin order to use pywebview.")
    monkeypatch.setitem(sys.modules, "webview", fake_webview(fails=error))
    monkeypatch.setenv("DISPLAY", ":0")
    url = "http://127.0.0.1:7860/"
    assert show(url, make_config(Path("unused"), window=True, open_browser=open_browser)) is False
    said = capsys.readouterr().out
    assert said == ("No window: pywebview could not start (You must have either QT or GTK with Python extensions "
                    "installed in order to use pywebview.; it needs a GUI backend: "
                    "https://pywebview.flowrl.com/guide/installation.html)"
                    + ("; opening the browser instead." if open_browser else ".") + "\n")
    assert browser == ([url] if open_browser else [])


def test_a_window_that_opens_replaces_the_browser(monkeypatch: pytest.MonkeyPatch, browser: list[str]) -> None:
    webview = fake_webview()
    monkeypatch.setitem(sys.modules, "webview", webview)
    monkeypatch.setenv("DISPLAY", ":0")
    url = "http://127.0.0.1:7860/"
    assert show(url, make_config(Path("unused"), window=True, open_browser=True)) is True  # closed by the user
    assert webview.windows == [("Atelier", url)] and browser == []
    assert show(url, make_config(Path("unused"), open_browser=True)) is False
    assert browser == [url]
