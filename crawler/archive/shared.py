"""Story keys, feed validators and failure memory shared by several workers, in Redis.

``DEDUP_BACKEND = "redis://host:6379/0"``: every worker keeps its own archive folder (its own
``.state.sqlite3``), and the keys of every story any worker archived live in Redis too, so
that no two workers write the same story. A story is claimed before its post is written: one
atomic script sets each of its keys (title+day, canonical URL) if none is set, as
``claim:<token>`` with a time to live; the worker that wrote the post confirms the claim
(``post:<path>``, kept), one whose write failed releases it. A worker killed between claim
and confirm leaves a claim that expires after ``DEDUP_CLAIM_TTL`` seconds, after which another
worker may take the story. A worker adopts its own archive's keys when it starts (a confirm
lost to a crash, an archive that was there before Redis).

Any Redis error is :class:`SharedUnavailable`, an OSError: the archive service stops the crawl
on the first one (crawler/archive/service.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

# Per key of a story: 0 when every key was free and is now ours, else the (1-based) position
# of the first key already taken. One script: Redis runs it atomically.
_CLAIM = """
for i, key in ipairs(KEYS) do
    if redis.call('EXISTS', key) == 1 then return i end
end
for _, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 0
"""
# Our claim (or a key nobody holds) becomes the post's: kept with no time to live.
_CONFIRM = """
for _, key in ipairs(KEYS) do
    local value = redis.call('GET', key)
    if not value or value == ARGV[1] then
        redis.call('SET', key, ARGV[2])
    end
end
return 0
"""
_RELEASE = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""
# A worker's own post: set where the key is free or only claimed.
_ADOPT = """
for i, key in ipairs(KEYS) do
    local value = redis.call('GET', key)
    if not value or string.sub(value, 1, 6) == 'claim:' then
        redis.call('SET', key, ARGV[i])
    end
end
return 0
"""
TIMEOUT_SECONDS = 5.0
ADOPT_BATCH = 1000


def _redis() -> ModuleType:
    """redis-py, imported on first use: every command imports this module, and redis-py
    (~0.12 s) is only needed by a run with a shared backend."""
    import redis

    return redis


class SharedUnavailable(OSError):
    """Redis could not be reached or answered with an error."""


def is_redis_url(backend: str) -> bool:
    return backend.startswith(("redis://", "rediss://", "unix://"))


class SharedKeys:
    def __init__(self, url: str, prefix: str, claim_ttl: timedelta) -> None:
        self.url = url
        self.prefix = prefix
        self.claim_ttl_ms = int(claim_ttl.total_seconds() * 1000)
        # One token per worker run: its claims, told apart from every other worker's.
        self.claim_value = f"claim:{uuid.uuid4().hex}"
        self._redis = _redis().Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        self._claim = self._redis.register_script(_CLAIM)
        self._confirm = self._redis.register_script(_CONFIRM)
        self._release = self._redis.register_script(_RELEASE)
        self._adopt = self._redis.register_script(_ADOPT)

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except _redis().RedisError as error:
            raise SharedUnavailable(f"Redis at {self.url}: {error}") from error

    def ping(self) -> None:
        self._call(self._redis.ping)

    def close(self) -> None:
        self._redis.close()

    # --- story keys -------------------------------------------------------------------------

    def _keys(self, title_key: str | None, url_key: str | None) -> list[tuple[str, str]]:
        keys = []
        if url_key is not None:
            keys.append(("url", f"{self.prefix}url:{url_key}"))
        if title_key is not None:
            keys.append(("title", f"{self.prefix}title:{title_key}"))
        return keys

    def knows(self, title_key: str | None, url_key: str | None) -> str | None:
        """'url' or 'title' when a worker archived a post under that key, else None (a key
        only claimed is not archived yet)."""
        keys = self._keys(title_key, url_key)
        if not keys:
            return None
        values = self._call(self._redis.mget, [key for _, key in keys])
        for (kind, _), value in zip(keys, values, strict=True):
            if value is not None and value.startswith(b"post:"):
                return kind
        return None

    def claim(self, title_key: str, url_key: str | None) -> str | None:
        """Take the story for this worker: None when it is ours now, else 'url' or 'title',
        the kind of key another worker holds (archived, or being written)."""
        keys = self._keys(title_key, url_key)
        taken = self._call(
            self._claim, keys=[key for _, key in keys], args=[self.claim_value, self.claim_ttl_ms]
        )
        return keys[int(taken) - 1][0] if taken else None

    def confirm(self, title_key: str, url_key: str | None, relpath: str) -> None:
        """The story's post is on disk (file, index line, local keys): keep its keys."""
        keys = [key for _, key in self._keys(title_key, url_key)]
        self._call(self._confirm, keys=keys, args=[self.claim_value, f"post:{relpath}"])

    def release(self, title_key: str, url_key: str | None) -> None:
        """The story was not written: another worker (or a later run) may take it."""
        keys = [key for _, key in self._keys(title_key, url_key)]
        self._call(self._release, keys=keys, args=[self.claim_value])

    def adopt(self, keys: Iterable[tuple[str, str, str]]) -> int:
        """Record this worker's archived ``(kind, key, relpath)`` keys; how many were sent."""
        sent = 0
        batch: list[tuple[str, str]] = []
        for kind, key, relpath in keys:
            batch.append((f"{self.prefix}{kind}:{key}", f"post:{relpath}"))
            if len(batch) == ADOPT_BATCH:
                sent += self._adopt_batch(batch)
                batch = []
        return sent + self._adopt_batch(batch)

    def _adopt_batch(self, batch: list[tuple[str, str]]) -> int:
        if batch:
            keys, values = zip(*batch, strict=True)
            self._call(self._adopt, keys=list(keys), args=list(values))
        return len(batch)

    # --- failure memory: a hash per failed page, gone when its longest wait is over ---------

    def failure(self, url_key: str) -> tuple[int, datetime] | None:
        """(attempts, last failure) of a page that failed, else None."""
        attempts, failed_at = self._call(
            self._redis.hmget, f"{self.prefix}failure:{url_key}", ["attempts", "failed_at"]
        )
        if attempts is None or failed_at is None:
            return None
        return int(attempts), datetime.fromisoformat(failed_at.decode())

    def record_failure(self, url_key: str, reason: str, keep: timedelta) -> None:
        key = f"{self.prefix}failure:{url_key}"
        pipe = self._redis.pipeline()
        pipe.hincrby(key, "attempts", 1)
        pipe.hset(key, mapping={"reason": reason, "failed_at": datetime.now(UTC).isoformat()})
        pipe.expire(key, keep)
        self._call(pipe.execute)

    def forget_failure(self, url_key: str) -> None:
        self._call(self._redis.delete, f"{self.prefix}failure:{url_key}")

    # --- feeds' conditional GET -------------------------------------------------------------

    def feed_validators(self, feed_url: str) -> tuple[str | None, str | None]:
        etag, modified = self._call(
            self._redis.hmget, f"{self.prefix}feed:{feed_url}", ["etag", "last_modified"]
        )
        return (
            etag.decode() if etag else None,
            modified.decode() if modified else None,
        )

    def save_feed_validators(
        self, feed_url: str, etag: str | None, last_modified: str | None
    ) -> None:
        key = f"{self.prefix}feed:{feed_url}"
        pipe = self._redis.pipeline()
        pipe.delete(key)
        values = {k: v for k, v in (("etag", etag), ("last_modified", last_modified)) if v}
        if values:
            pipe.hset(key, mapping=values)
        self._call(pipe.execute)


def redis_prefix(settings: Any) -> str:
    """What every key of ours in Redis starts with (DEDUP_REDIS_PREFIX)."""
    return str(settings.get("DEDUP_REDIS_PREFIX") or "technews:")


def connect_shared(settings: Any) -> SharedKeys:
    """The shared backend of ``DEDUP_BACKEND``, answering (else SharedUnavailable)."""
    shared = SharedKeys(
        str(settings.get("DEDUP_BACKEND")),
        redis_prefix(settings),
        timedelta(seconds=settings.getfloat("DEDUP_CLAIM_TTL", 3600)),
    )
    shared.ping()
    return shared


def check_shared(settings: Any) -> None:
    """Before a run: a shared backend (DEDUP_BACKEND) or frontier (REDIS_URL) that does not
    answer is SharedUnavailable naming the setting (one line, exit status 1, nothing fetched)."""
    if is_redis_url(str(settings.get("DEDUP_BACKEND") or "sqlite")):
        try:
            connect_shared(settings).close()
        except SharedUnavailable as error:
            raise SharedUnavailable(f"DEDUP_BACKEND: {error}") from error
    frontier = settings.get("REDIS_URL")
    if frontier:
        redis = _redis()
        client = redis.Redis.from_url(
            str(frontier), socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        try:
            client.ping()
        except redis.RedisError as error:
            raise SharedUnavailable(f"REDIS_URL: Redis at {frontier}: {error}") from error
        finally:
            client.close()
