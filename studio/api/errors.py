"""The API's error statuses: the services raise errors written for people; here each kind gets its status."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from pipelines.catalog import UnknownModel, UnknownPipeline
from studio.gallery import ArtworkNotFound
from studio.jobs import JobError, JobNotFound, QueueFull

RETRY_AFTER_S = 10  # a full queue drains a job every few seconds to minutes: try again soon, not at once
MAX_BODY_BYTES = 150_000_000  # an img2img request with a 50 MB image and a 50 MB mask, base64 (4/3 each), fits


@contextmanager
def http_errors() -> Iterator[None]:
    """Turn the services' errors into HTTP ones: 404 unknown, 429 queue full, 409 conflict, 422 bad input."""
    try:
        yield
    except (UnknownModel, UnknownPipeline, JobNotFound, ArtworkNotFound) as e:
        raise HTTPException(404, str(e)) from None
    except QueueFull as e:
        raise HTTPException(429, str(e), headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except JobError as e:
        raise HTTPException(409, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


class ApiRoute(APIRoute):
    """Our routes' request validation errors as 422s that always encode: FastAPI's own handler echoes the
    rejected input, and a NaN or an infinity in it would turn the 422 into a 500. A body over MAX_BODY_BYTES is
    refused with 413 before it is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                return _too_large()
            if "chunked" in request.headers.get("transfer-encoding", "").lower():  # no length: count as it comes
                body = bytearray()
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return _too_large()
                request._body = bytes(body)  # Starlette's cache of the body, which the route then reads
            try:
                return await handler(request)
            except RequestValidationError as e:
                return JSONResponse(status_code=422, content={"detail": [_plain(error) for error in e.errors()]})

        return handle


def _too_large() -> JSONResponse:
    return JSONResponse(status_code=413, content={"detail": f"the request body is larger than the API's limit of "
                                                            f"{MAX_BODY_BYTES / 1e6:.0f} MB"})


def _plain(error: Any) -> dict[str, Any]:
    """One validation error without the rejected input: its place, message and kind."""
    loc = [part if isinstance(part, (str, int)) else str(part) for part in error.get("loc", ())]
    return {"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
