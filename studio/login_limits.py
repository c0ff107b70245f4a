"""Login limits: how many password checks may run, wait and fail, per client address and per user name.

An Argon2 check is slow on purpose (~0.2 s and 64 MB), so checks are rationed before any hashing starts, and a
login the limits refuse is answered at once (429 or 503 with Retry-After) instead of joining a queue without end:

- at most MAX_CONCURRENT_CHECKS run at once and MAX_WAITING_CHECKS more wait for a slot; past that the checker
  is saturated (503): a flood can hold neither the machine's memory nor the server's threads;
- one client address has at most ADDRESS_CHECKS checks admitted at a time, and ADDRESS_FAILURES wrong passwords
  within FAILURE_WINDOW_S; past either, its next logins are refused (429) until the window has room again;
- a user name that had NAME_FAILURES wrong passwords within the window takes no new password until the window
  passes (429), whichever addresses the guesses came from.

None of this applies to a login the studio has verified before from the same address, nor to an API token:
those cost no hash (see studio.accounts), so an attack on the checker or on a name keeps no verified client
waiting or locked out.

The client address is the one the server reports (`request.client.host`): uvicorn takes it from
X-Forwarded-For only when the connection comes from a proxy it trusts (its FORWARDED_ALLOW_IPS, loopback by
default), so a remote client cannot pick its own address.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_CONCURRENT_CHECKS = 2  # ~0.2 s and 64 MB each: two keep a 2-core machine answering everything else
MAX_WAITING_CHECKS = 8  # admitted checks waiting for a slot: about a second of work at most
ADDRESS_CHECKS = 2  # one address's checks admitted at a time: a browser and a script, say
ADDRESS_FAILURES = 20  # wrong passwords from one address within the window (a class behind one NAT address)
NAME_FAILURES = 10  # wrong passwords for one user name within the window, from anywhere
FAILURE_WINDOW_S = 60.0
CHECK_S = 0.2  # about one check's time, for the Retry-After of a saturated checker
REMEMBERED_NAMES = 10_000  # past this many addresses or names with failures, those with none recent are forgotten
UNKNOWN_ADDRESS = "unknown"  # a request without a client address (some test clients, unix sockets)

# The address of the request being served, for the UI's login check: Gradio calls it with the name and password
# only. Set for each request by ClientAddressLayer.
CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("CLIENT_ADDRESS", default=UNKNOWN_ADDRESS)


class LoginRefused(Exception):
    """The limits refuse to check this login now: answer `status` (429 or 503) with Retry-After `retry_after`."""

    def __init__(self, status: int, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = max(1, math.ceil(retry_after))  # whole seconds, as the header takes them

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LoginLimits:
    """The counters above. `admit` before a check (it raises LoginRefused), then `slot()` around the hashing, and
    `done` once the check has its answer, whatever happened."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
        self._admitted = 0
        self._in_flight: dict[str, int] = {}  # address → its checks admitted and not done
        self._address_failures: dict[str, deque[float]] = {}  # address → times of its recent wrong passwords
        self._name_failures: dict[str, deque[float]] = {}  # user name → times of its recent wrong passwords

    def admit(self, user: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            wait = _locked_for(self._address_failures.get(address), ADDRESS_FAILURES, now)
            if wait:
                raise LoginRefused(429, f"too many wrong passwords from your address; try again in "
                                        f"{math.ceil(wait)} s", wait)
            if self._in_flight.get(address, 0) >= ADDRESS_CHECKS:
                raise LoginRefused(429, f"too many logins at once from your address (at most {ADDRESS_CHECKS} are "
                                        "checked at a time); try again when they are answered", 1)
            wait = _locked_for(self._name_failures.get(user[:64]), NAME_FAILURES, now)
            if wait:
                raise LoginRefused(429, f"too many wrong passwords for this user name; its logins are refused for "
                                        f"{math.ceil(wait)} s", wait)
            if self._admitted >= MAX_CONCURRENT_CHECKS + MAX_WAITING_CHECKS:
                raise LoginRefused(503, "the studio is checking too many logins right now; try again in a moment",
                                   self._admitted / MAX_CONCURRENT_CHECKS * CHECK_S)
            self._admitted += 1
            self._in_flight[address] = self._in_flight.get(address, 0) + 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the hashing slots, waited for (by at most MAX_WAITING_CHECKS admitted checks)."""
        with self._slots:
            yield

    def done(self, user: str, address: str, ok: bool) -> None:
        now = self._clock()
        with self._lock:
            self._admitted -= 1
            left = self._in_flight.pop(address) - 1
            if left:
                self._in_flight[address] = left
            if not ok:
                _note(self._address_failures, address, now)
                _note(self._name_failures, user[:64], now)

    @property
    def admitted(self) -> int:
        """Checks admitted and not done (running or waiting for a slot)."""
        with self._lock:
            return self._admitted


def _locked_for(failures: deque[float] | None, allowed: int, now: float) -> float:
    """Seconds until `failures` (times, oldest first) has room for another within the window; 0 when it has."""
    while failures and failures[0] <= now - FAILURE_WINDOW_S:
        failures.popleft()
    if not failures or len(failures) < allowed:
        return 0.0
    return failures[-allowed] + FAILURE_WINDOW_S - now


def _note(failures: dict[str, deque[float]], key: str, now: float) -> None:
    if len(failures) > REMEMBERED_NAMES:
        stale = [k for k, times in failures.items() if not times or times[-1] <= now - FAILURE_WINDOW_S]
        for k in stale:
            del failures[k]
    failures.setdefault(key, deque(maxlen=max(ADDRESS_FAILURES, NAME_FAILURES))).append(now)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else UNKNOWN_ADDRESS


class ClientAddressLayer:
    """ASGI: CLIENT_ADDRESS holds each request's client address while the request is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = CLIENT_ADDRESS.set(client_address(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDRESS.reset(token)
