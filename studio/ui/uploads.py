"""Gradio's upload route, made to leave nothing behind when an upload breaks off.

Gradio (`route_utils.upload_fn`) writes each uploaded file to a `tmp…` file at the top of its cache as the bytes
arrive, and moves it to `<sha256>/<name>` once the whole request is read. It removes that temporary file only when
the multipart body is malformed: a client that disconnects mid-body, or a request refused after its body was read
(a file named `..` answers 400), left it in the cache for good — 0 bytes when the client stopped right after a
part's headers, up to the body limit otherwise, and never swept by `delete_cache`, which only knows the files it
handed out. Here each upload call records the temporary files its parser opens and removes them if it fails.

Gradio has no hook for this, so `install()` swaps two names of Gradio's own modules: the upload route's
`upload_fn` (looked up in `gradio.routes` at each call) and the parser class it makes (looked up in
`gradio.route_utils`). The studio's cache sweep at start (studio/ui/app.py) covers what a killed process left.
"""

from __future__ import annotations

import contextvars
import logging
from pathlib import Path
from typing import IO, Any

from gradio import route_utils, routes

logger = logging.getLogger(__name__)

_GRADIO_UPLOAD_FN = route_utils.upload_fn
# the temporary files the upload running in this context has opened (None outside an upload)
_opened: contextvars.ContextVar[list[IO[bytes]] | None] = contextvars.ContextVar("atelier_upload_files",
                                                                                default=None)


class _RecordingParser(route_utils.GradioMultiPartParser):
    """Gradio's multipart parser, telling the upload that runs it which temporary file each file part opened."""

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part, opened = self._current_part.file, _opened.get()
        if part is not None and opened is not None:
            opened.append(part.file)


async def upload_leaving_nothing(*args: Any, **kwargs: Any) -> Any:
    """Gradio's `upload_fn`; when it fails (the client went away, a name refused), the temporary files it was
    writing are closed and removed. Those it had moved into the cache are no longer at their temporary names."""
    opened: list[IO[bytes]] = []
    token = _opened.set(opened)
    try:
        return await _GRADIO_UPLOAD_FN(*args, **kwargs)
    except BaseException:
        for file in opened:
            file.close()
            Path(file.name).unlink(missing_ok=True)
        if opened:
            logger.info("an upload broke off; removed its %d temporary file(s)", len(opened))
        raise
    finally:
        _opened.reset(token)


def install() -> None:
    """Make Gradio's upload route clean up after a failed upload (idempotent)."""
    route_utils.GradioMultiPartParser = _RecordingParser  # type: ignore[misc]
    routes.upload_fn = upload_leaving_nothing  # type: ignore[assignment]
