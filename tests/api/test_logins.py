"""Logins over real HTTP, against attacks and changes: a flood of wrong passwords from many addresses (UI login page
and API alike) is refused before hashing and holds up no verified caller; `launch.py users` changes take effect
in the running studio (tokens, Basic logins, UI sessions)."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from studio import accounts, login_limits
from studio.accounts import add_user, issue_token
from studio.users_cli import users_main
from tests.conftest import make_config, wait_for
from tests.ui.serving import serve_http

JOBS = "api/v1/jobs"


def ui_login(client: httpx.Client, user: str, password: str, **kwargs: object) -> httpx.Response:
    return client.post("login", data={"username": user, "password": password}, **kwargs)


class HeldHasher:
    """Argon2 whose checks hang until `gate` is set, then fail: a checker kept busy by an attacker."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def hash(self, password: str) -> str:
        return PasswordHasher().hash(password)

    def verify(self, stored: str, password: str) -> bool:
        assert self.gate.wait(60)
        raise VerificationError("a wrong guess")


def test_a_flood_of_wrong_passwords_is_refused_before_hashing_and_holds_up_no_verified_caller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie-9")
    token = issue_token(logins, "ann")
    with serve_http(make_config(tmp_path / "data", auth_file=logins)) as (services, url), \
            httpx.Client(base_url=url, auth=("ann", "apple-pie-9"), timeout=20) as script, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=20) as tool, \
            httpx.Client(base_url=url, timeout=20) as browser:
        assert script.get(JOBS).status_code == 200  # ann's script: its login checked once, then remembered
        assert ui_login(browser, "ann", "apple-pie-9").status_code == 200 and browser.get("config").status_code == 200
        held = HeldHasher()
        monkeypatch.setattr(accounts, "_HASHER", held)

        def guess(n: int) -> httpx.Response:  # two guesses from each address, half on the login page, half on the API
            address = {"X-Forwarded-For": f"10.0.0.{n // 2}"}  # uvicorn takes it from a proxy on loopback only
            if n % 2:
                return httpx.get(url + JOBS, auth=(f"user{n}", "guess"), headers=address, timeout=90)
            return httpx.post(url + "login", data={"username": f"user{n}", "password": "guess"}, headers=address,
                              timeout=90)

        capacity = login_limits.MAX_CONCURRENT_CHECKS + login_limits.MAX_WAITING_CHECKS
        with ThreadPoolExecutor(capacity) as pool:
            try:
                flood = [pool.submit(guess, n) for n in range(capacity)]
                wait_for(lambda: services.accounts._limits.admitted == capacity, 30, "the checker to fill")
                elsewhere = {"X-Forwarded-For": "10.0.1.1"}
                for refused in (ui_login(browser, "eve", "guess", headers=elsewhere),
                                httpx.get(url + JOBS, auth=("eve", "guess"), headers=elsewhere)):
                    assert refused.status_code == 503 and "too many logins" in refused.text
                    assert int(refused.headers["retry-after"]) >= 1
                same = httpx.get(url + JOBS, auth=("eve", "guess"), headers={"X-Forwarded-For": "10.0.0.0"})
                assert same.status_code == 429 and "at once from your address" in same.text
                assert same.headers["retry-after"] == "1"
                # the verified callers are answered while every hash slot is taken (and none hashes again)
                assert script.get(JOBS).status_code == 200
                assert tool.get(JOBS).status_code == 200
                assert browser.get("config").status_code == 200
                assert ui_login(browser, "ann", "apple-pie-9").status_code == 200  # remembered from this address
            finally:
                held.gate.set()
            assert sorted(f.result().status_code for f in flood) == [400] * (capacity // 2) + [401] * (capacity // 2)


def test_login_changes_take_effect_in_the_running_studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie-9")
    add_user(logins, "ben", "blue-moon-9")
    token = issue_token(logins, "ben")

    def users(*args: str) -> None:
        assert users_main(["--auth-file", str(logins), *args]) == 0

    with serve_http(make_config(tmp_path / "data", auth_file=logins)) as (_, url), \
            httpx.Client(base_url=url, auth=("ann", "apple-pie-9"), timeout=30) as ann_script, \
            httpx.Client(base_url=url, auth=("ben", "blue-moon-9"), timeout=30) as ben_script, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as ben_tool, \
            httpx.Client(base_url=url, timeout=30) as ann_browser, \
            httpx.Client(base_url=url, timeout=30) as ben_browser:
        assert ui_login(ann_browser, "ann", "apple-pie-9").status_code == 200
        assert ui_login(ben_browser, "ben", "blue-moon-9").status_code == 200
        for client in (ann_script, ben_script, ben_tool):
            assert client.get(JOBS).status_code == 200
        for browser in (ann_browser, ben_browser):
            assert browser.get("config").status_code == 200 and browser.get(JOBS).status_code == 200

        users("token", "ben", "--revoke")
        assert ben_tool.get(JOBS).status_code == 401
        assert ben_script.get(JOBS).status_code == 200 and ben_browser.get("config").status_code == 200  # a token only

        users("remove", "ben")
        assert ben_script.get(JOBS).status_code == 401  # the remembered login is forgotten
        assert ben_browser.get("config").status_code == 401 and ben_browser.get(JOBS).status_code == 401
        assert httpx.post(url + "login", data={"username": "ben", "password": "blue-moon-9"}).status_code == 400
        assert ann_browser.get("config").status_code == 200 and ann_script.get(JOBS).status_code == 200

        monkeypatch.setattr("sys.stdin", io.StringIO("apple-pie-10\n"))
        users("add", "ann")  # a new password: the old one, and the sessions it opened, end
        assert ann_script.get(JOBS).status_code == 401 and ann_browser.get("config").status_code == 401
        assert httpx.get(url + JOBS, auth=("ann", "apple-pie-10")).status_code == 200
