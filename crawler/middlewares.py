"""Downloader middlewares: polite retries, a User-Agent that names a contact, and no request
that content points at an internal address."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.downloadermiddlewares.useragent import UserAgentMiddleware
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet import task

logger = logging.getLogger(__name__)


def backoff_delay(retry: int, base: float, maximum: float) -> float:
    """Exponential backoff: ``base``, ``2*base``, ``4*base``... for retries 1, 2, 3..."""
    return min(maximum, base * 2 ** max(retry - 1, 0))


def retry_after_seconds(value: bytes | str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if unusable."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isascii() and text.isdigit():  # not str.isdigit alone: '²' is a digit to it
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's RetryMiddleware, waiting before each retry instead of retrying at once.

    The wait doubles with every retry of a request (``RETRY_BACKOFF_BASE`` seconds first, at
    most ``RETRY_BACKOFF_MAX``); a response's ``Retry-After`` (seconds or a date, as 429 and
    503 answers carry it) is honoured instead, up to ``RETRY_AFTER_MAX``. The wait does not
    block other downloads.
    """

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.backoff_base = settings.getfloat("RETRY_BACKOFF_BASE")
        self.backoff_max = settings.getfloat("RETRY_BACKOFF_MAX")
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX")

    async def process_response(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> Request | Response:
        result = super().process_response(request, response)
        if isinstance(result, Request):
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if retry_after is not None:
                delay = min(retry_after, self.retry_after_max)
                self.crawler.stats.inc_value("retry/retry_after_honoured")
            else:
                delay = self._backoff(result)
            await self._wait(delay)
        return result

    async def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception
    ) -> Request | Response | None:
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            await self._wait(self._backoff(result))
        return result

    def _backoff(self, retry_request: Request) -> float:
        return backoff_delay(
            retry_request.meta.get("retry_times", 1), self.backoff_base, self.backoff_max
        )

    async def _wait(self, seconds: float) -> None:
        if seconds > 0:
            from twisted.internet import reactor

            await maybe_deferred_to_future(task.deferLater(reactor, seconds, lambda: None))


class ContactUserAgentMiddleware(UserAgentMiddleware):
    """``USER_AGENT`` with ``{contact}`` replaced by the ``CONTACT_URL`` setting."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ContactUserAgentMiddleware:
        user_agent = crawler.settings["USER_AGENT"].replace(
            "{contact}", crawler.settings["CONTACT_URL"]
        )
        middleware = cls(user_agent)
        crawler.signals.connect(middleware.spider_opened, signal=signals.spider_opened)
        return middleware


# Requests whose URL came from content (a feed entry's link, an article link on a list page,
# a sitemap entry) carry the host of the source the user configured in this meta key.
TRUSTED_HOST = "trusted_host"


def is_public_address(address: str) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (cloud metadata
    at 169.254.169.254), shared, reserved, multicast or unspecified."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class ContentAddressGuard:
    """Refuses requests that content points at internal addresses (SSRF).

    A request carrying ``meta["trusted_host"]`` (set by spiders on links taken from content)
    to another host is resolved first; if any address it resolves to is not public, it is
    dropped with one log line and counted in ``ssrf/refused``. Checked again after every
    redirect (a redirected request passes through here anew). The sources the user configured,
    and links on their own host, are theirs to choose. ``ALLOW_PRIVATE_ADDRESSES`` turns the
    check off (local mirrors, tests).
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ContentAddressGuard:
        if crawler.settings.getbool("ALLOW_PRIVATE_ADDRESSES"):
            raise NotConfigured("ALLOW_PRIVATE_ADDRESSES is on")
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        trusted = request.meta.get(TRUSTED_HOST)
        if trusted is None:
            return
        host = urlparse_cached(request).hostname or ""
        if host.lower() == str(trusted).lower():
            return
        addresses = await _resolve(host)
        refused = [address for address in addresses if not is_public_address(address)]
        if not addresses or refused:
            self.crawler.stats.inc_value("ssrf/refused")
            where = ", ".join(refused) if refused else "no address"
            logger.warning(
                "refused %s: content points at an internal address (%s)", request.url, where
            )
            raise IgnoreRequest(f"internal address: {request.url}")


async def _resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal is its own address)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host.strip("[]")]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})
