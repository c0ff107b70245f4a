"""Who is calling the API: the studio's logins over HTTP Basic, or the browser session of the UI's login page.

Without logins (no --auth / --auth-file) every caller is "local", as in the UI. With them, every API route needs
valid credentials and answers 401 with a Basic challenge otherwise; the caller's user name owns the jobs and
artworks it makes, exactly as a UI login does, so a user sees the same gallery in the browser and over the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from studio.accounts import Accounts

LOCAL_USER = "local"
BASIC = HTTPBasic(auto_error=False, realm="Atelier",
                  description="The studio's logins (--auth / --auth-file); not needed when it has none.")


class ApiUsers:
    """A FastAPI dependency: `user: str = Depends(users)` is the caller's user name, or a 401."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @property
    def required(self) -> bool:
        return self._accounts.required

    def __call__(self, request: Request,
                 credentials: Annotated[HTTPBasicCredentials | None, Depends(BASIC)]) -> str:
        if not self._accounts.required:
            return LOCAL_USER
        if credentials is not None and self._accounts.verify(credentials.username, credentials.password):
            return credentials.username
        user = session_user(request)
        if user:
            return user
        raise HTTPException(401, "this studio needs a login: send its user name and password (HTTP Basic)",
                            headers={"WWW-Authenticate": 'Basic realm="Atelier"'})


def session_user(request: Request) -> str | None:
    """The user logged in through Gradio's login page, from its session cookie (so the browser can open API
    URLs such as an artwork's PNG). Gradio keeps the sessions on its app; another app has none."""
    app = request.app
    cookie_id, tokens = getattr(app, "cookie_id", None), getattr(app, "tokens", None)
    if cookie_id is None or not isinstance(tokens, dict):
        return None
    cookies = request.cookies
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    user = tokens.get(token) if token else None
    return user if isinstance(user, str) else None
