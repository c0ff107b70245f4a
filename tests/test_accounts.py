"""Logins: Argon2id hashes in the logins file, plain lines still read, each login checked against its hash once;
the login limits (per address, per name, the checker's capacity) and logins files that change while the studio
runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from argon2.exceptions import VerificationError

from studio import accounts, login_limits
from studio.accounts import Accounts, add_user, end_sessions, issue_token, read_logins, remove_user, revoke_token
from studio.login_limits import LoginRefused
from tests.conftest import wait_for

REAL = accounts._HASHER


class Hasher:
    """Argon2 as the studio uses it, counting its checks; with `hold()`, each check waits until released."""

    def __init__(self) -> None:
        self.checks: list[str] = []
        self.gate: threading.Event | None = None

    def hash(self, password: str) -> str:
        return REAL.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        self.checks.append(stored)
        if self.gate is not None:
            assert self.gate.wait(30), "the test never released the held checks"
            raise VerificationError("held, then refused")
        return REAL.verify(stored, password)

    def hold(self) -> threading.Event:
        self.gate = threading.Event()
        return self.gate


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Hasher:
    fake = Hasher()
    monkeypatch.setattr(accounts, "_HASHER", fake)
    return fake


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


def studio_logins(path: Path, clock: list[float] | None = None) -> Accounts:
    return Accounts.from_sources([], [path]) if clock is None else Accounts([], [path], clock=lambda: clock[0])


def test_stored_logins_verify_and_a_checked_login_is_remembered(tmp_path: Path, hasher: Hasher, caplog) -> None:
    path = tmp_path / "logins"
    assert add_user(path, "ana", "apple-pie-42") is True
    assert add_user(path, "ana", "apple-pie-43") is False  # a new password replaces the old
    path.write_text(path.read_text() + "ben:plain-password\n")
    with caplog.at_level(logging.WARNING):
        logins = Accounts.from_sources([("cy", "from-the-flag")], [path])
    assert "keeps ben's password in plain text" in caplog.text and "apple-pie" not in caplog.text
    assert logins.users == ["ana", "ben", "cy"] and logins.required
    assert "from-the-flag" not in repr(vars(logins))  # the --auth password was hashed at load, not kept

    assert logins.verify("ana", "apple-pie-43") and logins.verify("ana", "apple-pie-43")
    assert len(hasher.checks) == 1  # the second request did not pay for Argon2 again
    assert not logins.verify("ana", "apple-pie-42") and not logins.verify("Ana", "apple-pie-43")
    assert len(hasher.checks) == 3  # a wrong password and an unknown user cost a full check too


def test_every_kind_of_login_costs_one_hash_check_so_timing_tells_no_names(tmp_path: Path, hasher: Hasher) -> None:
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    path.write_text(path.read_text() + "ben:plain-password\n")
    logins = Accounts.from_sources([("cy", "from-the-flag")], [path])
    logins.add("atelier", "generated-password")
    attempts = {"hashed": ("ana", "apple-pie-42"), "plain line": ("ben", "plain-password"),
                "--auth": ("cy", "from-the-flag"), "generated": ("atelier", "generated-password"),
                "wrong plain": ("ben", "guess-guess"), "unknown name": ("nobody", "apple-pie-42")}
    for n, (kind, (user, password)) in enumerate(attempts.items()):
        before = len(hasher.checks)
        assert logins.verify(user, password, f"10.0.0.{n}") is (kind in ("hashed", "plain line", "--auth",
                                                                          "generated"))
        assert len(hasher.checks) == before + 1, f"a {kind} login cost {len(hasher.checks) - before} hash checks"


def test_no_logins_means_no_login_page() -> None:
    assert not Accounts().required and Accounts().gradio_auth is None


def test_bad_logins_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "logins"
    path.write_text("# ok\nana:$argon2id$x\njust-a-name\n")
    with pytest.raises(ValueError, match="logins, line 3: expected USER:HASH"):
        read_logins(path)
    with pytest.raises(ValueError, match="logins, line 3"):  # a bad file stops the start
        Accounts.from_sources([], [path])
    with pytest.raises(ValueError, match="No such file"):
        read_logins(tmp_path / "missing")
    with pytest.raises(ValueError, match="no user 'zed'"):
        remove_user(path.with_name("other"), "zed")
    with pytest.raises(ValueError, match="user name"):
        add_user(path, "ana:admin", "long-enough")


def test_wrong_passwords_for_one_name_lock_new_logins_of_it_but_not_its_verified_clients(
        tmp_path: Path, hasher: Hasher, clock: list[float]) -> None:
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    add_user(path, "cy", "cy-password")
    token = issue_token(path, "ana")
    logins = studio_logins(path, clock)
    assert logins.verify("ana", "apple-pie-42", "192.168.1.5")  # ana's own client, verified once
    for n in range(login_limits.NAME_FAILURES):  # guesses from many addresses, under the per-address budget
        assert not logins.verify("ana", "guess", f"10.0.0.{n}")
    checks = len(hasher.checks)
    with pytest.raises(LoginRefused, match="too many wrong passwords for this user name") as refused:
        logins.verify("ana", "apple-pie-42", "10.9.9.9")  # a new login of ana: refused, without a check
    assert refused.value.status == 429 and 0 < refused.value.retry_after <= login_limits.FAILURE_WINDOW_S
    assert logins.verify("ana", "apple-pie-42", "192.168.1.5")  # the verified client goes on working
    assert logins.token_user(token) == "ana"  # and so does ana's API token
    assert logins.verify("cy", "cy-password", "10.9.9.9")  # other names are unaffected
    assert len(hasher.checks) == checks + 1  # only cy's new login was checked
    clock[0] += login_limits.FAILURE_WINDOW_S + 1
    assert logins.verify("ana", "apple-pie-42", "10.9.9.9")


def test_one_address_gets_a_budget_of_wrong_passwords_across_all_names(
        tmp_path: Path, hasher: Hasher, clock: list[float]) -> None:
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    logins = studio_logins(path, clock)
    for n in range(login_limits.ADDRESS_FAILURES):  # a different name each time: no name's lock is reached
        assert not logins.verify(f"user{n}", "guess", "10.0.0.1")
    checks = len(hasher.checks)
    with pytest.raises(LoginRefused, match="too many wrong passwords from your address") as refused:
        logins.verify("user-next", "guess", "10.0.0.1")
    assert refused.value.status == 429 and refused.value.retry_after == login_limits.FAILURE_WINDOW_S
    assert len(hasher.checks) == checks  # refused before hashing
    assert logins.verify("ana", "apple-pie-42", "10.0.0.2")  # another address is still checked
    clock[0] += login_limits.FAILURE_WINDOW_S + 1
    assert not logins.verify("user-next", "guess", "10.0.0.1")  # the window passed: checked again


@pytest.fixture
def held(tmp_path: Path, hasher: Hasher) -> Iterator[tuple[Accounts, Hasher, str, list[threading.Thread]]]:
    """A studio whose hash checks all hang until released (at the end): ana verified before, and her token."""
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    token = issue_token(path, "ana")
    logins = studio_logins(path)
    assert logins.verify("ana", "apple-pie-42", "192.168.1.5")
    hasher.checks.clear()
    gate = hasher.hold()
    threads: list[threading.Thread] = []
    yield logins, hasher, token, threads
    gate.set()
    for thread in threads:
        thread.join(30)


def test_a_flood_of_checks_is_answered_503_at_once_and_verified_clients_do_not_wait(held) -> None:
    logins, hasher, token, threads = held
    capacity = login_limits.MAX_CONCURRENT_CHECKS + login_limits.MAX_WAITING_CHECKS
    for n in range(capacity):  # different names from different addresses, as a botnet would send them
        threads.append(threading.Thread(target=logins.verify, args=(f"user{n}", "guess", f"10.0.0.{n}")))
        threads[-1].start()
    wait_for(lambda: len(hasher.checks) == login_limits.MAX_CONCURRENT_CHECKS and logins._limits.admitted == capacity,
             what="the hash slots to fill and the rest to wait")
    with pytest.raises(LoginRefused, match="checking too many logins") as refused:
        logins.verify("user-more", "guess", "10.1.0.1")
    assert refused.value.status == 503 and refused.value.retry_after >= 1
    assert logins.verify("ana", "apple-pie-42", "192.168.1.5")  # remembered: no slot needed
    assert logins.token_user(token) == "ana"
    assert len(hasher.checks) == login_limits.MAX_CONCURRENT_CHECKS  # nothing more was hashed


def test_one_address_has_at_most_a_few_checks_in_flight(held) -> None:
    logins, hasher, _, threads = held
    for n in range(login_limits.ADDRESS_CHECKS):
        threads.append(threading.Thread(target=logins.verify, args=(f"user{n}", "guess", "10.0.0.1")))
        threads[-1].start()
    wait_for(lambda: logins._limits.admitted == login_limits.ADDRESS_CHECKS, what="the address's checks")
    with pytest.raises(LoginRefused, match="too many logins at once from your address") as refused:
        logins.verify("user-more", "guess", "10.0.0.1")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    threads.append(threading.Thread(target=logins.verify, args=("user-other", "guess", "10.0.0.2")))
    threads[-1].start()  # another address is admitted
    wait_for(lambda: logins._limits.admitted == login_limits.ADDRESS_CHECKS + 1, what="the other address's check")


def test_the_ui_login_waits_for_its_hash_off_the_event_loop_and_answers_refusals_with_retry_after(held) -> None:
    logins, hasher, _, threads = held
    login = logins.gradio_auth
    assert asyncio.iscoroutinefunction(login)  # Gradio awaits it, rather than calling it in its event loop

    async def flood() -> tuple[int, dict[str, str], bool]:
        token = login_limits.CLIENT_ADDRESS.set("10.0.0.1")
        tasks = [asyncio.ensure_future(login(f"user{n}", "guess")) for n in range(login_limits.ADDRESS_CHECKS)]
        while logins._limits.admitted < login_limits.ADDRESS_CHECKS:
            await asyncio.sleep(0.01)  # the loop runs while both checks hang in their threads
        try:
            await login("user-more", "guess")
        except Exception as e:  # noqa: BLE001 -- the HTTPException Gradio's route answers with
            refusal = e
        login_limits.CLIENT_ADDRESS.reset(token)
        login_limits.CLIENT_ADDRESS.set("192.168.1.5")
        verified = await login("ana", "apple-pie-42")  # ana's browser, which logged in before: at once
        hasher.gate.set()
        assert await asyncio.gather(*tasks) == [False] * login_limits.ADDRESS_CHECKS
        return refusal.status_code, refusal.headers, verified

    with concurrent.futures.ThreadPoolExecutor(1) as own_thread:  # a loop of its own, whatever ran before here
        assert own_thread.submit(asyncio.run, flood()).result(timeout=60) == (429, {"Retry-After": "1"}, True)


def test_removed_users_changed_passwords_and_revoked_tokens_take_effect_without_a_restart(
        tmp_path: Path, hasher: Hasher, caplog) -> None:
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    add_user(path, "ben", "blue-moon-42")
    ana, ben = issue_token(path, "ana"), issue_token(path, "ben")
    logins = studio_logins(path)
    ended: list[set[str]] = []
    logins.on_logins_ended(ended.append)
    assert logins.verify("ana", "apple-pie-42") and logins.verify("ben", "blue-moon-42")

    revoke_token(path, "ana")  # `users token ana --revoke`
    assert logins.token_user(ana) is None and logins.token_user(ben) == "ben"
    assert ended == []  # a token is no login: ana's sessions stay
    again = issue_token(path, "ana")
    assert logins.token_user(again) == "ana"  # a new token works at once

    checks = len(hasher.checks)
    add_user(path, "ana", "apple-pie-43")  # a new password: the old one, remembered, no longer passes
    assert not logins.verify("ana", "apple-pie-42") and logins.verify("ana", "apple-pie-43")
    assert len(hasher.checks) == checks + 2 and ended == [{"ana"}]
    assert logins.verify("ben", "blue-moon-42") and len(hasher.checks) == checks + 2  # ben's is still remembered

    remove_user(path, "ben")  # `users remove ben`
    assert not logins.verify("ben", "blue-moon-42") and logins.token_user(ben) is None
    assert logins.users == ["ana"] and ended == [{"ana"}, {"ben"}]

    path.write_text("ana:$argon2id$oops\nnot a login line\n")  # a hand edit gone wrong: the logins stay
    with caplog.at_level(logging.WARNING):
        assert logins.verify("ana", "apple-pie-43")
    assert "line 2: expected USER:HASH" in caplog.text and "stay in force" in caplog.text
    path.unlink()  # no file: no one from it, and the studio still asks for a login
    assert not logins.verify("ana", "apple-pie-43") and logins.required and logins.users == []
    assert logins.token_user(again) is None


def test_a_users_ui_sessions_end_with_the_login(tmp_path: Path) -> None:
    app = SimpleNamespace(tokens={"cookie-1": "ana", "cookie-2": "ben", "cookie-3": "ana"})
    end_sessions(app, {"ana"})
    assert app.tokens == {"cookie-2": "ben"}
    end_sessions(object(), {"ana"})  # an app without Gradio's sessions: nothing to end


def test_an_api_token_names_its_user_until_revoked_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    add_user(path, "ben", "blue-moon-42")
    with pytest.raises(ValueError, match="no user 'cy'"):
        issue_token(path, "cy")
    first = issue_token(path, "ana")
    token = issue_token(path, "ana")  # a new one replaces the old
    ben = issue_token(path, "ben")
    assert token.startswith("atelier_") and len(token) > 40 and token not in accounts.tokens_file(path).read_text()
    assert accounts.tokens_file(path).stat().st_mode & 0o077 == 0
    logins = Accounts.from_sources([], [path])
    assert logins.token_user(token) == "ana" and logins.token_user(ben) == "ben"
    assert logins.token_user(first) is None and logins.token_user(token + "x") is None
    assert logins.token_user(accounts.token_digest(token)) is None  # the stored digest is not a token

    assert revoke_token(path, "ana") and not revoke_token(path, "ana")
    remove_user(path, "ben")  # a removed user's token goes with the login
    logins = Accounts.from_sources([], [path])
    assert logins.token_user(token) is None and logins.token_user(ben) is None
    assert read_logins(accounts.tokens_file(path)) == {}


def test_a_password_on_the_command_line_is_warned_of(caplog) -> None:
    from studio.launcher import warn_of_passwords_in

    with caplog.at_level(logging.WARNING):
        warn_of_passwords_in(["--auth-file", "logins", "--port", "7861"])
        assert caplog.text == ""
        warn_of_passwords_in(["--auth=ann:apple-pie-9"])
    assert "lists its processes (`ps`)" in caplog.text and "users add NAME" in caplog.text
    assert "apple-pie-9" not in caplog.text
