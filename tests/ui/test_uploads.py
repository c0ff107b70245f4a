"""Gradio's upload route over real HTTP: an upload that breaks off, or is refused after its body was read, leaves no
file in the studio's cache (it left a `tmp…` file at the cache's top, 0 bytes when the client stopped early)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_config
from tests.ui.serving import serve_http

BOUNDARY = b"atelier-test-boundary"


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_http(make_config(tmp_path_factory.mktemp("uploads") / "data")) as (_, url):
        yield url


def temporary_files() -> set[Path]:
    """The files at the top of Gradio's upload cache (the first studio's of this process: Gradio reads it once);
    complete uploads live one folder down, in `<sha256>/<name>`."""
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    return {p for p in cache.iterdir() if p.is_file()} if cache.is_dir() else set()


def broken_off_upload(url: str, data: bytes) -> None:
    """Announce a 100 kB upload, send a file part's headers and `data`, then hang up."""
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    part = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + data)
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n\r\n").encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(head + part)
        time.sleep(0.5)  # the server has opened the part's file and written what came


def settled(before: set[Path], timeout: float = 5.0) -> set[Path]:
    """The temporary files added since `before`, once none has been added for a moment (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    while (added := temporary_files() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    return added


@pytest.mark.parametrize("data", [b"", b"\x89PNG" + b"x" * 5000], ids=["after-headers", "mid-file"])
def test_an_upload_that_breaks_off_leaves_nothing_in_the_cache(studio_url: str, data: bytes) -> None:
    before = temporary_files()
    broken_off_upload(studio_url, data)
    assert settled(before) == set()


def test_an_upload_refused_after_its_body_was_read_leaves_nothing_in_the_cache(studio_url: str) -> None:
    before = temporary_files()
    refused = httpx.post(f"{studio_url}gradio_api/upload", files={"files": ("..", b"\x89PNG" + b"x" * 100)},
                         timeout=30)
    assert refused.status_code == 400 and "Invalid file name" in refused.text
    assert settled(before) == set()
    fine = httpx.post(f"{studio_url}gradio_api/upload", files={"files": ("a.png", b"\x89PNG" + b"y" * 100)},
                      timeout=30)
    assert fine.status_code == 200 and Path(fine.json()[0]).read_bytes().endswith(b"y" * 100)  # still stored
    assert settled(before) == set()
