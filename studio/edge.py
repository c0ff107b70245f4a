"""The HTTP edge: what every request to the studio passes before Gradio's routes or the API see it.

One ASGI layer, outermost (outside Gradio's own CORS and compression layers), so it holds from the first request
the server answers, for the UI and the API alike. In order:

- **Host**: a studio without logins answers only to the names it is known by: loopback names, IP addresses, its
  --host, --allowed-hosts and its share link's. A web page whose DNS name is rebound to this machine sends its
  own name, and is refused: it can neither drive a login-less studio nor read from it.
- **Origin**: a request sent by a page of another site (its `Origin` names another host, or the browser says
  `Sec-Fetch-Site: cross-site` on anything but a plain GET) is refused, unless that site is in
  --cors-allow-origins. So a page elsewhere cannot use a logged-in user's cookie to read or delete their
  gallery. Only those listed origins get CORS headers; the session cookies are made `SameSite=Lax`.
- **Size**: a body over MAX_BODY_BYTES is refused with 413, before it is read (or as it arrives, when chunked).
- **Login first**: on a studio with logins the API and its documentation answer 401 to a caller without a valid
  login before any body is read or parsed.
- **Gallery files**: Gradio's file route serves a gallery file to its owner only (studio.ui.file_guard).
- **Gradio sessions**: on a studio with logins, a session (a browser tab's) serves only the user who opened it
  (studio.sessions).
- **Headers**: every answer forbids framing by other sites and MIME sniffing; files from the file route are
  sandboxed (a planted SVG or HTML file runs no script).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from gradio.routes import App
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studio.accounts import session_user
from studio.config import LOOPBACK_HOSTS, StudioConfig
from studio.sessions import GRADIO, SessionOwners, session_hashes

MAX_BODY_BYTES = 150_000_000  # an img2img request with a 50 MB image and a 50 MB mask, base64 (4/3 each), fits
LOGIN_FIRST = ("/api/", "/sdapi/", "/openapi.json", "/docs", "/redoc")  # what needs a login before its body is read
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SHARE_DOMAIN = "gradio.live"  # Gradio's share links: https://<id>.gradio.live, which keeps the Host
PAGE_HEADERS = {"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "Content-Security-Policy": "frame-ancestors 'self'; object-src 'none'; base-uri 'self'"}
FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
CORS_HEADERS = (b"access-control-allow-origin", b"access-control-allow-credentials", b"access-control-allow-methods",
                b"access-control-allow-headers", b"access-control-max-age", b"access-control-expose-headers")
_SAMESITE = re.compile(rb";\s*samesite=[a-z]+", re.IGNORECASE)

Caller = Callable[[Request], Awaitable[str]]  # the logged-in caller's name, or raises HTTPException(401)
FileCheck = Callable[[str, Request], None]  # raises HTTPException unless the caller may read that file


@dataclass(frozen=True)
class EdgePolicy:
    hosts: frozenset[str]  # the Host names a studio without logins answers to (lower case, no port), and addresses
    logins: Callable[[], bool]  # whether the studio has logins now (its logins files may change while it runs)
    caller: Caller  # who is asking, on a studio with logins
    check_file: FileCheck
    origins: frozenset[str] = frozenset()  # other sites whose pages may call the studio (scheme://host[:port])
    host_suffixes: tuple[str, ...] = field(default=())  # e.g. ".gradio.live" with a share link

    @classmethod
    def for_config(cls, config: StudioConfig, *, logins: Callable[[], bool], caller: Caller,
                   check_file: FileCheck) -> EdgePolicy:
        names = {*LOOPBACK_HOSTS, *config.allowed_hosts, socket.gethostname(), f"{socket.gethostname()}.local"}
        if config.host not in WILDCARD_HOSTS:
            names.add(config.host)
        return cls(hosts=frozenset(name.lower().strip("[]") for name in names), logins=logins, caller=caller,
                   check_file=check_file, origins=frozenset(config.cors_allow_origins),
                   host_suffixes=(f".{SHARE_DOMAIN}",) if config.share else ())

    def knows_host(self, host: str) -> bool:
        """A studio with logins answers to any name (a rebound name brings no login with it); one without, to its
        own names and to IP addresses (an address is not a DNS name, so it cannot have been rebound)."""
        name = _host_name(host)
        if self.logins() or name in self.hosts or (self.host_suffixes and name.endswith(self.host_suffixes)):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


class Edge:
    """The ASGI layer that applies an EdgePolicy (see the module's docstring)."""

    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app, self.policy = app, policy
        self.sessions = SessionOwners()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["type"] == "websocket":
            try:
                self._check(scope, headers)
            except HTTPException:
                await send({"type": "websocket.close", "code": 1008})  # before the handshake: refused with 403
                return
            await self.app(scope, receive, send)
            return
        try:
            allowed_site = self._check(scope, headers)
            request = Request(scope, receive)
            await self._check_request(scope, request)
            body = None
            chunked = "content-length" not in headers and "chunked" in headers.get("transfer-encoding", "").lower()
            gradio_session = self.policy.logins() and scope["path"].startswith(GRADIO) and (
                user := session_user(request))
            if chunked or gradio_session and scope["method"] == "POST" and "json" in headers.get("content-type", ""):
                body, receive = await _whole_body(receive)
            if gradio_session:
                for session_hash in session_hashes(scope["path"], scope.get("query_string", b""), body):
                    self.sessions.check(session_hash, user)
        except HTTPException as refusal:
            response = JSONResponse({"detail": refusal.detail}, refusal.status_code, headers=refusal.headers)
            await self._respond(response, scope, receive, send, origin=None)
            return
        await self._respond(self.app, scope, receive, send, origin=headers["origin"] if allowed_site else None)

    def _check(self, scope: Scope, headers: Headers) -> bool:
        """Host and origin: True when the request comes from another site allowed to call the studio."""
        host, origin = headers.get("host", ""), headers.get("origin")
        if not self.policy.knows_host(host):
            raise HTTPException(421, f"this studio does not answer to the host name {_host_name(host)!r}; its "
                                     "owner can add it with --allowed-hosts")
        if origin is not None and not _same_origin(origin, host):
            if origin.rstrip("/") in self.policy.origins:
                return True
            raise HTTPException(403, f"requests from pages of other sites ({origin[:100]}) are refused; the "
                                     "studio's owner can allow a site with --cors-allow-origins")
        if headers.get("sec-fetch-site") == "cross-site" and scope.get("method", "GET") not in ("GET", "HEAD"):
            raise HTTPException(403, "requests from pages of other sites are refused")
        return False

    async def _check_request(self, scope: Scope, request: Request) -> None:
        """The body's size, a login where one is needed first, and the owner of a gallery file."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise _too_large()
        path: str = scope["path"]
        if path.startswith(LOGIN_FIRST) and scope["method"] != "OPTIONS" and self.policy.logins():
            await self.policy.caller(request)
        for prefix in FILE_ROUTES:
            if path.startswith(prefix):
                self.policy.check_file(path[len(prefix):], request)

    async def _respond(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, origin: str | None) -> None:
        """Run `app`, its answer's headers set here: security headers, CORS for an allowed site only, Lax cookies."""
        file_route = scope["path"].startswith(FILE_ROUTES)
        preflight = origin is not None and scope["method"] == "OPTIONS" and "access-control-request-method" in (
            request_headers := Headers(scope=scope))
        cors = {} if origin is None else {"Access-Control-Allow-Origin": origin,
                                          "Access-Control-Allow-Credentials": "true"}
        if preflight:
            cors |= {"Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
                     "Access-Control-Allow-Headers": request_headers.get("access-control-request-headers", ""),
                     "Access-Control-Max-Age": "600"}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() not in CORS_HEADERS]
                message["headers"] = [(k, _lax(v)) if k.lower() == b"set-cookie" else (k, v) for k, v in raw]
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    headers.setdefault(name, value)
                if file_route:
                    headers["Content-Security-Policy"] = FILE_CSP
                headers.update(cors)
                if cors:
                    headers.add_vary_header("Origin")
            await send(message)

        if preflight:  # an allowed site's: answered here, whatever Gradio's own CORS layer would say
            app = Response(status_code=204)
        await app(scope, receive, send_with_headers)


class StudioServer(App):
    """Gradio's server app with the Edge outermost: Gradio builds its routes and layers on it at launch (as for
    `gradio.Server`), and every request passes the Edge first."""

    def __init__(self, policy: EdgePolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edge_policy = policy

    def build_middleware_stack(self) -> ASGIApp:
        return Edge(super().build_middleware_stack(), self.edge_policy)


async def _whole_body(receive: Receive) -> tuple[bytes, Receive]:
    """The body (a chunked one has no length to check first), read here up to MAX_BODY_BYTES, and a `receive`
    that replays it to the route."""
    body, more = bytearray(), True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
        more = message.get("more_body", False)
    replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

    async def replayed() -> Message:
        return replay.pop() if replay else await receive()

    return replay[0]["body"], replayed


def _too_large() -> HTTPException:
    return HTTPException(413, f"the request body is larger than the studio's limit of {MAX_BODY_BYTES / 1e6:.0f} MB")


def _host_name(host: str) -> str:
    """`Host` without its port, lower case: "127.0.0.1:7860" → "127.0.0.1", "[::1]:80" → "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_origin(origin: str, host: str) -> bool:
    """The page's origin is this studio as the browser addressed it (scheme aside: a TLS proxy may sit between)."""
    _, sep, netloc = origin.partition("://")
    return bool(sep) and netloc.rstrip("/").lower() == host.strip().lower()


def _lax(cookie: bytes) -> bytes:
    """A Set-Cookie value made SameSite=Lax: sent when the user follows a link here, never on other sites' requests."""
    return _SAMESITE.sub(b"", cookie) + b"; SameSite=Lax"
