"""Gradio sessions bound to the user who opened them, on a studio with logins.

Gradio names each browser tab's session with a random hash the page makes, and its routes (the event stream
`/gradio_api/queue/data`, `queue/join`, `cancel`, `heartbeat`, media streams) trust whoever presents that hash:
another logged-in user who learnt it (from a proxy's log, say: it travels in URLs) could follow the tab's progress
previews and results, or cancel its work. Here the first user to present a hash owns it, and every other user is
refused with 403. The hash is found where Gradio's routes take it: the `session_hash` query parameter, the path of
the heartbeat and stream routes, or the JSON body of a POST.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from urllib.parse import parse_qs

from fastapi import HTTPException

GRADIO = "/gradio_api/"
_IN_PATH = ("/gradio_api/heartbeat/", "/gradio_api/stream/")  # /…/<session_hash>[/…]
MAX_SESSIONS = 100_000  # remembered at once, the least recently used forgotten first (~10 MB)


class SessionOwners:
    """Which user opened each Gradio session: `check` binds a new hash to its user and refuses any other user."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def check(self, session_hash: str, user: str) -> None:
        with self._lock:
            owner = self._owners.setdefault(session_hash, user)
            self._owners.move_to_end(session_hash)
            while len(self._owners) > self._limit:
                self._owners.popitem(last=False)
        if owner != user:
            raise HTTPException(403, "this session belongs to another user")


def session_hashes(path: str, query: bytes, body: bytes | None) -> set[str]:
    """The session hashes a request to Gradio's routes presents (none for other routes)."""
    if not path.startswith(GRADIO):
        return set()
    found = set(parse_qs(query.decode("latin-1")).get("session_hash", []))
    for prefix in _IN_PATH:
        if path.startswith(prefix):
            found.add(path[len(prefix):].split("/", 1)[0])
    if body:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None  # not JSON: Gradio answers it itself
        if isinstance(data, dict) and isinstance(data.get("session_hash"), str):
            found.add(data["session_hash"])
    return {h for h in found if h}
