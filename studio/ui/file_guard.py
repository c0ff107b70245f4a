"""Gallery files in the browser: only their owner's, and only artworks' files.

The UI shows artworks through Gradio's file route (`/gradio_api/file=PATH`), which serves any file under its
allowed paths to anyone logged in. The allowed paths are the gallery's media folders only (never its database),
and this guard, placed before Gradio's route, lets a request for a file in the gallery through only when the
file belongs to an artwork of the logged-in user. The path is resolved first as Gradio resolves it (`..`
lexically, so `http:/../..` and percent-encoded dots land where they really point) and then through symlinks; a
gallery file that is not an artwork's is refused, as is a path that does not resolve at all (a NUL byte).

Gradio's route would also fetch remote `http(s)://` URLs on a client's behalf; nothing in the studio needs that, so
the guard refuses them rather than let logged-in users use the server as a proxy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from studio.accounts import LOCAL_USER, session_user
from studio.gallery import ArtworkNotFound
from studio.services import Services

_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # a URL Gradio would fetch, whatever its scheme
GRADIO_FILE_ROUTES = ("/gradio_api/file={path_or_url:path}", "/gradio_api/file/{path:path}")


def guard_gallery_files(app: FastAPI, services: Services) -> None:
    """Put the owner check in front of Gradio's file routes (call after `launch`, as for `mount_api`)."""
    root = services.gallery.root
    for gradio_route in _gradio_file_routes(app):
        app.router.routes.insert(0, APIRoute(
            gradio_route.path, _guarded(gradio_route, services, root), methods=list(gradio_route.methods),
            include_in_schema=False, dependencies=gradio_route.dependencies))  # Gradio's login check too


def _guarded(gradio_route: APIRoute, services: Services, root: Path) -> Callable[..., Awaitable[Response]]:
    async def file(request: Request) -> Response:
        path = next(iter(request.path_params.values()))
        target = _where(path)
        if target.is_relative_to(root):
            _check_owner(services, root, target, request)
        return await gradio_route.endpoint(path, request)

    return file


def _where(path: str) -> Path:
    """The file a request for `path` would really read: Gradio's own lexical `abspath`, then through symlinks."""
    if _REMOTE.match(path):
        raise HTTPException(404, "the studio serves its own files only, not other sites'")
    try:
        return Path(os.path.realpath(os.path.abspath(path)))
    except (ValueError, OSError):  # a NUL byte, a name too long for the system
        raise HTTPException(404, "no such file") from None


def _gradio_file_routes(app: FastAPI) -> list[APIRoute]:
    """Gradio's file routes, wherever its router nests them."""
    found, stack = [], list(app.router.routes)
    while stack:
        route = stack.pop()
        if isinstance(route, APIRoute) and route.path in GRADIO_FILE_ROUTES:
            found.append(route)
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        stack += getattr(inner, "routes", [])
    if not found:
        raise RuntimeError("Gradio's file route was not found: the gallery files cannot be guarded")
    return found


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
