"""The REST API, mounted on the Gradio app's FastAPI server: /api/v1 (native) and /sdapi/v1 (AUTOMATIC1111).

`mount_api` puts the routes on the studio's server app before Gradio adds its own and before the server listens,
so they share the port, the share link and the logins of the UI, and answer from the first request.
/openapi.json documents the API's routes only — Gradio's internal routes are not part of it — and /docs shows
it with Swagger UI; on a studio with logins both need one (studio.edge asks before the route runs).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from studio import __version__
from studio.api.a1111 import a1111_router
from studio.api.auth import BASIC, BEARER, ApiUsers
from studio.api.errors import validation_error
from studio.api.native import native_router
from studio.api.styles import styles_router
from studio.services import Services

TITLE = "Atelier"
DESCRIPTION = ("Generate with every Atelier pipeline through the same queue, workers and gallery as the UI. "
               "When the studio has logins, send one with HTTP Basic authentication.")


def api_caller(users: ApiUsers) -> Callable[[Request], Awaitable[str]]:
    """The login check the edge runs before an API route reads its body: the caller's name, or HTTPException(401).
    A password that needs hashing is hashed in the thread pool by ApiUsers, never in the event loop."""

    async def caller(request: Request) -> str:
        credentials, bearer = await BASIC(request), await BEARER(request)
        return await users(request, credentials, bearer)

    return caller


def mount_api(app: FastAPI, services: Services, users: ApiUsers | None = None) -> None:
    users = users or ApiUsers(services.accounts)
    app.add_exception_handler(RequestValidationError, validation_error)  # Gradio's routes' too: no input echoed
    routers = [native_router(services, users), styles_router(services, users), a1111_router(services, users)]
    routes = [route for router in routers for route in router.routes]
    for router in routers:
        app.include_router(router)

    # /openapi.json documents our routes only, not Gradio's internal ones (FastAPI serves what `openapi()` returns).
    # Built once, on its first request: building it takes about a third of a second, which a launch need not wait for.
    @functools.cache
    def schema() -> dict[str, Any]:
        return get_openapi(title=TITLE, version=__version__, description=DESCRIPTION, routes=routes)

    app.openapi = schema  # type: ignore[method-assign]
    app.add_api_route("/docs", lambda: HTMLResponse(get_swagger_ui_html(openapi_url="/openapi.json",
                                                                        title=f"{TITLE} API").body),
                      include_in_schema=False)
