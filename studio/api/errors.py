"""The API's error statuses: the services raise errors written for people; here each kind gets its status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipelines.catalog import UnknownModel, UnknownPipeline
from studio.gallery import ArtworkNotFound
from studio.gallery.inputs import InputQuotaFull
from studio.jobs import JobError, JobNotFound, QueueFull

RETRY_AFTER_S = 10  # a full queue drains a job every few seconds to minutes: try again soon, not at once


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
    except InputQuotaFull as e:
        raise HTTPException(413, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    """Request validation errors as 422s that always encode, for every route of the app (the API's and Gradio's):
    FastAPI's own handler echoes the rejected input, and a NaN or an infinity in it would turn the 422 into a 500."""
    errors = error.errors() if isinstance(error, RequestValidationError) else []
    return JSONResponse(status_code=422, content={"detail": [_plain(e) for e in errors]})


def _plain(error: Any) -> dict[str, Any]:
    """One validation error without the rejected input: its place, message and kind."""
    loc = [part if isinstance(part, (str, int)) else str(part) for part in error.get("loc", ())]
    return {"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
