"""The caller's prompt styles over the native API: list, save, delete, and A1111's styles.csv both ways.

A1111 clients read the same styles from GET /sdapi/v1/prompt-styles; a job names them in `styles`.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time (the caller dependency
# is built inside `styles_router`).

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response

from studio.api.errors import http_errors
from studio.api.schemas import StyleIn, StyleOut, StylesImported
from studio.services import Services
from studio.styles import MAX_CSV_BYTES, Style, StyleError, read_csv, write_csv

PREFIX = "/api/v1"


def styles_router(services: Services, users: Callable[..., str]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["Atelier prompt styles"])
    User = Annotated[str, Depends(users)]  # noqa: N806 -- a type alias for the routes below
    store = services.styles

    @router.get("/styles", response_model=list[StyleOut], summary="The caller's prompt styles")
    def styles(user: User) -> list[StyleOut]:
        return [_out(style) for style in store.all(user)]

    @router.put("/styles/{name}", response_model=StyleOut, summary="Save a style (replacing one of that name)")
    def save(name: str, user: User, style: Annotated[StyleIn, Body()]) -> StyleOut:
        with http_errors():
            return _out(store.save(user, Style(name, style.prompt, style.negative_prompt)))

    @router.delete("/styles/{name}", status_code=204, summary="Delete a style")
    def delete(name: str, user: User) -> Response:
        try:
            store.delete(user, name)
        except StyleError as e:
            raise HTTPException(404, str(e)) from None
        return Response(status_code=204)

    @router.get("/styles.csv", summary="The caller's styles as A1111's styles.csv",
                response_class=Response, responses={200: {"content": {"text/csv": {}}}})
    def export(user: User) -> Response:
        return Response(write_csv(store.all(user)), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="styles.csv"'})

    @router.post("/styles.csv", response_model=StylesImported,
                 summary="Import an A1111 styles.csv (the body): its styles are added, or replace those of their "
                         "names; all or none",
                 openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}},
                                                "required": True}})
    async def import_csv(request: Request, user: User) -> StylesImported:
        body = bytearray()
        async for part in request.stream():  # bounded as it arrives: a huge body is refused, not buffered
            body += part
            if len(body) > MAX_CSV_BYTES:
                raise HTTPException(413, f"a styles file has at most {MAX_CSV_BYTES:,} bytes")
        with http_errors():
            saved = store.save_all(user, read_csv(bytes(body)))
        return StylesImported(imported=len(saved), styles=len(store.names(user)))

    return router


def _out(style: Style) -> StyleOut:
    return StyleOut(name=style.name, prompt=style.prompt, negative_prompt=style.negative_prompt)
