"""Helper processes of a crawl: the framing they speak and how they are started.

A helper is ``python -m <module>`` on two pipes: it reads requests on stdin and writes one
reply per request on stdout, each a 4-byte big-endian length and a pickle (our own child, so
pickle is safe). It ignores Ctrl-C (a graceful stop still finishes what is in flight) and
exits when its input closes, so none outlives the crawl, even a killed one.

Why processes and not threads: the work they take (lxml and nh3 passes, the Python around
durable writes) holds the GIL, so in a thread it still competes with the crawl's reactor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

_LENGTH = struct.Struct("!I")
LENGTH_SIZE = _LENGTH.size


class ChildLost(OSError):
    """A helper process died (killed, out of memory) before it replied."""


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def frame_size(buffer: bytes | bytearray) -> int | None:
    """The size of the first whole message in buffer (its header included), or None."""
    if len(buffer) < LENGTH_SIZE:
        return None
    (size,) = _LENGTH.unpack_from(buffer)
    return LENGTH_SIZE + size if len(buffer) >= LENGTH_SIZE + size else None


def read_message(stream: BinaryIO) -> Any | None:
    """The next message on a blocking stream; None at its end (or a message cut short)."""
    head = stream.read(LENGTH_SIZE)
    if len(head) < LENGTH_SIZE:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def portable_error(error: BaseException) -> BaseException:
    """The error itself if it survives pickling, else an OSError/ValueError that says it."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # any error that cannot cross: said in another form
        if isinstance(error, OSError):
            return OSError(error.errno, f"{type(error).__name__}: {error}", error.filename)
        return ValueError(f"{type(error).__name__}: {error}")


def command(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def environment() -> dict[str, str]:
    # The child imports this package as the crawl does: from the crawl's sys.path (a Scrapyd
    # egg is on it, not installed).
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}


def serve(handle: Callable[[Any], Any]) -> None:
    """A helper's main loop: each request's reply is ``handle(request)``."""
    # Replies go on the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    for stream in (requests, replies):
        _widen_pipe(stream.fileno())
    while (request := read_message(requests)) is not None:
        reply = frame(handle(request))
        try:
            replies.write(reply)
            replies.flush()
        except BrokenPipeError:  # the crawl is gone (stopped at once, killed)
            with contextlib.suppress(BrokenPipeError):
                replies.close()  # what is still buffered has nobody to go to
            return


# A pipe's capacity asked for (Linux's default is 64 KiB; up to 1 MiB without privileges):
# a feed and its finished articles (about 1 MB) then cross in a few reads, not in dozens of
# 64 KiB wake-ups of the crawl's event loop.
PIPE_SIZE = 1 << 20


def _widen_pipe(fd: int) -> None:
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return  # not Linux: the pipe keeps its size
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError as error:  # not a pipe (a test's file), or over the user's pipe quota
        print(f"helper: pipe size kept ({error})", file=sys.stderr)


class BlockingChild:
    """A helper called from one thread, one request at a time (blocking pipes): started on
    first use, started again after it was lost."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """The helper started now (if it is not running), ahead of its first request: it
        imports what it needs while the caller goes on. Never waits: a call in progress
        (another crawl of this process) means it runs already."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._running()
        finally:
            self._lock.release()

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def call(self, request: Any) -> Any:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(frame(request))
                process.stdin.flush()
                reply = read_message(process.stdout)
            except (BrokenPipeError, ConnectionResetError):
                reply = None
            if reply is None:
                self._stop(process)
                raise ChildLost(f"helper process {self.module} lost (exit {process.poll()})")
            return reply

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._stop(self._process)

    def _running(self) -> subprocess.Popen[bytes]:
        """The helper's process, started again if it is not running (call under the lock)."""
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                command(self.module), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=environment(),
            )  # fmt: skip
        return self._process

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        self._process = None
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                # A dead child's pipe may refuse what is still buffered: it is gone anyway.
                with contextlib.suppress(BrokenPipeError):
                    stream.close()
        try:
            process.wait(timeout=5)  # it exits at the end of its input
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
