"""`python launch.py` as a child process of the tests, which never outlives them, whatever the outcome.

Each studio runs in a process group of its own, with its workers; stopping it kills the whole group. Every studio
started is stopped by the test that started it (`with Studio(...)` or `stop()`), else at the end of the session
(`stop_all`, from tests/conftest.py), else at interpreter exit; and on Linux the kernel kills a studio whose test
process died without any of those running (pytest-timeout's thread method, a SIGKILL), its workers then ending on
their pipe's end. Waiting for the studio's URL has a deadline: a studio that hangs before it serves is stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import PLUGIN

ROOT = Path(__file__).parent.parent.parent
URL_WAIT_S = 120.0  # a launch serves in ~7 s on a 2-core CPU (benchmarks/launch.py); this is for a loaded machine
_started: set[Studio] = set()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before it runs the studio: the kernel sends it SIGKILL when the test process dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Studio:
    """A launched studio process and the URL it printed; the lines it printed before it are in `printed`."""

    def __init__(self, data_dir: Path, port: int, *extra: str, env: Mapping[str, str] | None = None,
                 command: Sequence[str] = (sys.executable, "launch.py"), browser: bool = False) -> None:
        env = {**os.environ, "ATELIER_PLUGINS": PLUGIN, "ATELIER_DEVICES": "cpu", **(env or {})}
        self.proc = subprocess.Popen(
            [*command, *([] if browser else ["--no-browser"]), "--data-dir", str(data_dir), "--port", str(port),
             "--log-level", "warning", *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        _started.add(self)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.printed: list[str] = []  # what it printed before its URL (e.g. a generated login)
        while (line := self.next_line(URL_WAIT_S)) and not (match := re.search(r"running at (http://\S+)", line)):
            self.printed.append(line)
        if not line:
            self.stop()
            raise AssertionError(f"no URL printed within {URL_WAIT_S:.0f} s: {self.printed}\n"
                                 f"{self.proc.stderr.read()}")
        self.url = match.group(1)

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, timeout: float = 60) -> str:
        """The next line the studio prints; "" once it has exited, or if it prints nothing for `timeout` seconds."""
        try:
            return self._lines.get(timeout=timeout) or ""
        except queue.Empty:
            return ""

    def interrupt(self, timeout: float = 60, how: signal.Signals = signal.SIGINT) -> int:
        """Ctrl-C (or `how`) to the studio alone, as a terminal would: its exit status once it has stopped."""
        self.proc.send_signal(how)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill the studio and its workers (its process group), if anything of it still runs."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group outlives a studio that exited before its workers
        self.proc.wait()
        _started.discard(self)

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def living_in_group(group: int) -> list[int]:
    """The processes of process group `group` still running (not zombies), from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command name)"
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def stop_all() -> None:
    """Stop every studio a test started and left running."""
    for studio in list(_started):
        studio.stop()


atexit.register(stop_all)
