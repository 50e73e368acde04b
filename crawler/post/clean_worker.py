"""Body cleaning in worker processes, driven by the crawl's event loop.

Why not ``concurrent.futures.ProcessPoolExecutor``: its feeder and manager threads hold the
crawl's GIL for every article (pickling, waking, handing results over), about 400 us of the
crawl process's CPU per article against 530 us for cleaning it in place. Here each worker is
a plain child process on two pipes, written and read by the event loop itself: no thread in
the crawl's process, about a third of that cost.

Protocol (our own child, so pickle is safe): each message is a 4-byte big-endian length and
a pickle. Request ``(id, (raw, base_url, strip_selectors))``; reply ``(id, True, CleanBody)``
or ``(id, False, exception)``. A worker exits when its input closes (the crawl ended or was
killed), so none outlives the crawl.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO

from crawler.post.cleaning import CleanBody, clean_body

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")


class CleanWorkerLost(RuntimeError):
    """A worker died (killed, out of memory) while it held this article."""


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _reply(request_id: int, args: tuple[Any, ...]) -> bytes:
    try:
        return _frame((request_id, True, clean_body(*args)))
    except Exception as error:  # the article's own error, raised again in the crawl
        try:
            return _frame((request_id, False, error))
        except Exception:  # an exception that does not pickle: its type and text
            return _frame((request_id, False, ValueError(f"{type(error).__name__}: {error}")))


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """The worker's loop: clean each request, reply, until the input closes."""
    while head := requests.read(_LENGTH.size):
        if len(head) < _LENGTH.size:
            return  # the crawl died mid-message
        (size,) = _LENGTH.unpack(head)
        request_id, args = pickle.loads(requests.read(size))
        replies.write(_reply(request_id, args))
        replies.flush()


class _Worker(asyncio.SubprocessProtocol):
    """One child process and the articles it holds."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.pending: dict[int, asyncio.Future[CleanBody]] = {}
        self.alive = True
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def send(self, request_id: int, args: tuple[Any, ...]) -> asyncio.Future[CleanBody]:
        assert self.transport is not None
        future: asyncio.Future[CleanBody] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        stdin = self.transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(_frame((request_id, args)))
        return future

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._buffer)
            end = _LENGTH.size + size
            if len(self._buffer) < end:
                return
            request_id, ok, value = pickle.loads(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            future = self.pending.pop(request_id, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._lost(f"its pipe closed ({exc or 'end of file'})")

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport else None
        self._lost(f"exit status {code}")

    def _lost(self, reason: str) -> None:
        self.alive = False
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(CleanWorkerLost(f"body-cleaning worker lost: {reason}"))

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()  # closes its input; kills it if it is still running


class CleanWorkers:
    """``processes`` workers, started on first use; each article goes to the least busy.

    A worker that dies fails the articles it held with :class:`CleanWorkerLost` (the
    caller decides what to do with them) and is replaced at the next article.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._workers: list[_Worker] = []
        self._starting: asyncio.Future[None] | None = None
        self._ids = itertools.count()

    async def clean(
        self, raw: str, base_url: str | None, strip_selectors: Iterable[str] = ()
    ) -> CleanBody:
        worker = await self._least_busy()
        return await worker.send(next(self._ids), (raw, base_url, tuple(strip_selectors)))

    async def _least_busy(self) -> _Worker:
        self._workers = [worker for worker in self._workers if worker.alive]
        while len(self._workers) < self.processes:
            if self._starting is None:  # one start at a time; other callers wait for it
                self._starting = asyncio.ensure_future(self._start_one())
            starting = self._starting
            try:
                await asyncio.shield(starting)
            finally:
                if self._starting is starting and starting.done():
                    self._starting = None
            self._workers = [worker for worker in self._workers if worker.alive]
        return min(self._workers, key=lambda worker: len(worker.pending))

    async def _start_one(self) -> None:
        loop = asyncio.get_running_loop()
        # The child imports this package as the crawl does: from the crawl's sys.path (a
        # Scrapyd egg is on it, not installed).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        _, worker = await loop.subprocess_exec(
            _Worker,
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # its tracebacks, if any, go to the crawl's log output
            env=env,
        )
        self._workers.append(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []


def main() -> None:
    # Replies go on the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # The crawl's Ctrl-C reaches its whole process group: a graceful stop still cleans what
    # is in flight, and this worker ends when the crawl closes its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
