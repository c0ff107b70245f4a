"""Logins: who may use the studio, with salted password hashes (Argon2id, argon2-cffi), never plain passwords.

The logins file holds one `USER:HASH` per line, written by `python launch.py users add NAME`. Lines of the older
`USER:PASSWORD` form (AUTOMATIC1111's and Gradio's) are still read, with a warning to re-add those users. The
same Accounts check the UI's login page, the REST API's HTTP Basic logins and so the gallery files behind them.

Every check costs one Argon2 verification, whoever is asked about: a stored hash, a dummy hash for a name that
does not exist, and for a plain line a dummy hash before the comparison; an --auth login is hashed when the studio
starts. So the answer's timing does not tell which names exist. Argon2 is slow on purpose (~0.2 s a check): a
login once checked is remembered, with the client address it came from, as an HMAC under a key made at start,
so an API client sending Basic credentials with every request pays it once, and is never held up by the login
limits (studio.login_limits) that ration the checks of everyone else. The address is part of it so that the
limits still hold for everyone else: a guesser elsewhere, refused while a name is locked, cannot use the
remembered login as a free test of each guess.

A user may also have one API token (`python launch.py users token NAME`), for tools that should not hold the
password: 256 random bits, shown once, kept as its SHA-256 (a slow hash adds nothing to a secret that long) in
`<logins file>.tokens`, and sent as `Authorization: Bearer TOKEN`.

The files are read again whenever they change (each use compares their size, time and inode, which costs a
`stat`): a user added, removed or given a new password, and a token made or revoked, take effect at once. The
logins of a removed user, or of the old password, are forgotten, and `on_logins_ended` listeners (the UI's
sessions) are told whose logins ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from studio.gallery.files import write_bytes_atomic
from studio.login_limits import CLIENT_ADDRESS, UNKNOWN_ADDRESS, LoginLimits, LoginRefused

logger = logging.getLogger(__name__)

LOCAL_USER = "local"  # who everyone is in a studio without logins
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "atelier_"  # so a leaked token is recognisable (and findable by secret scanners)
_HASHER = PasswordHasher()  # Argon2id with the library's current recommended cost
REMEMBERED_LOGINS = 10_000  # (address, login) pairs remembered; past it the oldest is checked again when it returns

Secret = str | bytes  # an Argon2 hash; bytes: the password of a plain line in a logins file
FileState = tuple[int, int, int] | None  # (inode, mtime in ns, size) of a file, None when it is missing


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


@dataclass(frozen=True)
class _Logins:
    """One reading of the logins: user → secret, and API token digest → user (users with a login only)."""

    secrets: dict[str, Secret] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


class Accounts:
    """The studio's logins: `verify(user, password)`; no logins at all (`required` false) means the local user.

    `pairs` are logins given on the command line (--auth), hashed here; `files` are logins files, read now and
    again whenever they change. A bad file stops the start (ValueError); one spoiled later is reported and the
    logins read before are kept. Whether logins are `required` is fixed at the start, as Gradio's login page is:
    a file emptied later leaves no one able to log in, not everyone let in.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = (), files: Iterable[Path] = (), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fixed: dict[str, Secret] = {user: _HASHER.hash(password) for user, password in pairs}
        self._files = list(files)
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()  # guards the fields below that change
        self._reading = threading.Lock()  # one reading of the files at a time
        self._logins = _Logins(dict(self._fixed))
        self._seen: tuple[FileState, ...] | None = None  # the files' states when last read
        # HMAC of a login verified (address, user, password) → (user, the secret it matched)
        self._known: dict[bytes, tuple[str, Secret]] = {}
        self._listeners: list[Callable[[set[str]], None]] = []
        self._limits = LoginLimits(clock=clock)
        self.refresh()
        self._required = bool(self._logins.secrets)
        # what a name without a login is checked against, at a real check's cost
        self._dummy = _HASHER.hash(secrets.token_hex(16)) if self._required else ""

    @classmethod
    def from_sources(cls, pairs: Iterable[tuple[str, str]], files: Iterable[Path]) -> Accounts:
        """Logins from USER:PASS pairs (the --auth flag) and logins files (hashed or plain lines)."""
        return cls(pairs, files)

    def add(self, user: str, password: str) -> None:
        """A login for this run only (e.g. --share-generate-password's), hashed and kept in memory."""
        secret = _HASHER.hash(password)
        with self._reading, self._lock:
            self._fixed[check_user_name(user)] = secret
            self._logins = _Logins({**self._logins.secrets, user: secret}, self._logins.tokens)
            self._required = True
            self._dummy = self._dummy or _HASHER.hash(secrets.token_hex(16))

    @property
    def required(self) -> bool:
        """Whether the studio asks for logins. Asked by the edge at every request, so this is where a change of
        the logins files is noticed first: a removed user's UI session ends before any route reads its cookie."""
        self.refresh()
        return self._required

    @property
    def gradio_auth(self) -> Callable[[str, str], object] | None:
        """What Gradio's `launch(auth=...)` takes: the login page's check, or None for no login page."""
        return self._ui_login if self._required else None

    @property
    def users(self) -> list[str]:
        self.refresh()
        return sorted(self._logins.secrets)

    def on_logins_ended(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(users)` when a change of the files ends logins: users removed, or given a new password."""
        with self._lock:
            self._listeners.append(listener)

    def verify(self, user: str, password: str, address: str = UNKNOWN_ADDRESS) -> bool:
        """Whether this login is right; LoginRefused when the login limits refuse to check it now. Blocks for a
        hash check (in a thread): async callers use `averify`."""
        self.refresh()
        if self._remembered(user, password, address):
            return True
        self._limits.admit(user, address)
        ok = False
        try:
            ok = self._check(user, password, address)
        finally:
            self._limits.done(user, address, ok)
        return ok

    async def averify(self, user: str, password: str, address: str = UNKNOWN_ADDRESS) -> bool:
        """`verify` for the event loop: a login verified before, or refused by the limits, is answered here at
        once; only a real check goes to a thread (at most the limits' admitted checks at a time)."""
        self.refresh()
        if self._remembered(user, password, address):
            return True
        self._limits.admit(user, address)
        ok = False
        try:
            ok = await anyio.to_thread.run_sync(self._check, user, password, address)
        finally:
            self._limits.done(user, address, ok)
        return ok

    def token_user(self, token: str) -> str | None:
        """Whose API token this is, or None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        self.refresh()
        return self._logins.tokens.get(token_digest(token))

    def refresh(self) -> None:
        """Read the logins files again if they changed since they were last read (else a `stat` of each)."""
        if self._states() == self._seen:
            return
        with self._reading:
            states = self._states()
            if states == self._seen:
                return
            try:
                logins = self._read()
            except ValueError as e:
                if self._seen is None:
                    raise
                logger.warning("%s; the logins read before it changed stay in force until it is mended", e)
                self._seen = states
                return
            with self._lock:
                old, self._logins, self._seen = self._logins, logins, states
                self._known = {mac: seen for mac, seen in self._known.items()
                               if logins.secrets.get(seen[0]) == seen[1]}
                listeners = list(self._listeners)
        ended = {user for user, secret in old.secrets.items() if logins.secrets.get(user) != secret}
        if ended:
            logger.info("logins changed: %s can no longer log in as before", ", ".join(sorted(ended)))
            for listener in listeners:
                listener(ended)

    async def _ui_login(self, user: str, password: str) -> bool:
        """Gradio's login page's check (Gradio awaits it): the limits' refusals answer 429 or 503 with Retry-After."""
        try:
            return await self.averify(user, password, CLIENT_ADDRESS.get())
        except LoginRefused as refused:
            raise HTTPException(refused.status, str(refused), headers=refused.headers) from None

    def _states(self) -> tuple[FileState, ...]:
        return tuple(_state(p) for path in self._files for p in (path, tokens_file(path)))

    def _read(self) -> _Logins:
        stored: dict[str, Secret] = {}
        tokens: dict[str, str] = {}
        for path in self._files:
            tokens.update(_read_present(tokens_file(path)))
            for user, secret in _read_present(path).items():
                if secret.startswith("$argon2"):
                    stored[user] = secret
                else:
                    stored[user] = secret.encode()
                    logger.warning("%s keeps %s's password in plain text; run `python launch.py users add %s` to "
                                   "store a hash instead", path, user, user)
        stored.update(self._fixed)
        return _Logins(stored, {digest: user for user, digest in tokens.items() if user in stored})

    def _mac(self, user: str, password: str, address: str) -> bytes:
        login = "\0".join((address, user, password)).encode(errors="surrogatepass")
        return hmac.new(self._key, login, hashlib.sha256).digest()

    def _remembered(self, user: str, password: str, address: str) -> bool:
        """This login was verified before from this address, against the secret the user still has: no check and
        no limits."""
        seen = self._known.get(self._mac(user, password, address))
        return seen is not None and seen[0] == user and self._logins.secrets.get(user) == seen[1]

    def _check(self, user: str, password: str, address: str) -> bool:
        """One Argon2 verification, whatever `user` is (a hash slot held): the timing tells nothing."""
        stored = self._logins.secrets.get(user)
        with self._limits.slot():
            if isinstance(stored, str):
                try:
                    ok = _HASHER.verify(stored, password)
                except (VerificationError, InvalidHashError):
                    ok = False
            else:  # no such user, or a plain line: a dummy check's cost, then the comparison
                with contextlib.suppress(VerificationError, InvalidHashError):
                    _HASHER.verify(self._dummy or _HASHER.hash(""), password)
                ok = stored is not None and hmac.compare_digest(stored, password.encode(errors="surrogatepass"))
        if ok and stored is not None:
            with self._lock:
                if len(self._known) >= REMEMBERED_LOGINS:
                    del self._known[next(iter(self._known))]  # the oldest
                self._known[self._mac(user, password, address)] = (user, stored)
        return ok


def _state(path: Path) -> FileState:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read_present(path: Path) -> dict[str, str]:
    """A logins file's lines, or none when it is missing (a removed file holds no one)."""
    return read_logins(path) if path.exists() else {}


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


def end_sessions(app: object, users: set[str]) -> None:
    """Log these users' UI sessions out: Gradio keeps them on its app as `tokens`, session cookie → user name."""
    tokens = getattr(app, "tokens", None)
    if isinstance(tokens, dict):
        for cookie, user in list(tokens.items()):
            if user in users:
                tokens.pop(cookie, None)
