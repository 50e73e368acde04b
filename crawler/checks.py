"""Settings checked before anything is fetched: a value a run cannot work with is a
configuration mistake (one line, exit status 2), never a traceback in the middle of a run."""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from crawler.archive.shared import is_redis_url
from crawler.sources import is_http_url


class SettingError(ValueError):
    """A setting's value cannot work; the message names the setting."""


def _number(minimum: float, maximum: float = math.inf) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return math.isfinite(number) and minimum <= number <= maximum

    return check


def _whole(minimum: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            return int(str(value)) >= minimum
        except ValueError:
            return False

    return check


def _log_level(value: Any) -> bool:
    return isinstance(logging.getLevelName(str(value).upper()), int)


def _images_prefix(value: Any) -> bool:
    """A prefix that keeps a post's HTML and YAML intact (see crawler/post/images.py)."""
    text = str(value)
    if not text.endswith("/") or _UNSAFE_IN_PREFIX.search(text):
        return False
    if text.startswith("/"):
        return not text.startswith("//")  # "//host/": another site, not a path
    return is_http_url(text)


_UNSAFE_IN_PREFIX = re.compile(r"[\s\"'<>&{}\\`?#\x00-\x1f\x7f]")


def _boolean(value: Any) -> bool:
    return value in (True, False, 0, 1) or str(value).lower() in ("true", "false", "0", "1")


def _redis_url(value: Any) -> bool:
    return is_redis_url(str(value))


def _dedup_backend(value: Any) -> bool:
    return str(value) == "sqlite" or is_redis_url(str(value))


# setting -> (test, what it must be)
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "MAX_AGE_DAYS": (_number(0), "a number of days >= 0"),
    "SITEMAP_MAX_AGE_DAYS": (_number(0), "a number of days >= 0"),
    "FAILED_ARTICLE_RETRY_AFTER": (_number(0), "a number of seconds >= 0"),
    "DRIFT_MIN_EXTRACTION": (_number(0, 1), "a share between 0 and 1"),
    "DRIFT_MIN_PAGES": (_whole(1), "a whole number >= 1"),
    "DRIFT_EMPTY_RUNS": (_whole(0), "a whole number >= 0"),
    "DOWNLOAD_TIMEOUT": (_number(0.001, 86400), "a number of seconds > 0"),
    "DOWNLOAD_DELAY": (_number(0, 86400), "a number of seconds >= 0"),
    "RETRY_TIMES": (_whole(0), "a whole number >= 0"),
    "RETRY_BACKOFF_BASE": (_number(0, 86400), "a number of seconds >= 0"),
    "RETRY_BACKOFF_MAX": (_number(0, 86400), "a number of seconds >= 0"),
    "RETRY_AFTER_MAX": (_number(0, 86400), "a number of seconds >= 0"),
    "CONCURRENT_REQUESTS_PER_DOMAIN": (_whole(1), "a whole number >= 1"),
    "MAX_TITLE_LENGTH": (_whole(20), "a whole number >= 20"),
    "MAX_ENTRIES_PER_FEED": (_whole(0), "a whole number >= 0 (0: no cap)"),
    "DOWNLOAD_MAXSIZE": (_whole(1024), "a whole number of bytes >= 1024"),
    "DEDUP_BACKEND": (_dedup_backend, '"sqlite" or a Redis URL (redis://host:6379/0)'),
    "DEDUP_CLAIM_TTL": (_number(1, 30 * 86400), "a number of seconds >= 1"),
    "REDIS_URL": (_redis_url, "a Redis URL (redis://host:6379/0)"),
    "LOG_LEVEL": (_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    "RSSHUB_BASE": (is_http_url, "an http(s) URL"),
    "ARCHIVE_IMAGES": (_boolean, "True or False"),
    "IMAGES_MAX_SIZE": (_whole(1024), "a whole number of bytes >= 1024"),
    "IMAGES_MAX_PER_POST": (_whole(0), "a whole number >= 0 (0: no cap)"),
    "IMAGES_URL_PREFIX": (
        _images_prefix,
        'a path from the site\'s root or an http(s) URL, ending in "/", without quotes, '
        "braces, ampersands, angle brackets, ? or # or white space",
    ),
}


def check_settings(settings: Any) -> None:
    """Raise :class:`SettingError` for the first setting a run cannot work with."""
    for name, (test, expected) in CHECKS.items():
        value = settings.get(name)
        if value is not None and not test(value):
            raise SettingError(f"-s {name}={str(value)[:80]!r}: must be {expected}")
    if settings.get("REDIS_URL") and importlib.util.find_spec("scrapy_redis") is None:
        raise SettingError("-s REDIS_URL: needs scrapy-redis (pip install -e '.[redis]')")
    reactor = settings.get("TWISTED_REACTOR")
    if reactor and reactor != "twisted.internet.asyncioreactor.AsyncioSelectorReactor":
        raise SettingError(
            f"-s TWISTED_REACTOR={str(reactor)[:80]!r}: the harvester runs on "
            "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
        )
