"""Gallery files in the browser: only their owner's, and only artworks' files.

The UI shows artworks through Gradio's file route (`/gradio_api/file=PATH`), which serves any file under its
allowed paths to anyone logged in. The allowed paths are the gallery's media folders only (never its database),
and this guard, which the studio's edge runs before Gradio's route sees the request, lets a request for a file
in the gallery through only when the file belongs to an artwork of the logged-in user. The path is resolved
first as Gradio resolves it (`..` lexically, so `http:/../..` and percent-encoded dots land where they really
point) and then through symlinks; a gallery file that is not an artwork's is refused, as is a path that does not
resolve at all (a NUL byte).

Gradio's route would also fetch remote `http(s)://` URLs on a client's behalf; nothing in the studio needs that, so
the guard refuses them rather than let logged-in users use the server as a proxy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, Request

from studio.accounts import LOCAL_USER, session_user
from studio.gallery import ArtworkNotFound
from studio.services import Services

_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # a URL Gradio would fetch, whatever its scheme


def gallery_file_check(services: Services) -> Callable[[str, Request], None]:
    """The check the studio's edge (studio.edge) runs on the path of each request to Gradio's file routes: it
    raises HTTPException(404) for a gallery file that is not the caller's artwork's, a remote URL or a path that
    does not resolve. A path outside the gallery goes on to Gradio, which serves its allowed paths only."""
    root = services.gallery.root

    def check(path: str, request: Request) -> None:
        target = _where(path)
        if target.is_relative_to(root):
            _check_owner(services, root, target, request)

    return check


def _where(path: str) -> Path:
    """The file a request for `path` would really read: Gradio's own lexical `abspath`, then through symlinks."""
    if _REMOTE.match(path):
        raise HTTPException(404, "the studio serves its own files only, not other sites'")
    try:
        return Path(os.path.realpath(os.path.abspath(path)))
    except (ValueError, OSError):  # a NUL byte, a name too long for the system
        raise HTTPException(404, "no such file") from None


def _check_owner(services: Services, root: Path, target: Path, request: Request) -> None:
    user = session_user(request) or (LOCAL_USER if not services.accounts.required else None)
    refused = HTTPException(404, "no such artwork file")  # the same answer whether it exists or not
    if user is None:
        raise refused
    parts = target.relative_to(root).parts
    if len(parts) < 2 or parts[0] not in ("images", "thumbs") or target.suffix not in (".png", ".webp", ".gif",
                                                                                        ".mp4"):
        raise refused
    try:
        artwork = services.gallery.get(target.stem)
    except (ArtworkNotFound, ValueError):
        raise refused from None
    files = {artwork.path.resolve(), artwork.thumb_path.resolve(), *(p.resolve() for p in artwork.media.values())}
    if not services.may_view(artwork, user) or target not in files:
        raise refused
