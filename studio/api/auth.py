"""Who is calling the API: the studio's logins over HTTP Basic, a user's API token (Bearer), or the browser session
of the UI's login page.

Without logins (no --auth / --auth-file) every caller is "local", as in the UI. With them, every API route needs
valid credentials and answers 401 with a Basic challenge otherwise; the caller's user name owns the jobs and
artworks it makes, exactly as a UI login does, so a user sees the same gallery in the browser and over the API.

The check runs in the event loop: a token, a session or a login verified before is answered there at once, and only
a new password goes to a thread for its hash, within the login limits (studio.login_limits), whose refusals answer
429 or 503 with Retry-After. So a flood of wrong passwords takes neither the thread pool nor a verified caller's turn.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from studio.accounts import LOCAL_USER, Accounts, end_sessions, session_user
from studio.login_limits import ClientAddressLayer, LoginRefused, client_address

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

    async def __call__(self, request: Request,
                       credentials: Annotated[HTTPBasicCredentials | None, Depends(BASIC)],
                       bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> str:
        if not self._accounts.required:
            return LOCAL_USER
        if bearer is not None and (owner := self._accounts.token_user(bearer.credentials)):
            return owner
        if credentials is not None:
            try:
                if await self._accounts.averify(credentials.username, credentials.password,
                                                client_address(request.scope)):
                    return credentials.username
            except LoginRefused as refused:
                raise HTTPException(refused.status, str(refused), headers=refused.headers) from None
        user = session_user(request)
        if user:
            return user
        raise HTTPException(401, "this studio needs a login: send a user name and password (HTTP Basic) or the "
                                 "user's API token (Authorization: Bearer)",
                            headers={"WWW-Authenticate": 'Basic realm="Atelier"'})


def serve_logins(app: FastAPI, accounts: Accounts) -> None:
    """What the UI's login needs from the server `app` (before it starts): each request's client address for the
    login limits (Gradio passes its login check the name and password only), and the end of a user's sessions
    when the logins files remove the user or change the password."""
    app.add_middleware(ClientAddressLayer)
    accounts.on_logins_ended(partial(end_sessions, app))
