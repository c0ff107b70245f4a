"""Serve the studio (Gradio app and REST API) in-process on a free port, for tests that drive it over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from gradio_client import Client

from studio.config import StudioConfig
from studio.launcher import start_server
from studio.services import Services, build_services


@contextmanager
def serve_http(config: StudioConfig) -> Iterator[tuple[Services, str]]:
    """The studio as `launch.py` serves it (UI, API, the config's logins): (services, base URL ending in /)."""
    services = build_services(config)
    services.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = None
    try:
        app, url, _ = start_server(services, port=port)
        yield services, url
    finally:
        if app is not None:
            app.close()
        services.stop()


@contextmanager
def serve(config: StudioConfig) -> Iterator[tuple[Services, Client]]:
    with serve_http(config) as (services, url):
        yield services, Client(url, verbose=False)
