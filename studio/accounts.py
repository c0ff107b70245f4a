"""Logins: who may use the studio, with salted password hashes (Argon2id, argon2-cffi), never plain passwords.

The logins file holds one `USER:HASH` per line, written by `python launch.py users add NAME`. Lines of the older
`USER:PASSWORD` form (AUTOMATIC1111's and Gradio's) are still read, with a warning to re-add those users. The
same Accounts check the UI's login page, the REST API's HTTP Basic logins and so the gallery files behind them.

Argon2 is slow on purpose (~0.2 s a check): a login once checked is remembered for the life of the server as
an HMAC under a key made at start, so an API client sending Basic credentials with every request pays it once.

A user may also have one API token (`python launch.py users token NAME`), for tools that should not hold the
password: 256 random bits, shown once, kept as its SHA-256 (a slow hash adds nothing to a secret that long) in
`<logins file>.tokens`, and sent as `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from studio.gallery.files import write_bytes_atomic

logger = logging.getLogger(__name__)

LOCAL_USER = "local"  # who everyone is in a studio without logins
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "atelier_"  # so a leaked token is recognisable (and findable by secret scanners)
# Each Argon2 check takes ~0.2 s and 64 MB: at most this many run at once (others wait), and after this many
# wrong passwords for one user name within the window, that name's logins are refused until the window passes
# (without a check): a flood of guesses can neither exhaust the machine nor try many passwords.
MAX_CONCURRENT_CHECKS = 2
FAILURES_ALLOWED, FAILURE_WINDOW_S = 10, 60.0
_HASHER = PasswordHasher()  # Argon2id with the library's current recommended cost


def check_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ValueError(f"user name {name!r}: use 1–64 letters, digits, '_', '.', '@' or '-', starting with a "
                         "letter or digit")
    return name


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password is {len(password)} characters; use at least {MIN_PASSWORD}")
    return _HASHER.hash(password)


def generate_password() -> str:
    return secrets.token_urlsafe(18)  # 144 random bits


class Accounts:
    """The studio's logins: `verify(user, password)`; no logins at all (`required` false) means the local user."""

    def __init__(self, hashes: dict[str, str] | None = None, plain: dict[str, str] | None = None,
                 tokens: dict[str, str] | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._hashes = dict(hashes or {})
        self._plain = {user: password.encode() for user, password in (plain or {}).items()}
        users = {*self._hashes, *self._plain}
        # token digest → user, for users that still have a login
        self._tokens = {digest: user for user, digest in (tokens or {}).items() if user in users}
        self._key = secrets.token_bytes(32)
        self._known: set[bytes] = set()  # HMACs of logins already verified against their hash
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
        self._failures: dict[str, deque[float]] = {}  # user name → times of its recent wrong passwords
        self._clock = clock

    @classmethod
    def from_sources(cls, pairs: Iterable[tuple[str, str]], files: Iterable[Path]) -> Accounts:
        """Logins from USER:PASS pairs (the --auth flag) and logins files (hashed or plain lines)."""
        hashes: dict[str, str] = {}
        plain = dict(pairs)
        tokens: dict[str, str] = {}
        for path in files:
            if tokens_file(path).exists():
                tokens.update(read_logins(tokens_file(path)))
            for user, secret in read_logins(path).items():
                if secret.startswith("$argon2"):
                    hashes[user] = secret
                else:
                    plain[user] = secret
                    logger.warning("%s keeps %s's password in plain text; run `python launch.py users add %s` to "
                                   "store a hash instead", path, user, user)
        return cls(hashes, plain, tokens)

    def add(self, user: str, password: str) -> None:
        """A login for this run only (e.g. --share-generate-password's), kept in memory."""
        self._plain[check_user_name(user)] = password.encode()

    @property
    def required(self) -> bool:
        return bool(self._hashes or self._plain)

    @property
    def gradio_auth(self) -> Callable[[str, str], bool] | None:
        """What Gradio's `launch(auth=...)` takes: the check, or None for no login page."""
        return self.verify if self.required else None

    @property
    def users(self) -> list[str]:
        return sorted({*self._hashes, *self._plain})

    def verify(self, user: str, password: str) -> bool:
        given = password.encode()
        if self._throttled(user):
            return False
        if user in self._plain:
            ok = hmac.compare_digest(given, self._plain[user])
            return ok or self._failed(user)
        token = hmac.new(self._key, user.encode() + b"\0" + given, hashlib.sha256).digest()
        with self._lock:
            if token in self._known:
                return True
        stored = self._hashes.get(user)
        with self._checks:
            if stored is None:
                _spend_a_check(password)  # as long as a real check: the answer's timing does not tell who exists
                return self._failed(user)
            try:
                _HASHER.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return self._failed(user)
        with self._lock:
            self._known.add(token)
        return True

    def token_user(self, token: str) -> str | None:
        """Whose API token this is, or None."""
        return self._tokens.get(token_digest(token)) if token.startswith(TOKEN_PREFIX) else None

    def _throttled(self, user: str) -> bool:
        now = self._clock()
        with self._lock:
            recent = self._failures.get(user[:64])
            while recent and recent[0] <= now - FAILURE_WINDOW_S:
                recent.popleft()
            return bool(recent) and len(recent) >= FAILURES_ALLOWED

    def _failed(self, user: str) -> bool:
        """Note a wrong password for `user`; always False (the answer of a failed check)."""
        now = self._clock()
        with self._lock:
            if len(self._failures) > 10_000:  # names tried once long ago: forget them
                self._failures = {u: t for u, t in self._failures.items() if t and t[-1] > now - FAILURE_WINDOW_S}
            self._failures.setdefault(user[:64], deque()).append(now)
        return False


_dummy: list[str] = []


def _spend_a_check(password: str) -> None:
    if not _dummy:
        _dummy.append(_HASHER.hash(secrets.token_hex(16)))
    with contextlib.suppress(VerificationError, InvalidHashError):
        _HASHER.verify(_dummy[0], password)


def read_logins(path: Path) -> dict[str, str]:
    """USER → hash (or plain password) from a logins file; a clear error for a missing file or a bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"logins file {path}: {e.strerror}") from e
    logins: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        if not sep or not user or not secret:
            raise ValueError(f"logins file {path}, line {number}: expected USER:HASH (or USER:PASSWORD)")
        logins[user] = secret
    return logins


TOKENS_ABOUT = "API tokens: USER:SHA256 of the token. Edit with `python launch.py users token NAME [--revoke]`."


def tokens_file(logins_file: Path) -> Path:
    return logins_file.with_name(logins_file.name + ".tokens")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(logins_file: Path, user: str) -> str:
    """A new API token for `user` (replacing the old one); returned once, only its digest is stored."""
    if user not in (read_logins(logins_file) if logins_file.exists() else {}):
        raise ValueError(f"no user {user!r} in {logins_file}; add the user first")
    path = tokens_file(logins_file)
    tokens = read_logins(path) if path.exists() else {}
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tokens[user] = token_digest(token)
    _write(path, tokens, TOKENS_ABOUT)
    return token


def revoke_token(logins_file: Path, user: str) -> bool:
    """Forget `user`'s API token; True when there was one."""
    path = tokens_file(logins_file)
    tokens = read_logins(path) if path.exists() else {}
    if tokens.pop(user, None) is None:
        return False
    _write(path, tokens, TOKENS_ABOUT)
    return True


def add_user(path: Path, user: str, password: str) -> bool:
    """Store USER with a hash of `password` (replacing an earlier one). True when the user is new."""
    check_user_name(user)
    logins = read_logins(path) if path.exists() else {}
    new = user not in logins
    logins[user] = hash_password(password)
    _write(path, logins)
    return new


def remove_user(path: Path, user: str) -> None:
    logins = read_logins(path) if path.exists() else {}
    if user not in logins:
        raise ValueError(f"no user {user!r} in {path}")
    del logins[user]
    _write(path, logins)
    revoke_token(path, user)


def _write(path: Path, logins: dict[str, str],
           about: str = "logins: USER:HASH (Argon2id). Edit with `python launch.py users add|remove NAME`.") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# Atelier {about}\n"
    text += "".join(f"{user}:{secret}\n" for user, secret in sorted(logins.items()))
    write_bytes_atomic(path, text.encode())
    path.chmod(0o600)


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
