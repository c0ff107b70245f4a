"""The command line: flags → StudioConfig → services → Gradio app → serve until Ctrl-C, then stop in order.

A desktop launch opens the browser (or, with --window, a pywebview window) once the server answers. One studio
serves a data dir: it writes its URL into the data dir while it serves, so launching again opens that studio
instead of failing on the data dir's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from studio.accounts import generate_password
from studio.config import GENERATED_USER, StudioConfig, parse_config

if TYPE_CHECKING:
    import gradio as gr

    from studio.services import Services

logger = logging.getLogger("atelier")

PORT_SEARCH = 100  # how many ports after a busy one are tried
URL_FILE = "atelier.url"  # in the data dir: the URL of the studio holding its lock, written once it serves
# how long a second launch waits for the studio holding the data dir to answer: one that has just taken the lock
# serves within about 5 s on a 2-core CPU (benchmarks/launch.py: 7 s from process start to the first HTTP 200)
RUNNING_WAIT = 10.0
SERVER_CLOSE_GRACE_S = 1.0  # requests still open this long after a shutdown begins are cut (event streams, mostly)
# not `pip install "atelier[window]"`: PyPI's "atelier" is another project, which pip would fetch if this one
# was run from a checkout without being installed
WINDOW_INSTALL = 'python -m pip install "pywebview>=5"'
PYWEBVIEW_BACKENDS = "https://pywebview.flowrl.com/guide/installation.html"


def find_port(host: str, port: int) -> int:
    """`port` if free, else the next free one (said in the log); an error naming the range if none is."""
    for candidate in range(port, min(port + PORT_SEARCH, 65536)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            if os.name != "nt":  # as uvicorn does: a port in TIME_WAIT after a restart is free (not so on Windows)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, candidate))
            except OSError:
                continue
        if candidate != port:
            logger.warning("port %d is busy; using %d instead", port, candidate)
        return candidate
    raise SystemExit(f"launch.py: error: no free port between {port} and {port + PORT_SEARCH - 1} on {host}")


def start_server(services: Services, *, host: str = "127.0.0.1", port: int,
                 share: bool = False) -> tuple[gr.Blocks, str, str | None]:
    """Serve the UI and the REST API on one port, with the studio's logins; (app, local URL, share URL or None).

    The API's routes and the edge (studio.edge) are on the server app before it listens, so the first request
    it answers is checked and routed as every later one. It returns once the server answers HTTP (Gradio checks
    the local URL before it returns).
    """
    from studio.api import api_caller, mount_api
    from studio.api.auth import ApiUsers, serve_logins
    from studio.edge import EdgePolicy, StudioServer
    from studio.gallery.inputs import MAX_INPUT_BYTES
    from studio.ui import build_app
    from studio.ui.file_guard import gallery_file_check

    app = build_app(services)  # first: it sets Gradio's upload dir, which the server app reads when it is made
    app.queue(default_concurrency_limit=8)
    users = ApiUsers(services.accounts)
    policy = EdgePolicy.for_config(services.config, logins=lambda: users.required, caller=api_caller(users),
                                   check_file=gallery_file_check(services))
    # FastAPI's own /docs and /redoc are off: the API serves its own /docs, of its routes only
    server_app = StudioServer(policy, docs_url=None, redoc_url=None)
    mount_api(server_app, services, users)
    serve_logins(server_app, services.accounts)
    server, local_url, share_url = app.launch(
        server_name=host, server_port=port, share=share, auth=services.accounts.gradio_auth,
        prevent_thread_lock=True, quiet=True, allowed_paths=[str(p) for p in services.gallery.media_dirs],
        footer_links=["api", "settings"], max_file_size=MAX_INPUT_BYTES,  # uploads past it are refused at once
        _app=server_app,
    )
    # an open browser tab keeps an event stream open, which never ends by itself: past this grace uvicorn cuts what
    # is still open, rather than every shutdown waiting out Gradio's 5 s join of the server thread
    app.server.config.timeout_graceful_shutdown = SERVER_CLOSE_GRACE_S
    logging.getLogger("uvicorn.error").addFilter(_quiet_stream_cuts)
    return app, local_url, share_url


def _quiet_stream_cuts(record: logging.LogRecord) -> bool:
    """Keep uvicorn from reporting, as errors with a traceback, the streams it cuts at shutdown (as asked)."""
    cut = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
    return not cut and "timeout graceful shutdown exceeded" not in record.getMessage()


def claim_data_dir(config: StudioConfig) -> Services | str:
    """This launch's services, holding the data dir's lock; or the URL of the studio that already holds it.

    A studio writes its URL file once it serves and removes it before it stops, so a held lock without a URL that
    answers is a studio starting or stopping: wait a little for it to answer, or to let go of the data dir.
    """
    from studio.services import DataDirBusy, build_services

    deadline = time.monotonic() + RUNNING_WAIT
    waiting = False
    while True:
        try:
            services = build_services(config)
        except DataDirBusy:
            url = running_url(config.data_dir)
            if url is not None:
                return url
            if time.monotonic() >= deadline:
                raise SystemExit(f"launch.py: error: {config.data_dir} is in use by another running Atelier, which "
                                 f"did not answer within {RUNNING_WAIT:.0f} s (starting, stopping or stuck); try "
                                 "again in a moment, stop it, or pass another --data-dir") from None
            if not waiting:
                logger.info("%s is in use by another Atelier that does not answer yet; waiting up to %.0f s",
                            config.data_dir, RUNNING_WAIT)
                waiting = True
            time.sleep(0.25)
        else:
            (config.data_dir / URL_FILE).unlink(missing_ok=True)  # left by a studio that crashed
            return services


def running_url(data_dir: Path) -> str | None:
    """The URL in the data dir's URL file, if a studio answers there; else None."""
    import httpx

    try:
        url = (data_dir / URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not url.startswith("http://"):
        return None
    try:
        # never through a proxy: the URL is this machine's (or its network's), as Gradio printed it
        status = httpx.get(url.rstrip("/") + "/api/v1/health", timeout=2, trust_env=False).status_code
    except (httpx.HTTPError, httpx.InvalidURL):
        return None
    return url if status in (200, 401) else None  # 401: a studio with logins, up and asking for one


def announce(url_file: Path, url: str) -> None:
    """Write the URL file whole or not at all: a second launch may read it at any moment."""
    partial = url_file.with_name(f"{url_file.name}.{os.getpid()}.tmp")
    partial.write_text(url + "\n", encoding="utf-8")
    os.replace(partial, url_file)


def open_window(url: str) -> str | None:
    """Show `url` in a native pywebview window until the user closes it: None then, else why no window opened."""
    try:
        import webview
    except ImportError:
        return f"pywebview is not installed (for the window: {WINDOW_INSTALL}, Atelier's \"window\" extra)"
    if sys.platform not in ("win32", "darwin") and not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY")):
        # without a display, GTK and Qt may abort the whole process rather than raise
        return "there is no display to show it on (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    try:
        webview.create_window("Atelier", url)
        webview.start()  # the GUI loop, on this (the main) thread, until the window is closed
    except Exception as e:  # pywebview's own error, or its GUI toolkit's, when no backend can start here
        logger.debug("pywebview could not start", exc_info=True)
        reason = " ".join(str(e).split()) or type(e).__name__
        return f"pywebview could not start ({reason}; it needs a GUI backend: {PYWEBVIEW_BACKENDS})"
    return None


def show(url: str, config: StudioConfig) -> bool:
    """Put the studio before the user: in a window with --window (True once it is closed), else in the browser."""
    if config.window:
        why_not = open_window(url)
        if why_not is None:
            return True
        instead = "; opening the browser instead" if config.open_browser else ""
        print(f"No window: {why_not}{instead}.", flush=True)  # noqa: T201
    if config.open_browser and not webbrowser.open(url):
        logger.info("found no browser to open; the studio is at %s", url)
    return False


def check_logins(config: StudioConfig, services: Services) -> None:
    """Print a generated password; refuse an exposed studio left without logins, and warn when allowed to."""
    if config.share_generate_password:
        password = generate_password()
        services.accounts.add(GENERATED_USER, password)
        # printed once, never logged or stored: the user copies it now or relaunches for a new one
        print(f"Login: {GENERATED_USER} / {password}", flush=True)  # noqa: T201
    if config.exposed and not services.accounts.required and not config.insecure_no_auth:
        services.stop()  # e.g. a logins file whose every user was removed: still no login, still refused
        raise SystemExit(f"launch.py: error: {config.logins_files[0]} holds no user, so the studio would have no "
                         "login; add one with `python launch.py users add NAME` (or pass --insecure-no-auth)")
    if config.exposed and not services.accounts.required:
        logger.warning("!!! --insecure-no-auth: the studio is open to anyone who can reach %s, with no login: "
                       "they can use its GPU and see and delete every artwork !!!",
                       "its share link" if config.share else f"{config.host}:{config.port}")


def serve(config: StudioConfig) -> None:
    """Run the studio until Ctrl-C, SIGTERM or its window's closing; always stops the UI, then the workers.

    When another studio serves the data dir already, open that one instead and return.
    """
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (service managers, `kill`) ends the studio exactly as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        claimed = claim_data_dir(config)
    except ValueError as e:
        raise SystemExit(f"launch.py: error: {e}") from None
    if isinstance(claimed, str):
        print(f"Atelier is already running at {claimed}", flush=True)  # noqa: T201
        with contextlib.suppress(KeyboardInterrupt):
            show(claimed, config)
        return
    services = claimed
    check_logins(config, services)
    url_file = config.data_dir / URL_FILE
    app = None
    try:
        services.start()
        port = find_port(config.host, config.port)
        app, local_url, share_url = start_server(services, host=config.host, port=port, share=config.share)
        announce(url_file, local_url)  # the server answers from here on
        print(f"Atelier is running at {local_url}", flush=True)  # noqa: T201 -- the CLI's one line for the user
        if share_url:
            print(f"Public link: {share_url}", flush=True)  # noqa: T201
        elif config.share:
            print("No public link: Gradio could not open its share tunnel (the reason is above; it needs the "  # noqa: T201
                  "internet). The studio keeps serving on this machine.", flush=True)
        if show(local_url, config):
            logger.info("the window was closed")
        else:
            while True:  # sleep, not Event.wait: a signal handler inside Event.wait can deadlock on its lock
                time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("interrupted")
    finally:
        logger.info("shutting down: stopping the server, then the workers")
        url_file.unlink(missing_ok=True)  # first, so that a launch from now on waits rather than opens this studio
        if app is not None:
            app.close()
        services.stop()


def warn_of_passwords_in(args: Sequence[str]) -> None:
    """--auth USER:PASS on the command line shows the password to every user of the machine (`ps`); the
    environment (ATELIER_AUTH) does not, nor does a logins file."""
    if any(arg == "--auth" or arg.startswith("--auth=") for arg in args):
        logger.warning("--auth shows its password to anyone on this machine who lists its processes (`ps`); store "
                       "the login with `python launch.py users add NAME` instead (a hash in the data dir's logins "
                       "file, or in --auth-file)")


def main(argv: Sequence[str] | None = None) -> None:
    """`python launch.py` and the `atelier` command alike."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["users"]:
        from studio.users_cli import users_main

        raise SystemExit(users_main(args[1:]))
    config = parse_config(args)
    logging.basicConfig(level=config.logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    warn_of_passwords_in(args)
    serve(config)
