"""Who is calling the API: the studio's logins over HTTP Basic, a user's API token (Bearer), or the browser session
of the UI's login page.

Without logins (no --auth / --auth-file) every caller is "local", as in the UI. With them, every API route needs
valid credentials and answers 401 with a Basic challenge otherwise; the caller's user name owns the jobs and
artworks it makes, exactly as a UI login does, so a user sees the same gallery in the browser and over the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from studio.accounts import LOCAL_USER, Accounts, session_user

BASIC = HTTPBasic(auto_error=False, realm="Atelier",
                  description="The studio's logins (--auth / --auth-file); not needed when it has none.")
BEARER = HTTPBearer(auto_error=False, description="A user's API token (`python launch.py users token NAME`).")


class ApiUsers:
    """A FastAPI dependency: `user: str = Depends(users)` is the caller's user name, or a 401."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    @property
    def required(self) -> bool:
        return self._accounts.required

    def __call__(self, request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(BASIC)],
                 bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> str:
        if not self._accounts.required:
            return LOCAL_USER
        if credentials is not None and self._accounts.verify(credentials.username, credentials.password):
            return credentials.username
        if bearer is not None and (owner := self._accounts.token_user(bearer.credentials)):
            return owner
        user = session_user(request)
        if user:
            return user
        raise HTTPException(401, "this studio needs a login: send a user name and password (HTTP Basic) or the "
                                 "user's API token (Authorization: Bearer)",
                            headers={"WWW-Authenticate": 'Basic realm="Atelier"'})
