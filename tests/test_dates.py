"""Feed dates, including the ones feedparser misreads or cannot read."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from crawler.extract.dates import from_struct, parse_date

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2020/1/10 14:33:00", datetime(2020, 1, 10, 14, 33, tzinfo=SHANGHAI)),
        ("Wed, 26 Oct 2016 21:53:13", datetime(2016, 10, 26, 21, 53, 13, tzinfo=SHANGHAI)),
        ("Wed, 26 Oct 2016 21:53:13 +0000", datetime(2016, 10, 26, 21, 53, 13, tzinfo=UTC)),
        ("Sat, 17 Jul 2021 14:35:32 GMT", datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)),
        ("Sat, 17 Jul 2021 14:35:32 -0000", datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)),
        (
            "Thu, 15 Jul 2021 17:00:00 -0400",
            datetime(2021, 7, 15, 17, tzinfo=timezone(timedelta(hours=-4))),
        ),
        ("2021-07-17T14:35:32Z", datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)),
        ("2021-07-17T14:35:32.5+08:00", datetime(2021, 7, 17, 14, 35, 32, tzinfo=SHANGHAI)),
        ("2021-07-17 22:35", datetime(2021, 7, 17, 22, 35, tzinfo=SHANGHAI)),
        ("2021年07月17日 22:35", datetime(2021, 7, 17, 22, 35, tzinfo=SHANGHAI)),
        ("2021-07-17", datetime(2021, 7, 17, tzinfo=SHANGHAI)),
    ],
)
def test_dates_read_right_with_zone_less_ones_in_the_source_zone(
    raw: str, expected: datetime
) -> None:
    parsed = parse_date(raw, SHANGHAI)
    assert parsed is not None
    assert parsed == expected
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize("raw", ["", "   ", "yesterday", "2021-13-45", "0001-01-01", None])
def test_non_dates_give_none(raw: str | None) -> None:
    assert parse_date(raw, SHANGHAI) is None


def test_feedparser_struct_is_utc() -> None:
    struct = time.strptime("2021-07-17 14:35:32", "%Y-%m-%d %H:%M:%S")
    assert from_struct(struct) == datetime(2021, 7, 17, 14, 35, 32, tzinfo=UTC)
    assert from_struct(None) is None
