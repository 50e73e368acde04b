"""scrapy-redis's scheduler, aware of the other workers: see crawler/frontier.py."""

from __future__ import annotations

import logging
import uuid

import redis
from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.scheduler import Scheduler  # the optional extra: pip install -e '.[redis]'
from twisted.internet import task

from crawler.archive.shared import SharedUnavailable, redis_prefix

logger = logging.getLogger(__name__)

WORKER_TTL_MS = 60_000
HEARTBEAT_SECONDS = WORKER_TTL_MS / 1000 / 4
# How often a waiting worker looks at the shared queue (Scrapy's own idle loop: 5 s).
POLL_SECONDS = 0.5

# Redis's own clock, in ms: the workers' clocks need not agree.
_NOW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""

# KEYS: workers, idle. ARGV: worker, ttl in ms. Registers (or refreshes) the worker as busy.
_JOIN = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
"""
)

# The same for a worker still registered (a heartbeat after leaving must not bring it back).
_BEAT = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], 'XX', now + ARGV[2], ARGV[1])
"""
)

# Forget the workers whose heartbeat is too old (killed): both sets.
_FORGET_DEAD = (
    _NOW
    + """
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    redis.call('SREM', KEYS[2], dead)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""
)

# Marks the worker idle; returns how many other live workers are busy.
_IDLE = (
    _FORGET_DEAD
    + """
redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
local busy = 0
for _, worker in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('SISMEMBER', KEYS[2], worker) == 0 then busy = busy + 1 end
end
return busy
"""
)

# KEYS: workers, idle, queue, filter. The last worker out empties the frontier: returns 1.
_LEAVE = (
    _FORGET_DEAD
    + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
    return 1
end
return 0
"""
)


def frontier_name(spider: Spider) -> str:
    """``cnbeta``, ``sitemap:example.com``: the spider, and its source when it has its own."""
    source = getattr(spider, "source", None)
    name = getattr(source, "name", None)
    return spider.name if not name or name == spider.name else f"{spider.name}:{name}"


class SharedScheduler(Scheduler):  # type: ignore[misc]
    """Empties the shared frontier when the last worker leaves; a lost Redis stops the crawl."""

    crawler: Crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SharedScheduler:
        scheduler = super().from_crawler(crawler)
        scheduler.crawler = crawler
        scheduler.worker = uuid.uuid4().hex
        scheduler.lost = False
        scheduler.idle = False
        scheduler.heartbeat = None
        scheduler.poll = task.LoopingCall(scheduler._wake_engine)
        scheduler.prefix = redis_prefix(crawler.settings)
        return scheduler

    # --- the workers ------------------------------------------------------------------------

    def _keys(self) -> list[str]:
        return [f"{self.frontier}:workers", f"{self.frontier}:idle"]

    def _lose(self, error: redis.RedisError) -> None:
        """Redis gone: the crawl stops (once, with one line, by the archive service)."""
        if self.lost:
            return
        self.lost = True
        from crawler.archive.service import ArchiveService

        url = self.crawler.settings.get("REDIS_URL")
        ArchiveService.of(self.crawler).lose_shared(SharedUnavailable(f"Redis at {url}: {error}"))

    def open(self, spider: Spider) -> None:
        # One frontier per source, not per spider: two workers crawling two different
        # ``sitemap`` sources at once must not take each other's requests.
        self.frontier = f"{self.prefix}{frontier_name(spider)}"
        self.queue_key = self.frontier.replace("%", "%%") + ":requests"
        self.df = RFPDupeFilter(
            self.server,
            key=f"{self.frontier}:dupefilter",
            debug=self.crawler.settings.getbool("DUPEFILTER_DEBUG"),
        )
        try:
            super().open(spider)
            self.server.eval(_JOIN, 2, *self._keys(), self.worker, WORKER_TTL_MS)
        except redis.RedisError as error:
            self._lose(error)
            return
        self.crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        self.heartbeat = task.LoopingCall(self._beat)
        self.heartbeat.start(HEARTBEAT_SECONDS, now=False)

    def _beat(self) -> None:
        if self.lost:
            return
        try:
            self.server.eval(_BEAT, 1, self._keys()[0], self.worker, WORKER_TTL_MS)
        except redis.RedisError as error:
            self._lose(error)

    def _wake_engine(self) -> None:
        # Scrapy asks an idle crawl's scheduler for requests every 5 s; what the busy
        # workers push is taken sooner. (engine.crawl() does the same for a new request.)
        slot = getattr(self.crawler.engine, "_slot", None)
        if slot is not None:
            slot.nextcall.schedule()

    def spider_idle(self, spider: Spider) -> None:
        """Nothing left here: wait while another worker is busy (it may list more)."""
        if self.lost:
            return  # the archive service holds the crawl for its archive_unavailable close
        try:
            busy = self.server.eval(_IDLE, 2, *self._keys(), self.worker, WORKER_TTL_MS)
        except redis.RedisError as error:
            self._lose(error)
            return
        if not self.idle:
            self.idle = True
            if busy:
                logger.info("frontier: nothing to do here; waiting for %d busy workers", busy)
        if busy:
            self.stats.inc_value("frontier/waited_for_workers")
            if not self.poll.running:
                self.poll.start(POLL_SECONDS, now=False)
            raise DontCloseSpider

    def close(self, reason: str) -> None:
        for loop in (self.heartbeat, self.poll):
            if loop is not None and loop.running:
                loop.stop()
        if self.lost:
            return
        keys = [*self._keys(), self.queue.key, self.df.key]
        try:
            if self.server.eval(_LEAVE, 4, *keys, self.worker):
                logger.info("frontier: the last worker out; the shared queue is emptied")
        except redis.RedisError as error:
            self._lose(error)

    # --- the queue: scrapy-redis's, a lost Redis stopping the crawl instead of the engine ----

    def enqueue_request(self, request: Request) -> bool:
        if self.lost:
            return False
        try:
            return bool(super().enqueue_request(request))
        except redis.RedisError as error:
            self._lose(error)
            return False

    def next_request(self) -> Request | None:
        if self.lost:
            return None
        try:
            request = super().next_request()
            if request is not None and self.idle:
                self.idle = False
                if self.poll.running:
                    self.poll.stop()
                self.server.srem(self._keys()[1], self.worker)
        except redis.RedisError as error:
            self._lose(error)
            return None
        return request

    def has_pending_requests(self) -> bool:
        if self.lost:
            return False
        try:
            return bool(super().has_pending_requests())
        except redis.RedisError as error:
            self._lose(error)
            return False
