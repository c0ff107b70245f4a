"""Serve the studio's Gradio app in-process on a free port, for tests that drive it with gradio_client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from gradio_client import Client

from studio.config import StudioConfig
from studio.services import Services, build_services
from studio.ui import build_app


@contextmanager
def serve(config: StudioConfig) -> Iterator[tuple[Services, Client]]:
    services = build_services(config)
    services.start()
    app = build_app(services)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.queue()
    try:
        _, url, _ = app.launch(server_port=port, prevent_thread_lock=True, quiet=True,
                               allowed_paths=[str(services.gallery.root)])
        yield services, Client(url, verbose=False)
    finally:
        app.close()
        services.stop()
