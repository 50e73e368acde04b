"""Articles finished (body cleaned, values and keys computed) and feeds read (parsed,
entries mapped) in helper processes (crawler/child.py), driven by the crawl's event loop.

Why not ``concurrent.futures.ProcessPoolExecutor``: its feeder and manager threads hold the
crawl's GIL for every article (pickling, waking, handing results over), about 400 us of the
crawl process's CPU per article against 530 us for cleaning it in place. Here each worker's
pipes are written and read by the event loop itself: no thread in the crawl's process, about
a third of that cost.

Request ``(id, job, arguments)``, the job one of :data:`JOBS`; reply ``(id, True, its
result)`` or ``(id, False, exception)``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import pickle
import signal
import time
import weakref
from typing import TYPE_CHECKING, Any

from crawler import child
from crawler.post.article import finish_article

if TYPE_CHECKING:
    from crawler.extract.feed import ReadFeed


class CleanWorkerLost(RuntimeError):
    """A worker died (killed, out of memory) while it held this article."""


def _read_feed(*args: Any) -> Any:
    # Imported on the first feed: a site crawl's workers never load feedparser.
    from crawler.post.feed_ahead import read_and_finish

    return read_and_finish(*args)


# What a worker does: finish_article for the normalize pipeline, read_and_finish (parse a
# feed's bytes, map its entries, finish their articles) for the feeds spider.
JOBS = {"finish": finish_article, "read_feed": _read_feed}


def _reply(request: tuple[int, str, tuple[Any, ...]]) -> tuple[int, bool, Any]:
    request_id, job, args = request
    try:
        return request_id, True, JOBS[job](*args)
    except Exception as error:  # the article's (or feed's) own error, raised in the crawl
        return request_id, False, child.portable_error(error)


class _Worker(asyncio.SubprocessProtocol):
    """One child process and the articles it holds."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        self._buffer = bytearray()
        self.exited = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def send(self, request_id: int, job: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        stdin = self.transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(child.frame((request_id, job, args)))
        return future

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._buffer += data
        while (end := child.frame_size(self._buffer)) is not None:
            request_id, ok, value = pickle.loads(self._buffer[child.LENGTH_SIZE : end])
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
        if not self.exited.done():
            self.exited.set_result(code)

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

    async def finish(self, *args: Any) -> dict[str, Any]:
        """:func:`~crawler.post.article.finish_article` of ``args``, in a worker."""
        return await self.run("finish", *args)  # type: ignore[no-any-return]

    async def read_feed(self, *args: Any) -> ReadFeed:
        """:func:`~crawler.post.feed_ahead.read_and_finish` of ``args``, in a worker."""
        return await self.run("read_feed", *args)  # type: ignore[no-any-return]

    async def run(self, job: str, *args: Any) -> Any:
        """One of :data:`JOBS` on ``args``, in the least busy worker."""
        worker = await self._least_busy()
        return await worker.send(next(self._ids), job, args)

    async def warm_up(self) -> None:
        """Every worker started now, ahead of the first article (a worker takes about a
        quarter of a second to start: imports of lxml, nh3 and the post schema)."""
        if self.processes > 0:
            await self._least_busy()

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
        _, worker = await asyncio.get_running_loop().subprocess_exec(
            _Worker,
            *child.command(__name__),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # its tracebacks, if any, go to the crawl's log output
            env=child.environment(),
        )
        self._workers.append(worker)

    def running_pids(self) -> list[int]:
        """The process ids of the workers still running."""
        return [
            worker.transport.get_pid()
            for worker in self._workers
            if worker.transport is not None and worker.transport.get_returncode() is None
        ]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []

    async def stop(self, timeout: float = 10.0) -> None:
        """Close the workers and wait until they have exited (before their loop closes);
        TimeoutError if one is still running after ``timeout`` seconds (closing kills it)."""
        workers = self._workers
        self.close()
        for worker in workers:
            await asyncio.wait_for(asyncio.shield(worker.exited), timeout)


# The workers of each event loop, by their number: the crawls of one process (a harvest's
# sources, a test session) share them instead of starting their own. They end with the
# process (their input closes), or when their loop is gone.
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, CleanWorkers]] = (
    weakref.WeakKeyDictionary()
)


def shared_workers(processes: int) -> CleanWorkers:
    """The running loop's ``processes`` workers (call from a coroutine)."""
    by_size = _SHARED.setdefault(asyncio.get_running_loop(), {})
    if processes not in by_size:
        by_size[processes] = CleanWorkers(processes)
    return by_size[processes]


async def stop_shared_workers() -> None:
    """The running loop's shared workers stopped and waited for: for a program that runs
    its crawls' pipelines on a loop it then closes (bench/bench_pipelines.py)."""
    for workers in _SHARED.pop(asyncio.get_running_loop(), {}).values():
        await workers.stop()


def _stop_shared_workers() -> None:
    """At the crawl process's exit (its loop may be closed already): the shared workers
    stopped and waited for, so that none outlives the process that started it."""
    pids = [
        pid
        for by_size in list(_SHARED.values())
        for workers in by_size.values()
        for pid in workers.running_pids()
    ]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.kill(pid, signal.SIGTERM)  # it holds nothing: its work is done by now
    for pid in pids:
        for _ in range(200):  # up to 2 s each
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:  # reaped by asyncio's child watcher
                break
            time.sleep(0.01)


atexit.register(_stop_shared_workers)


if __name__ == "__main__":
    child.serve(_reply)
