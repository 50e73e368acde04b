"""Fixtures shared by the tests (helpers live in support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from support import BACKGROUND, QuickStopServer, serve_feeds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read a background job's result (support.background_job) run after the
    others (each group in its usual order): the jobs run while the in-process tests do."""
    items.sort(key=waits_for_a_job)  # stable


def waits_for_a_job(item: pytest.Item) -> bool:
    return isinstance(item, pytest.Function) and any(
        BACKGROUND.is_job(item.module.__name__, name) for name in item.fixturenames
    )


@pytest.fixture(scope="session", autouse=True)
def background_jobs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Start the background jobs (support.background_job) the selected tests need."""
    needed = {
        (item.module.__name__, name)
        for item in request.session.items
        if waits_for_a_job(item)
        for name in item.fixturenames
    }
    BACKGROUND.start(needed, tmp_path_factory)
    yield
    BACKGROUND.close()


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    """pytest-httpserver's session server (behind its ``httpserver`` fixture), as the plugin
    makes it, but stopping at once when the session ends."""
    server = QuickStopServer(host=HTTPServer.DEFAULT_LISTEN_HOST, port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def feed_site(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    serve_feeds(httpserver)
    yield httpserver
