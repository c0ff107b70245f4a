"""The REST API, mounted on the Gradio app's FastAPI server: /api/v1 (native) and /sdapi/v1 (AUTOMATIC1111).

`mount_api` runs after Gradio has built its app (as AUTOMATIC1111 mounts its API), so the routes share the port,
the share link and the logins of the UI. /openapi.json documents the API's routes only — Gradio's internal
routes are not part of it — and /docs shows it with Swagger UI.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from studio import __version__
from studio.api.a1111 import a1111_router
from studio.api.auth import ApiUsers
from studio.api.native import native_router
from studio.services import Services

TITLE = "Atelier"
DESCRIPTION = ("Generate with every Atelier pipeline through the same queue, workers and gallery as the UI. "
               "When the studio has logins, send one with HTTP Basic authentication.")


def mount_api(app: FastAPI, services: Services) -> None:
    users = ApiUsers(services.accounts)
    routers = [native_router(services, users), a1111_router(services, users)]
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
