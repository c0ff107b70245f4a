"""The command line: flags → StudioConfig → services → Gradio app → serve until Ctrl-C, then stop in order."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from studio.accounts import generate_password
from studio.config import GENERATED_USER, StudioConfig, parse_config

if TYPE_CHECKING:
    import gradio as gr

    from studio.services import Services

logger = logging.getLogger("atelier")

PORT_SEARCH = 100  # how many ports after a busy one are tried


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


def start_server(services: Services, *, host: str = "127.0.0.1", port: int, share: bool = False,
                 inbrowser: bool = False) -> tuple[gr.Blocks, str, str | None]:
    """Serve the UI and the REST API on one port, with the studio's logins; (app, local URL, share URL or None)."""
    from studio.api import mount_api
    from studio.gallery.inputs import MAX_INPUT_BYTES
    from studio.ui import build_app
    from studio.ui.file_guard import guard_gallery_files

    app = build_app(services)
    app.queue(default_concurrency_limit=8)
    server, local_url, share_url = app.launch(
        server_name=host, server_port=port, share=share, auth=services.accounts.gradio_auth, inbrowser=inbrowser,
        prevent_thread_lock=True, quiet=True, allowed_paths=[str(p) for p in services.gallery.media_dirs],
        footer_links=["api", "settings"], max_file_size=MAX_INPUT_BYTES,  # uploads past it are refused at once
    )
    try:
        mount_api(server, services)
        guard_gallery_files(server, services)
    except Exception:
        app.close()
        raise
    return app, local_url, share_url


def serve(config: StudioConfig) -> None:
    """Run the studio until Ctrl-C or SIGTERM; always stops the UI, then the workers, before returning."""
    from studio.services import DataDirBusy, build_services

    if threading.current_thread() is threading.main_thread():
        # SIGTERM (service managers, `kill`) ends the studio exactly as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        services = build_services(config)
    except (DataDirBusy, ValueError) as e:
        raise SystemExit(f"launch.py: error: {e}") from None
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
    app = None
    try:
        services.start()
        port = find_port(config.host, config.port)
        app, local_url, share_url = start_server(services, host=config.host, port=port, share=config.share,
                                                 inbrowser=config.open_browser)
        print(f"Atelier is running at {local_url}", flush=True)  # noqa: T201 -- the CLI's one line for the user
        if share_url:
            print(f"Public link: {share_url}", flush=True)  # noqa: T201
        elif config.share:
            print("No public link: Gradio could not open its share tunnel (the reason is above; it needs the "  # noqa: T201
                  "internet). The studio keeps serving on this machine.", flush=True)
        while True:  # sleep, not Event.wait: a signal handler inside Event.wait can deadlock on its lock
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("interrupted")
    finally:
        logger.info("shutting down: stopping the server, then the workers")
        if app is not None:
            app.close()
        services.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["users"]:
        from studio.users_cli import users_main

        raise SystemExit(users_main(args[1:]))
    config = parse_config(args)
    logging.basicConfig(level=config.logging_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    serve(config)
