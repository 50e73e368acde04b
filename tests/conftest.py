"""Fixtures shared by the tests (helpers live in support.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from support import BACKGROUND, QuickStopServer, serve_feeds

# Background jobs start subprocesses from threads while pytest rewrites os.environ in the main
# thread (PYTEST_CURRENT_TEST, set and deleted around every test). CPython 3.11 spawns with
# vfork and lets other threads run until the child's exec: a child that inherits the
# environment then reads an environ array being changed under it, and exec fails with
# EFAULT ("OSError: [Errno 14] Bad address") now and then. fork copies the environment when it
# starts the child. (A loop of spawns beside a loop of os.environ writes: 534 of 630 spawns
# failed with vfork, none with fork or with env= given.) The crawler's own helpers pass env=.
subprocess._USE_VFORK = False  # type: ignore[attr-defined]


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
