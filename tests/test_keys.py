"""Story identity: title + UTC day, canonical URL."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from crawler.post.keys import key_digest, story_keys, title_key, url_key

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_title_key_uses_nfkc_collapsed_white_space_and_the_utc_day() -> None:
    late_evening_shanghai = datetime(2021, 7, 18, 7, 0, tzinfo=SHANGHAI)  # 17 Jul 23:00 UTC
    assert title_key("ＡＢＣ  news ", late_evening_shanghai) == "2021-07-17 ABC news"
    assert title_key("ABC news", datetime(2021, 7, 17, 23, 59, tzinfo=UTC)) == title_key(
        "ＡＢＣ news", late_evening_shanghai
    )
    assert title_key("ABC news", datetime(2021, 7, 18, 0, 0, tzinfo=UTC)) != title_key(
        "ABC news", late_evening_shanghai
    )


@pytest.mark.parametrize(
    ("url", "key"),
    [
        (
            "HTTPS://WWW.CNBETA.COM.TW/articles/tech/1.htm",
            "https://www.cnbeta.com.tw/articles/tech/1.htm",
        ),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://127.0.0.1:8080/a", "http://127.0.0.1:8080/a"),
        (
            "https://example.com/a?utm_source=rss&id=3&UTM_Medium=x&fbclid=1&gclid=2&spm=a.b",
            "https://example.com/a?id=3",
        ),
        # The fragment is dropped, unless it is a hash route naming a page of its own.
        ("https://example.com/a?b=1&a=2#section", "https://example.com/a?b=1&a=2"),
        ("https://example.com/#!/news/1", "https://example.com/#!/news/1"),
        # One URL however it is written: IDN or punycode host, raw or encoded, %7E or ~.
        ("https://例子.测试/新闻", "https://xn--fsqu00a.xn--0zwm56d/%E6%96%B0%E9%97%BB"),
        (
            "https://xn--fsqu00a.xn--0zwm56d/%e6%96%b0%e9%97%bb",
            "https://xn--fsqu00a.xn--0zwm56d/%E6%96%B0%E9%97%BB",
        ),
        ("https://example.com/%7Euser/a%2fb?q=%7e", "https://example.com/~user/a%2Fb?q=~"),
        ("https://example.com/app#/news/1", "https://example.com/app#/news/1"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/A/Path", "https://example.com/A/Path"),
        ("ftp://example.com/a", None),
        ("not a url", None),
        ("https://[::1", None),
    ],
)
def test_url_key(url: str, key: str | None) -> None:
    assert url_key(url) == key


def test_items_without_their_own_url_get_no_url_key() -> None:
    moment = datetime(2021, 7, 17, tzinfo=UTC)
    assert story_keys("t", moment, "https://example.com/", False)[1] is None
    assert story_keys("t", moment, None, True)[1] is None
    assert story_keys("t", moment, "https://example.com/a", True)[1] == "https://example.com/a"


def test_key_digest_is_eight_stable_hex_digits() -> None:
    digest = key_digest("2021-07-17 title")
    assert digest == key_digest("2021-07-17 title")
    assert len(digest) == 8 and int(digest, 16) >= 0
    assert digest != key_digest("2021-07-18 title")
