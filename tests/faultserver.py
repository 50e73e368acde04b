"""A fault-injecting HTTP server for the tests: plain sockets on 127.0.0.1, one thread per
connection, every response written by hand (so that it can lie, stall or break off).

A request's path names its fault; the last segment says what the fault carries when it
carries anything: ``feed`` (an RSS feed) or anything else (an HTML article page). Titles and
links are made from the path, so every route's posts are distinct:

- ``/ok/...``: a good feed or article (the control).
- ``/reset/...``: headers and part of the body, then the socket closed with ``SO_LINGER`` 0
  (an RST, not a FIN).
- ``/drip/...``: headers, then the body one byte every 50 ms; the server gives up after
  ``DRIP_SECONDS`` at most (meant for a crawl with a short ``DOWNLOAD_TIMEOUT``).
- ``/status/<code>/...``: that status, a short HTML body.
- ``/retry-after/<value>/...``: 429 with ``Retry-After: <value>`` (percent-decoded, bytes as
  they are); the names ``past``, ``future`` and ``empty`` stand for an HTTP date in 2015, one in
  the year 9999 and an empty value.
- ``/gzip-truncated/...``: ``Content-Encoding: gzip``, the compressed body cut in half (a
  correct ``Content-Length`` for what is sent); ``/gzip-truncated/header/...`` cuts it inside
  the gzip header, so that nothing at all inflates.
- ``/gzip-bomb/...``: a ~10 KB gzip body that inflates to ``BOMB_BYTES`` (10 MB; built once, at
  start-up).
- ``/oversized/length/...``: ``Content-Length`` of ``OVERSIZED_BYTES`` (8 MB) and the body
  sent while the client reads; ``/oversized/chunked/...``: the same, chunked, without length.
- ``/redirect-loop/a/...`` -> ``/redirect-loop/b/...`` -> ``/redirect-loop/a/...``.
- ``/content-type-lie/...``: a feed served as ``image/png``, an HTML page as
  ``application/octet-stream``.
- ``/charset-lie/...``: a UTF-8 feed labelled ``charset=iso-8859-1``, a GBK page labelled
  ``charset=utf-8``.
- ``/empty-200/...``: 200 with no body at all.
- ``/304-unasked/...``: 304 Not Modified, whether or not the request sent validators.

Every answer but the redirects carries ``ETag`` and ``Last-Modified``, so that a crawl which
wrongly keeps a failed feed's validators is caught. ``/robots.txt`` is a 404 (everything
allowed); any other path is a 404 too, unless a test put a page there with :meth:`serve`.
:meth:`refused_url` is a URL on a port nothing listens on.
"""

from __future__ import annotations

import gzip
import html
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote_to_bytes, urlsplit

DRIP_SECONDS = 3.0  # a drip never lasts longer than this, whatever the client does
DRIP_INTERVAL = 0.05
BOMB_BYTES = 10 * 1024 * 1024
OVERSIZED_BYTES = 8 * 1024 * 1024
CHUNK = 64 * 1024
ETAG = '"fault-etag"'
LAST_MODIFIED = "Thu, 15 Jan 2026 10:00:00 GMT"
PUBLISHED = "2026-01-15T10:00:00Z"
ENTRIES_PER_FEED = 6
RETRY_AFTER_NAMES = {
    "past": b"Wed, 21 Oct 2015 07:28:00 GMT",
    "future": b"Fri, 31 Dec 9999 23:59:59 GMT",
    "empty": b"",
}


@dataclass(frozen=True)
class Seen:
    """A request the server read: its path (with query) and headers (lower-case names)."""

    path: str
    headers: dict[str, str]


# --- what the faults carry ----------------------------------------------------------------


def feed_titles(path: str) -> list[str]:
    """The titles of the entries of the feed served at ``path`` (non-ASCII on purpose)."""
    return [f"{path} 条目 {n}" for n in range(1, ENTRIES_PER_FEED + 1)]


def feed_bytes(path: str, encoding: str = "utf-8") -> bytes:
    """An RSS 2.0 feed whose entries are named after ``path``."""
    items = "".join(
        f"<item><title>{html.escape(title)}</title>"
        f"<link>https://faults.example{html.escape(path)}/{n}</link>"
        f"<pubDate>Thu, 15 Jan 2026 {n:02d}:00:00 GMT</pubDate>"
        f"<description><![CDATA[<p>正文：{html.escape(title)}，{'内容' * 40}</p>]]></description>"
        "</item>"
        for n, title in enumerate(feed_titles(path), start=1)
    )
    return (
        f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel>'
        f"<title>Faults</title><link>https://faults.example/</link><description>d</description>"
        f"{items}</channel></rss>"
    ).encode(encoding)


def article_title(path: str) -> str:
    """The title of the article page served at ``path`` (non-ASCII on purpose)."""
    return f"{path} 文章"


def article_bytes(path: str, encoding: str = "utf-8") -> bytes:
    """An article page (OpenGraph title and date, an ``<article>`` body) named after ``path``."""
    title = html.escape(article_title(path))
    return (
        f'<html><head><meta charset="{encoding}">'
        f'<meta property="og:title" content="{title}">'
        f'<meta property="article:published_time" content="{PUBLISHED}"></head>'
        f"<body><article><p>{title}：{'正文内容' * 40}</p></article></body></html>"
    ).encode(encoding)


def is_feed_path(path: str) -> bool:
    return urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1] == "feed"


def payload(path: str) -> tuple[bytes, str]:
    """What a route carries: body and honest Content-Type."""
    if is_feed_path(path):
        return feed_bytes(path), "application/rss+xml; charset=utf-8"
    return article_bytes(path), "text/html; charset=utf-8"


def gzip_bomb() -> bytes:
    """A gzip body of ~10 KB that inflates to BOMB_BYTES: a feed's first tag, then spaces."""
    return gzip.compress(b"<rss>" + b" " * (BOMB_BYTES - 5), compresslevel=9)


# --- the server ---------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        try:
            seen = read_request(sock)
        except (OSError, ValueError):
            return
        if seen is None:
            return
        self.server.owner.record(seen)
        with suppress(OSError):  # the client went away: nothing more to do
            self.server.owner.respond(sock, seen)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    # A crawl opens dozens of connections at once: with socketserver's default backlog of 5
    # the kernel drops SYNs, and the client's retransmission after 1 s looks like a fault.
    request_queue_size = 256
    daemon_threads = False
    block_on_close = True  # server_close() joins every connection's thread: a clean stop

    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


def read_request(sock: socket.socket) -> Seen | None:
    """The request line and headers of a GET (None when the client closed first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            raise ValueError("request head too large")
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    _method, target, _version = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Seen(target, headers)


class FaultServer:
    """The fault server: ``start()``/``stop()`` (or ``with FaultServer() as server``)."""

    def __init__(self) -> None:
        self.bomb = gzip_bomb()
        self.requests: list[Seen] = []
        self.pages: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes: dict[str, Callable[[socket.socket, Seen, list[str]], None]] = {
            "ok": self._ok,
            "reset": self._reset,
            "drip": self._drip,
            "status": self._status,
            "retry-after": self._retry_after,
            "gzip-truncated": self._gzip_truncated,
            "gzip-bomb": self._gzip_bomb,
            "oversized": self._oversized,
            "redirect-loop": self._redirect_loop,
            "content-type-lie": self._content_type_lie,
            "charset-lie": self._charset_lie,
            "empty-200": self._empty_200,
            "304-unasked": self._not_modified_unasked,
        }

    # --- life -------------------------------------------------------------------------------

    def start(self) -> FaultServer:
        self._stopping.clear()
        self._server = _TCPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
            name="fault-server", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops at once: drips and endless bodies end, every connection thread is joined."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not running"
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    @staticmethod
    def refused_url(path: str = "/refused") -> str:
        """A URL on a port of 127.0.0.1 nothing listens on (bound, then closed)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return f"http://127.0.0.1:{port}{path}"

    def serve(self, path: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        """A plain page of the test's own at ``path`` (a list page linking to faults)."""
        self.pages[path] = (body, content_type)

    def requested(self, path: str) -> list[Seen]:
        """The requests for ``path`` so far."""
        with self._lock:
            return [seen for seen in self.requests if seen.path == path]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    # --- dispatch ---------------------------------------------------------------------------

    def respond(self, sock: socket.socket, seen: Seen) -> None:
        path = urlsplit(seen.path).path
        if path in self.pages:
            body, content_type = self.pages[path]
            return self._send(sock, 200, {"Content-Type": content_type}, body)
        fault, *args = path.strip("/").split("/")
        route = self.routes.get(fault)
        if route is None:  # /robots.txt among them
            return self._send(sock, 404, {"Content-Type": "text/plain"}, b"not found")
        return route(sock, seen, args)

    # --- the faults -------------------------------------------------------------------------

    def _ok(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        body, content_type = payload(seen.path)
        self._send(sock, 200, self._validators(content_type), body)

    def _reset(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        body, content_type = payload(seen.path)
        self._send_head(sock, 200, {**self._validators(content_type), "Content-Length": len(body)})
        sock.sendall(body[: len(body) // 3])
        time.sleep(0.05)  # let the client read the first part
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with SO_LINGER 0: an RST

    def _drip(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        body, content_type = payload(seen.path)
        self._send_head(sock, 200, {**self._validators(content_type), "Content-Length": len(body)})
        deadline = time.monotonic() + DRIP_SECONDS
        for byte in body:
            if time.monotonic() > deadline or self._stopping.wait(DRIP_INTERVAL):
                return
            sock.sendall(bytes([byte]))

    def _status(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        code = int(args[0]) if args and args[0].isdigit() else 500
        headers = self._validators("text/html; charset=utf-8")
        self._send(sock, code, headers, f"<html><body><h1>{code}</h1></body></html>".encode())

    def _retry_after(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        raw = args[0] if args else "empty"
        value = RETRY_AFTER_NAMES.get(raw, unquote_to_bytes(raw))
        headers = {**self._validators("text/html; charset=utf-8"), "Retry-After": value}
        self._send(sock, 429, headers, b"<html><body>slow down</body></html>")

    def _gzip_truncated(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        body, content_type = payload(seen.path)
        packed = gzip.compress(body)
        cut = packed[:5] if args and args[0] == "header" else packed[: len(packed) // 2]
        headers = {**self._validators(content_type), "Content-Encoding": "gzip"}
        self._send(sock, 200, headers, cut)

    def _gzip_bomb(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        _body, content_type = payload(seen.path)
        headers = {**self._validators(content_type), "Content-Encoding": "gzip"}
        self._send(sock, 200, headers, self.bomb)

    def _oversized(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        _body, content_type = payload(seen.path)
        chunked = bool(args) and args[0] == "chunked"
        headers: dict[str, object] = self._validators(content_type)
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = OVERSIZED_BYTES
        self._send_head(sock, 200, headers)
        block = b" " * CHUNK
        for _ in range(OVERSIZED_BYTES // CHUNK):  # bounded; the client stops reading first
            if self._stopping.is_set():
                return
            sock.sendall(b"%x\r\n%s\r\n" % (CHUNK, block) if chunked else block)
        if chunked:
            sock.sendall(b"0\r\n\r\n")

    def _redirect_loop(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        here, rest = (args[0] if args else "a"), "/".join(args[1:])
        there = "b" if here == "a" else "a"
        headers = {"Location": f"/redirect-loop/{there}/{rest}", "Content-Type": "text/html"}
        self._send(sock, 302, headers, b"")

    def _content_type_lie(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        body, _honest = payload(seen.path)
        lie = "image/png" if is_feed_path(seen.path) else "application/octet-stream"
        self._send(sock, 200, self._validators(lie), body)

    def _charset_lie(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        if is_feed_path(seen.path):  # UTF-8 bytes, labelled Latin-1
            body, label = feed_bytes(seen.path), "application/rss+xml; charset=iso-8859-1"
        else:  # GBK bytes (and <meta charset="gbk">), labelled UTF-8
            body, label = article_bytes(seen.path, "gbk"), "text/html; charset=utf-8"
        self._send(sock, 200, self._validators(label), body)

    def _empty_200(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        _body, content_type = payload(seen.path)
        self._send(sock, 200, self._validators(content_type), b"")

    def _not_modified_unasked(self, sock: socket.socket, seen: Seen, args: list[str]) -> None:
        self._send(sock, 304, {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}, None)

    # --- writing responses ------------------------------------------------------------------

    @staticmethod
    def _validators(content_type: str) -> dict[str, object]:
        return {"Content-Type": content_type, "ETag": ETAG, "Last-Modified": LAST_MODIFIED}

    @staticmethod
    def _send_head(sock: socket.socket, status: int, headers: dict[str, object]) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:  # a code HTTP does not define (/status/599)
            phrase = "Fault"
        lines = [f"HTTP/1.1 {status} {phrase}".encode()]
        for name, value in {**headers, "Connection": "close"}.items():
            raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
            lines.append(name.encode("latin-1") + b": " + raw)
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")

    def _send(
        self, sock: socket.socket, status: int, headers: dict[str, object], body: bytes | None
    ) -> None:
        if body is not None:
            headers = {**headers, "Content-Length": len(body)}
        self._send_head(sock, status, headers)
        if body:
            sock.sendall(body)
