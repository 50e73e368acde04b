"""Publication dates as feeds write them, read into aware datetimes.

feedparser reads most dates, but misreads some (``2020/1/10 14:33:00`` becomes 1 November)
and gives nothing for a date without a zone (``Wed, 26 Oct 2016 21:53:13``). These are read
here first; zone-less times are taken in the source's time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime

_NUMERIC = re.compile(
    r"""^\s*
    (?P<year>\d{4})\s*[-/.年]\s*(?P<month>\d{1,2})\s*[-/.月]\s*(?P<day>\d{1,2})\s*日?
    (?:[\sT]+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?)?
    \s*(?P<zone>Z|UTC|GMT|[+-]\d{2}:?\d{2})?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PLAUSIBLE_YEARS = range(1990, 2200)


def parse_date(raw: str | None, zone: tzinfo) -> datetime | None:
    """An aware datetime for ``raw``, or None when it is not a date this module knows."""
    if not raw or not raw.strip():
        return None
    raw = raw.strip()
    moment = _numeric(raw) or _rfc822(raw) or _iso8601(raw)
    if moment is None or moment.year not in _PLAUSIBLE_YEARS:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def from_struct(value: object) -> datetime | None:
    """feedparser's ``*_parsed`` (a UTC ``time.struct_time``) as an aware datetime."""
    if value is None:
        return None
    try:
        moment = datetime(*value[:6], tzinfo=UTC)  # type: ignore[index]
    except (TypeError, ValueError):
        return None
    return moment if moment.year in _PLAUSIBLE_YEARS else None


def _numeric(raw: str) -> datetime | None:
    match = _NUMERIC.match(raw)
    if not match:
        return None
    parts = {k: int(v) for k, v in match.groupdict().items() if v and k != "zone"}
    try:
        moment = datetime(
            parts["year"], parts["month"], parts["day"],
            parts.get("hour", 0), parts.get("minute", 0), parts.get("second", 0),
        )  # fmt: skip
    except ValueError:
        return None
    zone = (match.group("zone") or "").upper()
    if zone in ("Z", "UTC", "GMT"):
        return moment.replace(tzinfo=UTC)
    if zone:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return moment.replace(tzinfo=timezone(sign * offset))
    return moment


def _rfc822(raw: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None and raw.endswith("-0000"):
        return moment.replace(tzinfo=UTC)  # RFC 5322: UTC, local zone unknown
    return moment


def _iso8601(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None
