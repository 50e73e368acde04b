"""The sources file: the shipped one is valid, every kind of mistake is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.sources import DEFAULT_SOURCES, SourcesError, load_sources

GOOD = """
[[source]]
name = "local"
url = "http://127.0.0.1:8080/feed.xml"
categories = ["科技", "本地", "最新"]
author = "本地"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_sources_are_valid_and_curated() -> None:
    sources = {source.name: source for source in load_sources(DEFAULT_SOURCES)}
    wanted = {
        "cnbeta",
        "oschina",
        "ithome",
        "solidot",
        "36kr",
        "sspai",
        "infoq-cn",
        "hacker-news",
        "ars-technica",
        "the-verge",
        "techcrunch",
        "lobsters",
    }
    assert wanted <= set(sources)
    assert sources["cnbeta"].spider == "cnbeta"
    assert sources["oschina"].categories == ("开源", "开源中国", "资讯")
    for source in sources.values():
        assert len(source.categories) == 3
        if source.url:
            assert source.url.startswith("https://")


def test_a_loopback_http_url_is_valid(tmp_path: Path) -> None:
    (source,) = load_sources(write(tmp_path, GOOD))
    assert source.url == "http://127.0.0.1:8080/feed.xml"
    assert source.enabled and not source.full_text and source.timezone == "UTC"


def test_a_spider_source_carries_its_mirror_and_arguments(tmp_path: Path) -> None:
    text = GOOD.replace('url = "http://127.0.0.1:8080/feed.xml"', 'spider = "cnbeta"')
    text += 'base_url = "http://127.0.0.1:8080/mirror/"\nargs = { pages = 1, nosuch = "x" }\n'
    (source,) = load_sources(write(tmp_path, text))
    assert source.kind == "spider" and source.spider_name == "cnbeta" and not source.is_feed
    assert source.base_url == "http://127.0.0.1:8080/mirror"
    # handed to the spider as they are: the spider (and the harvest, before any request)
    # checks them against its arguments
    assert source.args == {"pages": 1, "nosuch": "x"}


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda t: t + 'colour = "blue"\n', ("'local'", "'colour'", "unknown key")),
        (lambda t: t.replace('author = "本地"\n', ""), ("'local'", "'author'", "missing")),
        (lambda t: t.replace('name = "local"\n', ""), ("source #1", "'name'", "missing")),
        (
            lambda t: t.replace('categories = ["科技", "本地", "最新"]\n', ""),
            ("'local'", "'categories'", "missing"),
        ),
        (lambda t: t + 'rsshub = "/x/y"\n', ("'local'", "exactly one of")),
        (
            lambda t: t.replace("http://127.0.0.1:8080/feed.xml", "ftp://example.com/feed"),
            ("'local'", "'url'", "not an http(s) URL"),
        ),
        (
            lambda t: t.replace("http://127.0.0.1:8080/feed.xml", "example.com/feed"),
            ("'local'", "'url'"),
        ),
        (lambda t: t + 'timezone = "Mars/Olympus"\n', ("'local'", "'timezone'", "Mars/Olympus")),
        (lambda t: t + "enabled = 1\n", ("'local'", "'enabled'")),
        (lambda t: t.replace('["科技", "本地", "最新"]', "[]"), ("'local'", "'categories'")),
        (lambda t: t + t, ("'local'", "'name'", "used twice")),
        (lambda t: t + "[[source\n", ("not valid TOML",)),
        (lambda t: t + 'fallback_image = "nope"\n', ("'local'", "'fallback_image'")),
        (
            lambda t: t + 'base_url = "ftp://mirror"\n',
            ("'local'", "'base_url'", "not an http(s) URL"),
        ),
        (
            lambda t: t + "args = { pages = 1 }\n",
            ("'local'", "'args'", "not used by a 'url' source"),
        ),
        (
            lambda t: t.replace('url = "http://127.0.0.1:8080/feed.xml"', 'spider = "feeds"'),
            ("'local'", "'spider'", "'feeds' reads url/rsshub/sitemap/list tables"),
        ),
        (
            lambda t: (
                t.replace('url = "http://127.0.0.1:8080/feed.xml"', 'spider = "x"') + "args = 3\n"
            ),
            ("'local'", "'args'", "must be a table of arguments"),
        ),
    ],
)
def test_each_mistake_names_file_source_and_key(tmp_path: Path, change, names) -> None:
    path = write(tmp_path, change(GOOD))
    with pytest.raises(SourcesError) as caught:
        load_sources(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    for name in names:
        assert name in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="cannot read"):
        load_sources(tmp_path / "nope.toml")
