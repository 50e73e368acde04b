"""The demo site on 127.0.0.1: the bundled files of ``crawler/demo/site`` over HTTP.

``/<host>/<path>`` is answered from ``site/<host>/<path>`` (a path ending in ``/`` from its
``index.html``; one with a ``page=N`` query, as cnBeta's JSON list asks, from
``<path>/page-N.json``); ``/robots.txt`` from ``site/robots.txt``. Anything else is a 404.
Every request is recorded (and logged) so that the demo can say what it served.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from importlib.resources.abc import Traversable
from urllib.parse import parse_qs, urlsplit

from crawler.post.cleaning import one_line

logger = logging.getLogger(__name__)

SITE: Traversable = resources.files("crawler.demo") / "site"
# One path segment of a bundled file: no "..", no hidden names, nothing odd.
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
PAGE = re.compile(r"[1-9][0-9]{0,3}")
MAX_PATH = 1000
CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    # No charset: feedparser and lxml read the XML declaration.
    ".xml": "application/xml",
}
HTML_SUFFIXES = (".html", ".htm")
DECLARED_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.I)


@dataclass(frozen=True)
class Served:
    """One request the demo server answered."""

    client: str
    method: str
    path: str
    status: int


def bundled_file(target: str) -> Traversable | None:
    """The bundled file that answers a request target (path and query), or None."""
    if len(target) > MAX_PATH:
        return None
    parts = urlsplit(target)
    segments = parts.path.split("/")[1:]  # the path starts with "/"
    if segments and segments[-1] == "":
        segments[-1] = "index.html"
    page = parse_qs(parts.query).get("page")
    if page:  # a paged list (cnBeta's /home/more?…&page=N): one file per page
        if len(page) != 1 or not PAGE.fullmatch(page[0]):
            return None
        segments.append(f"page-{page[0]}.json")
    if len(segments) < 1 or not all(SEGMENT.fullmatch(segment) for segment in segments):
        return None
    if len(segments) == 1 and segments[0] != "robots.txt":
        return None  # a host folder itself, or a file that is no site's
    found = SITE.joinpath(*segments)
    return found if found.is_file() else None


def content_type(name: str, body: bytes) -> str:
    """The Content-Type of a bundled file: HTML says the charset its ``<meta>`` declares."""
    if name.endswith(HTML_SUFFIXES):
        declared = DECLARED_CHARSET.search(body[:2048])
        charset = declared.group(1).decode("ascii") if declared else "utf-8"
        return f"text/html; charset={charset}"
    return CONTENT_TYPES.get("." + name.rpartition(".")[2], "application/octet-stream")


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = "technews-demo"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        found = bundled_file(self.path)
        if found is None:
            body, kind, status = b"<h1>404 Not Found</h1>", "text/html", HTTPStatus.NOT_FOUND
        else:
            body, status = found.read_bytes(), HTTPStatus.OK
            kind = content_type(found.name, body)
        # Recorded before the answer is sent: whoever has the answer finds it recorded.
        self.server.record(Served(self.client_address[0], self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # recorded by _answer instead; malformed requests are answered 400 and dropped


class DemoServer(ThreadingHTTPServer):
    """Serves the bundled site on 127.0.0.1 (port 0: a free one) from a thread of its own."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), DemoHandler)
        self.served: list[Served] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)
        logger.info("demo server: %s %s -> %d", served.method, served.path, served.status)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hung up mid-answer (a crawl stopped by Ctrl-C): one line, no
        # traceback on stderr.
        logger.info("demo server: a request from %s ended early: %s", client_address,
                    one_line(sys.exc_info()[1]))  # fmt: skip

    def requests(self) -> list[Served]:
        with self._lock:
            return list(self.served)

    def __enter__(self) -> DemoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()
