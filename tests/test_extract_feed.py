"""Feed entries to article fields, directly on fixture bytes (no crawl)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from support import FEEDS

from crawler.extract.feed import FeedEntry, feed_entries, is_feed, parse_feed
from crawler.post.cleaning import clean_body

FETCHED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def entries(name: str, url: str) -> list[FeedEntry | None]:
    headers = {"content-type": "application/rss+xml"}
    parsed = parse_feed((FEEDS / name).read_bytes(), headers, url)
    assert is_feed(parsed)
    return list(feed_entries(parsed, url, ZoneInfo("Asia/Shanghai"), FETCHED))


def test_media_images_rank_and_dates_convert() -> None:
    deck, flight = entries("verge-media.xml", "https://www.theverge.com/rss/index.xml")
    assert deck is not None and flight is not None
    assert deck.title == "Valve announces the Steam Deck"
    assert deck.published == datetime(2021, 7, 15, 21, 0, tzinfo=UTC)
    assert deck.date_from == "entry"
    assert deck.image == "https://cdn.vox-cdn.com/thumbor/steam-deck-thumb.jpg"
    assert deck.has_own_url and deck.link == "https://www.theverge.com/2021/7/15/steam-deck"
    # A video media:content is no lead image; the image one is.
    assert flight.image == "https://cdn.vox-cdn.com/uploads/flight-sim.jpg"


def test_shared_links_and_home_page_links_are_not_own_urls() -> None:
    found = [e for e in entries("shared-links.xml", "https://www.solidot.org/index.rss") if e]
    assert [entry.has_own_url for entry in found].count(True) < len(found)
    for entry in found:
        if entry.has_own_url:
            assert entry.link and entry.link.rstrip("/") != "https://www.solidot.org"


def test_odd_dates_missing_titles_and_future_dates() -> None:
    found = entries("ithome-rss2.xml", "https://www.ithome.com/rss/")
    assert found[3] is None  # the entry without a title: dropped by the spider, counted
    by_title = {entry.title: entry for entry in found if entry is not None}
    shanghai = ZoneInfo("Asia/Shanghai")
    # A zone-less RFC 822 date is in the source's zone; 2020/1/10 is 10 January, not 1 Nov.
    ios = by_title["苹果 iOS 15 公测版 Beta 3 推送"]
    assert ios.published == datetime(2016, 10, 26, 21, 53, 13, tzinfo=shanghai)
    mix = by_title["小米 MIX 4 官宣：8 月发布"]
    assert mix.published == datetime(2020, 1, 10, 14, 33, tzinfo=shanghai)
    # No date of its own: the feed's (lastBuildDate); one from the future: the fetch time.
    undated = by_title["没有日期的快讯"]
    assert (undated.published, undated.date_from) == (datetime(2021, 7, 17, 15, tzinfo=UTC), "feed")
    assert (by_title["来自未来的文章"].published, by_title["来自未来的文章"].date_from) == (
        FETCHED,
        "future",
    )


def test_not_a_feed() -> None:
    parsed = parse_feed(
        (FEEDS / "not-a-feed.html").read_bytes(), {"content-type": "text/html"}, "https://x/"
    )
    assert not is_feed(parsed)


def test_untyped_media_content_is_an_image_and_the_largest_wins() -> None:
    """The Guardian's items carry media:content with url and width, no type or medium."""
    chips, podcast = entries("guardian-media.xml", "https://www.theguardian.com/uk/technology/rss")
    assert chips is not None and podcast is not None
    assert chips.image is not None and "width=460" in chips.image
    # An .mp3 is no image; an enclosure without a type counts by its file extension.
    assert podcast.image == "https://i.guim.co.uk/cover.jpg"


def test_relative_links_resolve_against_xml_base_then_link_then_the_feeds_link() -> None:
    """A linkless entry's links resolve against the site the feed names, not the feed URL."""
    feed_url = "https://feeds.example.org/relative.xml"
    note, story, based = entries("relative-urls.xml", feed_url)
    assert note is not None and story is not None and based is not None
    assert note.link is None and note.body_base == "https://news.example.org/blog/"
    assert story.body_base == "https://news.example.org/blog/2021/07/story.html"
    assert based.body_base == "https://cdn.example.net/assets/"
    bodies = [clean_body(e.body, e.body_base).html for e in (note, story, based)]
    assert 'href="https://news.example.org/blog/notes/1"' in bodies[0]
    assert 'src="https://news.example.org/blog/img/large.png"' in bodies[0]  # largest srcset
    assert 'src="https://news.example.org/blog/media/pic.jpg"' in bodies[1]
    assert 'cite="https://news.example.org/quotes/9"' in bodies[1]
    assert 'src="https://cdn.example.net/assets/x.png"' in bodies[2]
    assert 'href="https://cdn.example.net/assets/more.html"' in bodies[2]


def test_media_group_sizes_with_units_pick_the_widest() -> None:
    feed = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>t</title>
<link>https://site.example/</link><item><title>Group</title>
<link>https://site.example/a</link><pubDate>Sat, 17 Jul 2021 14:35:32 GMT</pubDate>
<media:group><media:content url="/s.jpg" width="140px" medium="image"/>
<media:content url="/l.jpg" width="1200px" medium="image"/>
<media:content url="/m.jpg" width="460" medium="image"/></media:group>
<description>&lt;img src="/body.jpg"&gt;</description></item></channel></rss>"""
    parsed = parse_feed(feed, {}, "https://site.example/feed")
    (entry,) = feed_entries(parsed, "https://site.example/feed", UTC, FETCHED)
    assert isinstance(entry, FeedEntry) and entry.image == "https://site.example/l.jpg"


def test_cp1252_pass_is_guarded_and_still_maps_c1_controls() -> None:
    import feedparser.mixin

    from crawler.extract.feedparser_speedup import guard_cp1252_pass

    parse_feed(b"<rss version='2.0'><channel></channel></rss>", {}, "https://e.com/f")
    assert guard_cp1252_pass()  # installed by parse_feed; idempotent
    assert feedparser.mixin._FeedParserMixin.pop.cp1252_guarded
    # Bytes 0x93/0x94/0x96 in a latin-1 feed are C1 controls: still mapped as cp1252 does.
    latin1 = (
        b"<?xml version='1.0' encoding='iso-8859-1'?><rss version='2.0'><channel>"
        b"<title>t</title><item><title>\x93a\x94 \x96 caf\xe9</title></item></channel></rss>"
    )
    assert parse_feed(latin1, {}, "https://e.com/f").entries[0].title == "“a” – café"
    # Text without them (CJK, here) comes out as it went in.
    cjk = "<rss version='2.0'><channel><item><title>苹果发布新芯片 €</title></item></channel></rss>"
    assert parse_feed(cjk.encode(), {}, "https://e.com/f").entries[0].title == "苹果发布新芯片 €"


def test_cached_uri_joins_parse_as_feedparser_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import feedparser.mixin
    import feedparser.urls

    assert feedparser.mixin.make_safe_absolute_uri.uri_joins_cached
    atom = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://site.example/blog/">
<title>t</title><link href="/"/>
<entry xml:base="posts/"><title>a</title><link href="one.html"/><id>tag:a</id>
<content type="html">&lt;a href="x"&gt;x&lt;/a&gt;</content></entry>
<entry xml:base="javascript:alert(1)//"><title>b</title><link href="two.html"/><id>b</id></entry>
<entry xml:base="../other/"><title>c</title><link href="{"p" * 5000}.html"/><id>c</id></entry>
<entry><title>d</title><link href="//cdn.example/d?q=1#f"/><id>d</id></entry>
</feed>""".encode()
    cached = parse_feed(atom, {}, "https://site.example/feed")
    monkeypatch.setattr(
        feedparser.mixin, "make_safe_absolute_uri", feedparser.urls.make_safe_absolute_uri
    )
    monkeypatch.setattr(feedparser.mixin, "_urljoin", feedparser.urls._urljoin)
    stock = parse_feed(atom, {}, "https://site.example/feed")
    assert [e.link for e in cached.entries] == [e.link for e in stock.entries]
    assert cached.entries == stock.entries and cached.feed == stock.feed
    assert cached.entries[0].link == "https://site.example/blog/posts/one.html"
    assert (
        cached.entries[1].link == "https://site.example/blog/two.html"
    )  # javascript: base refused


def test_content_parameters_are_copied_as_a_deep_copy_would() -> None:
    import copy

    import feedparser.mixin
    from feedparser.util import FeedParserDict

    from crawler.extract.feedparser_speedup import _copy_params

    assert "_copy_params" in feedparser.mixin._FeedParserMixin.pop.__code__.co_names
    atom = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://site.example/" xml:lang="zh">
<title>t</title><entry><title>a</title><id>1</id><summary type="html">&lt;p&gt;s&lt;/p&gt;</summary>
<content type="html">&lt;p&gt;one&lt;/p&gt;</content><content type="text">two</content></entry>
</feed>"""
    (entry,) = parse_feed(atom, {}, "https://site.example/feed").entries
    one, two = entry.content
    assert isinstance(one, FeedParserDict) and one is not two
    assert (one.value, one.type, one.language, one.base) == (
        "<p>one</p>", "text/html", "zh", "https://site.example/",
    )  # fmt: skip
    assert (two.value, two.type) == ("two", "text/plain")
    assert entry.summary_detail.value == "<p>s</p>"
    # Anything but strings is left to copy.deepcopy: a copy that shares nothing.
    params = FeedParserDict(type="text/html", nested=["x"])
    copied = _copy_params(params)
    assert copied == copy.deepcopy(params) and copied["nested"] is not params["nested"]
    plain = FeedParserDict(type="text/html", language=None, base="https://b.example/")
    assert _copy_params(plain) == plain and _copy_params(plain) is not plain
