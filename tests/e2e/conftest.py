"""The studio served on a free port with the real bundled models, Chromium to drive it, a screenshot per test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from studio.services import Services
from tests.conftest import make_config
from tests.e2e.browser import MISSING, chromium, chromium_path
from tests.e2e.studio_page import StudioPage
from tests.support.model_trees import a1111_tree
from tests.support.tiny_sd import tiny_sd_library
from tests.ui.serving import serve_http

ARTIFACTS = Path(__file__).parent / "artifacts"  # each test's last screen (not kept in git)
VIEWPORT = {"width": 1280, "height": 800}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def browser():
    if chromium_path() is None:
        pytest.fail(MISSING)  # not a skip: CI must not pass without its browser tests
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    """One studio for the browser tests, on the bundled models as a new user gets them."""
    root = tmp_path_factory.mktemp("e2e")
    with serve_http(make_config(root / "data", plugins=())) as served:
        yield served


@pytest.fixture(scope="session")
def served_library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    """A studio whose --models-dir is an A1111 folder of tiny models of every kind, with previews. Not `served`: its
    checkpoints would become the text-to-image tab's default, and they cannot make pictures."""
    root = tmp_path_factory.mktemp("e2e-library")
    a1111_tree(root / "webui")
    with serve_http(make_config(root / "data", plugins=(), models_dirs=(root / "webui",))) as served:
        yield served


@pytest.fixture(scope="session")
def served_sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    """A studio whose --models-dir holds a tiny SD model that makes pictures, with a tiny LoRA, an embedding and a
    wildcards folder beside it."""
    root = tmp_path_factory.mktemp("e2e-sd")
    tiny_sd_library(root / "models")
    with serve_http(make_config(root / "data", plugins=(), models_dirs=(root / "models",))) as served:
        yield served


@pytest.fixture
def sd_page(browser, served_sd, request: pytest.FixtureRequest) -> Iterator[StudioPage]:
    with _page(browser, served_sd[1], request.node.name) as page:
        yield page


@pytest.fixture
def studio_page(browser, served, request: pytest.FixtureRequest) -> Iterator[StudioPage]:
    with _page(browser, served[1], request.node.name) as page:
        yield page


@pytest.fixture
def library_page(browser, served_library, request: pytest.FixtureRequest) -> Iterator[StudioPage]:
    """The page of the studio of `served_library`."""
    with _page(browser, served_library[1], request.node.name) as page:
        yield page


@contextmanager
def _page(browser, url: str, name: str) -> Iterator[StudioPage]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield StudioPage(page, url).open()
        assert not errors, f"the page's scripts failed: {errors}"
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        context.close()
