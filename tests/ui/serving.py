"""Serve the studio (Gradio app and REST API) in-process on a free port, for tests that drive it over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from gradio_client import Client

from studio.api import mount_api
from studio.config import StudioConfig
from studio.services import Services, build_services
from studio.ui import build_app


@contextmanager
def serve_http(config: StudioConfig) -> Iterator[tuple[Services, str]]:
    """The studio as `launch.py` serves it (UI, API, the config's logins): (services, base URL ending in /)."""
    services = build_services(config)
    services.start()
    app = build_app(services)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.queue()
    try:
        server, url, _ = app.launch(server_port=port, prevent_thread_lock=True, quiet=True,
                                    allowed_paths=[str(services.gallery.root)], auth=services.accounts.gradio_auth)
        mount_api(server, services)
        yield services, url
    finally:
        app.close()
        services.stop()


@contextmanager
def serve(config: StudioConfig) -> Iterator[tuple[Services, Client]]:
    with serve_http(config) as (services, url):
        yield services, Client(url, verbose=False)
