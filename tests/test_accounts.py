"""Logins: Argon2id hashes in the logins file, plain lines still read, each login checked against its hash once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from studio import accounts
from studio.accounts import Accounts, add_user, issue_token, read_logins, remove_user, revoke_token, tokens_file


def test_stored_logins_verify_and_a_checked_login_is_remembered(tmp_path: Path, monkeypatch, caplog) -> None:
    path = tmp_path / "logins"
    assert add_user(path, "ana", "apple-pie-42") is True
    assert add_user(path, "ana", "apple-pie-43") is False  # a new password replaces the old
    path.write_text(path.read_text() + "ben:plain-password\n")
    with caplog.at_level(logging.WARNING):
        logins = Accounts.from_sources([("cy", "from-the-flag")], [path])
    assert "keeps ben's password in plain text" in caplog.text and "apple-pie" not in caplog.text
    assert logins.users == ["ana", "ben", "cy"] and logins.required

    checks = []
    real = accounts._HASHER

    class Counting:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            checks.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(accounts, "_HASHER", Counting())
    assert logins.verify("ana", "apple-pie-43") and logins.verify("ana", "apple-pie-43")
    assert len(checks) == 1  # the second request did not pay for Argon2 again
    assert not logins.verify("ana", "apple-pie-42") and not logins.verify("Ana", "apple-pie-43")
    assert logins.verify("ben", "plain-password") and logins.verify("cy", "from-the-flag")
    assert not logins.verify("nobody", "apple-pie-43")
    assert len(checks) == 4  # a wrong password and an unknown user cost a full check too: no timing hint


def test_no_logins_means_no_login_page() -> None:
    assert not Accounts().required and Accounts().gradio_auth is None


def test_bad_logins_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "logins"
    path.write_text("# ok\nana:$argon2id$x\njust-a-name\n")
    with pytest.raises(ValueError, match="logins, line 3: expected USER:HASH"):
        read_logins(path)
    with pytest.raises(ValueError, match="No such file"):
        read_logins(tmp_path / "missing")
    with pytest.raises(ValueError, match="no user 'zed'"):
        remove_user(path.with_name("other"), "zed")
    with pytest.raises(ValueError, match="user name"):
        add_user(path, "ana:admin", "long-enough")


def test_a_flood_of_wrong_passwords_locks_that_name_for_a_minute(tmp_path: Path) -> None:
    now = [0.0]
    logins = Accounts({"ana": accounts.hash_password("apple-pie-42")}, {"ben": "plain-password", "cy": "cy-password"},
                      clock=lambda: now[0])
    for _ in range(accounts.FAILURES_ALLOWED):
        assert not logins.verify("ana", "guess") and not logins.verify("ben", "guess")
    assert not logins.verify("ana", "apple-pie-42") and not logins.verify("ben", "plain-password")  # locked
    assert logins.verify("cy", "cy-password")  # other names are unaffected
    now[0] += accounts.FAILURE_WINDOW_S + 1
    assert logins.verify("ana", "apple-pie-42") and logins.verify("ben", "plain-password")


def test_an_api_token_names_its_user_until_revoked_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "logins"
    add_user(path, "ana", "apple-pie-42")
    add_user(path, "ben", "blue-moon-42")
    with pytest.raises(ValueError, match="no user 'cy'"):
        issue_token(path, "cy")
    first = issue_token(path, "ana")
    token = issue_token(path, "ana")  # a new one replaces the old
    ben = issue_token(path, "ben")
    assert token.startswith("atelier_") and len(token) > 40 and token not in tokens_file(path).read_text()
    assert tokens_file(path).stat().st_mode & 0o077 == 0
    logins = Accounts.from_sources([], [path])
    assert logins.token_user(token) == "ana" and logins.token_user(ben) == "ben"
    assert logins.token_user(first) is None and logins.token_user(token + "x") is None
    assert logins.token_user(accounts.token_digest(token)) is None  # the stored digest is not a token

    assert revoke_token(path, "ana") and not revoke_token(path, "ana")
    remove_user(path, "ben")  # a removed user's token goes with the login
    logins = Accounts.from_sources([], [path])
    assert logins.token_user(token) is None and logins.token_user(ben) is None and read_logins(tokens_file(path)) == {}
