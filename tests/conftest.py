"""Fixtures shared by the tests (helpers live in support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from support import serve_cnbeta, serve_feeds


@pytest.fixture
def cnbeta_site(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    serve_cnbeta(httpserver)
    yield httpserver


@pytest.fixture
def base_url(httpserver: HTTPServer) -> str:
    return httpserver.url_for("").rstrip("/")


@pytest.fixture
def feed_site(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    serve_feeds(httpserver)
    yield httpserver
