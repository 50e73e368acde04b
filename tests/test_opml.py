"""OPML import and export (`python -m crawler sources`): real reader exports, hostile files,
duplicates, the round trip, and the sources file written atomically."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
from lxml import etree
from pytest_httpserver import HTTPServer
from support import FIXTURES

from crawler.cli.main import main
from crawler.opml import MAX_FOLDER_DEPTH, MAX_OPML_BYTES, OpmlError, parse_opml, read_opml
from crawler.sources import DEFAULT_SOURCES, load_sources, parse_source
from crawler.sources_opml import is_internal_host, source_name

OPML = FIXTURES / "opml"
TABLE = '[[source]]\nname = "hn"\nurl = "https://news.ycombinator.com/rss"\n'
TABLE += 'categories = ["Tech", "Hacker News", "Front Page"]\nauthor = "Hacker News"\n'


def sources(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``python -m crawler sources ARGS`` in this process: status, stdout, stderr."""
    try:
        status = main(["sources", *args])
    except SystemExit as exit_:  # argparse
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def by_name(path: Path) -> dict[str, tuple[str | None, tuple[str, ...], str]]:
    return {s.name: (s.url, s.categories, s.author) for s in load_sources(path)}


# --- reader exports -------------------------------------------------------------------------


def test_feedly_export_folders_become_topics_and_a_duplicate_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "mine.toml"
    target.write_text(TABLE, encoding="utf-8")
    status, out, err = sources(
        capsys, "--sources", str(target), "--import-opml", str(OPML / "feedly.opml")
    )
    assert (status, err) == (0, "")
    got = by_name(target)
    assert got["the-verge"] == (
        "https://www.theverge.com/rss/index.xml", ("Tech", "The Verge", "All"), "The Verge",
    )  # fmt: skip
    assert got["ars-technica-all-content"][1] == ("Tech", "Ars Technica - All content", "All")
    # Titles in other scripts are named after the host.
    assert got["ithome"] == ("https://www.ithome.com/rss/", ("中文", "IT之家", "All"), "IT之家")
    assert got["sspai"][1] == ("中文", "少数派", "All")
    assert set(got) == {"hn", "the-verge", "ars-technica-all-content", "ithome", "sspai"}
    assert "added 4 of 6 feeds to" in out
    # Hacker News is in the file already; the Verge's second URL is the same canonically.
    assert "skipped (duplicate): Hacker News <https://news.ycombinator.com/rss>: already in " \
        "the sources file as 'hn'" in out  # fmt: skip
    assert "twice in the OPML (as 'the-verge')" in out
    assert target.read_text(encoding="utf-8").startswith(TABLE)  # appended, not rewritten


def test_inoreader_nested_folders_give_the_channel_and_top_level_feeds_a_default_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new.toml"
    target.touch()  # an empty file starts with no sources
    status, _out, _err = sources(
        capsys, "--sources", str(target), "--import-opml", str(OPML / "inoreader.xml")
    )
    assert status == 0
    got = by_name(target)
    assert got["lwn-net"][1] == ("Linux", "LWN.net", "All")
    assert got["phoronix"][1] == ("Linux", "Phoronix", "Kernel")
    assert got["krebs-on-security"][1] == ("Feeds", "Krebs on Security", "All")
    assert stat.S_IMODE(target.stat().st_mode) & 0o644 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_netnewswire_entities_and_accents(tmp_path: Path) -> None:
    feeds = read_opml(OPML / "netnewswire.opml")
    assert [(f.title, f.folders) for f in feeds] == [
        ("Daring Fireball", ()),
        ("Six Colors", ("Apple",)),
        ("Café & Code", ("Apple",)),
    ]
    assert feeds[0].html_url == "https://daringfireball.net/"
    assert source_name("Café & Code", "example.org") == "cafe-code"
    assert source_name("🔥 🔥", "feeds.hot.example.co") == "hot-example"
    assert source_name("", "127.0.0.1") == "127-0-0-1"


def test_miniflux_bad_and_internal_feeds_are_refused_with_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new.toml"
    args = ("--sources", str(target), "--import-opml", str(OPML / "miniflux.opml"))
    status, out, _err = sources(capsys, *args)
    assert status == 1  # something was refused: the exit status says so
    assert list(by_name(target)) == ["lobsters"]
    assert "added 1 of 5 feeds" in out  # the bookmark (type="link", no xmlUrl) is no feed
    assert "refused: Broken <ftp://example.org/feed.xml>: key 'url': not an http(s) URL" in out
    assert "refused: Metadata <http://169.254.169.254/latest/meta-data/>: an internal " \
        "address (--allow-private imports it)" in out  # fmt: skip
    assert "refused: Router <http://[::1]:8080/feed>: an internal address" in out
    assert "refused: Cut <http://[::1/feed>: key 'url': not an http(s) URL" in out
    # Let in on purpose; the rest are duplicates now.
    status, out, _err = sources(capsys, *args, "--allow-private")
    assert status == 1  # the two bad URLs still are
    assert set(by_name(target)) == {"lobsters", "metadata", "router"}
    assert "skipped (duplicate): Lobsters" in out


def test_internal_hosts() -> None:
    assert is_internal_host("localhost") and is_internal_host("a.localhost")
    assert is_internal_host("10.1.2.3") and is_internal_host("[fe80::1]")
    assert is_internal_host("::ffff:127.0.0.1") and is_internal_host("224.0.0.1")
    assert not is_internal_host("93.184.216.34") and not is_internal_host("example.org")


def test_without_sources_file_the_toml_is_printed_and_the_packaged_file_untouched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = DEFAULT_SOURCES.read_bytes()
    status, out, err = sources(capsys, "--import-opml", str(OPML / "inoreader.xml"))
    assert status == 0
    tables = tomllib.loads(out)["source"]
    for table in tables:
        parse_source(table)
    assert [t["name"] for t in tables] == ["lwn-net", "phoronix", "krebs-on-security"]
    assert err == "added 3 of 3 feeds (printed above): lwn-net, phoronix, krebs-on-security\n"
    # Against the packaged file: every feed of this export is there already.
    status, out, err = sources(capsys, "--import-opml", str(OPML / "feedly.opml"))
    assert (status, out) == (0, "")
    assert "added 0 of 6 feeds (printed above): none" in err
    assert err.count("already in the sources file") == 6  # the Verge, canonically, twice
    assert DEFAULT_SOURCES.read_bytes() == before


def test_toml_values_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opml = tmp_path / "q.opml"
    opml.write_bytes(
        b'<opml version="2.0"><head/><body><outline text="x" title="Say &quot;hi&quot; '
        b'\\o/&#10;# not a comment ]] [[source]]" '
        b'xmlUrl="https://example.org/rss?a=1&amp;b=&quot;2&quot;"/></body></opml>'
    )
    target = tmp_path / "s.toml"
    status, _out, _err = sources(capsys, "--sources", str(target), "--import-opml", str(opml))
    assert status == 0
    ((url, categories, author),) = by_name(target).values()
    assert author == 'Say "hi" \\o/ # not a comment ]] [[source]]'  # one line
    assert url == 'https://example.org/rss?a=1&b="2"'
    assert categories == ("Feeds", author, "All")


# --- hostile files --------------------------------------------------------------------------

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<opml version="2.0"><body><outline text="&lol4;" xmlUrl="https://example.org/rss"/></body></opml>
"""


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (LAUGHS, "has a DTD declaring entities or elements (refused)"),
        (
            b'<!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml><head><title>&x;'
            b'</title></head><body><outline text="a" xmlUrl="https://e.org/rss"/></body></opml>',
            "has a DTD declaring entities or elements (refused)",
        ),
        (  # in an attribute, libxml2 itself refuses the external entity
            b'<!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml><body>'
            b'<outline text="&x;" xmlUrl="https://example.org/rss"/></body></opml>',
            "not well-formed XML (Attribute references external entity 'x'",
        ),
        (
            b'<opml><body><outline text="&nbsp;" xmlUrl="https://e.org/"/></body></opml>',
            "not well-formed XML",
        ),
        (b"<rss><channel/></rss>", "not OPML (the root element is not <opml>)"),
        (b"<opml><head/></opml>", "not OPML (no <body>)"),
        (b"\xff\xfe<\x00o\x00", "not well-formed XML"),
        (
            b"<opml><body>"
            + b'<outline text="f">' * (MAX_FOLDER_DEPTH + 1)
            + b'<outline xmlUrl="https://e.org/"/>'
            + b"</outline>" * (MAX_FOLDER_DEPTH + 1)
            + b"</body></opml>",
            f"folders nested more than {MAX_FOLDER_DEPTH} deep",
        ),
        # Deeper than libxml2 parses without huge_tree: refused by the parser, no recursion.
        (b"<opml><body>" + b"<outline>" * 5000 + b"</outline>" * 5000, "not well-formed XML"),
    ],
    ids=[
        "billion-laughs",
        "xxe",
        "xxe-attribute",
        "undefined-entity",
        "rss",
        "no-body",
        "garbage",
        "deep",
        "deeper",
    ],
)
def test_hostile_opml_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(OpmlError) as refused:
        parse_opml(data, "x.opml")
    assert str(refused.value).startswith(f"x.opml: {problem}")
    assert "root:" not in str(refused.value)  # nothing of /etc/passwd


def test_an_external_dtd_is_not_fetched(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/evil.dtd").respond_with_data('<!ENTITY x "pwned">')
    data = (
        f'<!DOCTYPE opml SYSTEM "{httpserver.url_for("/evil.dtd")}"><opml><body>'
        '<outline text="ok" xmlUrl="https://example.org/rss"/></body></opml>'
    ).encode()
    (feed,) = parse_opml(data)
    assert feed.title == "ok"
    assert httpserver.log == []


def test_files_too_large_or_not_regular_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge.opml"
    with huge.open("wb") as handle:
        handle.truncate(MAX_OPML_BYTES + 1)
    fifo = tmp_path / "fifo.opml"
    os.mkfifo(fifo)
    for path, problem in (
        (huge, "larger than 4 MB"),
        (fifo, "not a regular file"),
        (tmp_path / "absent.opml", "cannot read (No such file or directory)"),
    ):
        status, out, err = sources(capsys, "--sources", str(tmp_path / "s.toml"),
                                   "--import-opml", str(path))  # fmt: skip
        assert (status, out, err) == (2, "", f"error: {path}: {problem}\n")
    assert not (tmp_path / "s.toml").exists()


# --- the sources file, written safely --------------------------------------------------------


def test_a_symlinked_sources_file_is_refused_and_its_target_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.toml"
    real.write_text(TABLE, encoding="utf-8")
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    status, _out, err = sources(
        capsys, "--sources", str(link), "--import-opml", str(OPML / "inoreader.xml")
    )
    assert status == 2 and "a symlink; refusing to replace it" in err
    assert real.read_text(encoding="utf-8") == TABLE and link.is_symlink()


def test_a_result_the_sources_checks_refuse_leaves_the_file_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "big.toml"
    target.write_text(TABLE + "#" * (1024 * 1024 - len(TABLE) - 10) + "\n", encoding="utf-8")
    target.chmod(0o600)
    before = target.read_bytes()
    status, out, err = sources(
        capsys, "--sources", str(target), "--import-opml", str(OPML / "inoreader.xml")
    )
    assert status == 1 and out == ""
    assert err == f"error: {target}: larger than 1024 KB; {target} was not changed\n"
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml"]  # no temporary left


def test_an_appended_file_keeps_its_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "s.toml"
    target.write_text(TABLE.rstrip("\n"), encoding="utf-8")  # no final newline
    target.chmod(0o640)
    assert sources(capsys, "--sources", str(target), "--import-opml",
                   str(OPML / "inoreader.xml"))[0] == 0  # fmt: skip
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert len(load_sources(target)) == 4


def test_a_bad_sources_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[source]]\nname = 1\n", encoding="utf-8")
    for args in (
        ("--sources", str(bad)),
        ("--sources", str(bad), "--import-opml", str(OPML / "feedly.opml")),
        ("--sources", str(bad), "--export-opml", "-"),
    ):
        status, out, err = sources(capsys, *args)
        assert (status, out) == (2, "") and err.startswith(f"error: {bad}: source #1: key ")


# --- export and the round trip ---------------------------------------------------------------


def test_export_is_opml_2_with_folders_by_topic_and_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "feeds.opml"
    status, out, _err = sources(capsys, "--export-opml", str(exported),
                                "--rsshub-base", "http://127.0.0.1:1200/")  # fmt: skip
    packaged = [s for s in load_sources(DEFAULT_SOURCES) if s.is_feed]
    assert (status, out) == (0, f"wrote {len(packaged)} feeds to {exported}\n")
    root = etree.parse(str(exported)).getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "technews-harvester sources"
    assert root.findtext("head/dateCreated").endswith(" GMT")
    topics = [folder.get("text") for folder in root.find("body")]
    assert topics == list(dict.fromkeys(s.categories[0] for s in packaged))
    assert root.find("body/outline/outline").get("type") == "rss"
    assert "http://127.0.0.1:1200/36kr/newsflashes" in exported.read_text(encoding="utf-8")
    # Imported into a new file: the same feeds, categories and authors.
    fresh = tmp_path / "fresh.toml"
    status, _out, _err = sources(capsys, "--sources", str(fresh), "--import-opml", str(exported),
                                 "--allow-private")  # fmt: skip
    assert status == 0
    again = load_sources(fresh)
    expected = [(s.feed_url("http://127.0.0.1:1200"), s.categories, s.author) for s in packaged]
    assert sorted((s.url, s.categories, s.author) for s in again) == sorted(expected)
    # Imported into the file it came from: every feed is a duplicate, nothing is written.
    copy = tmp_path / "copy.toml"
    copy.write_bytes(DEFAULT_SOURCES.read_bytes())
    status, out, _err = sources(
        capsys, "--sources", str(copy), "--import-opml", str(exported), "--allow-private",
        "--rsshub-base", "http://127.0.0.1:1200",
    )  # fmt: skip
    assert status == 0 and f"added 0 of {len(packaged)} feeds" in out
    assert copy.read_bytes() == DEFAULT_SOURCES.read_bytes()


def test_export_to_stdout_and_a_category_that_cannot_be_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "s.toml"
    mine.write_text(
        TABLE.replace('"Front Page"', '"AI/ML"') + '\n[[source]]\nname = "cn"\nspider = "cnbeta"'
        '\ncategories = ["a", "b", "c"]\nauthor = "x"\n',
        encoding="utf-8",
    )
    status, out, _err = sources(capsys, "--sources", str(mine), "--export-opml", "-")
    assert status == 0
    (feed,) = parse_opml(out.encode())  # spiders are not feeds
    assert (feed.url, feed.title, feed.folders, feed.category) == (
        "https://news.ycombinator.com/rss", "Hacker News", ("Tech",), None,
    )  # fmt: skip


def test_export_refuses_to_replace_a_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.opml"
    real.write_text("mine", encoding="utf-8")
    link = tmp_path / "link.opml"
    link.symlink_to(real)
    status, out, err = sources(capsys, "--export-opml", str(link))
    assert (status, out) == (1, "") and err.startswith(f"error: {link}: cannot write (")
    assert real.read_text(encoding="utf-8") == "mine"
    status, _out, err = sources(capsys, "--export-opml", str(tmp_path / "no" / "x.opml"))
    assert status == 1 and "No such file or directory" in err


# --- listing ---------------------------------------------------------------------------------


def test_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = sources(capsys)
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["name", "kind", "enabled", "url"]
    assert lines[1].split() == ["cnbeta", "spider", "yes", "https://www.cnbeta.com.tw"]
    assert ["36kr-newsflashes", "rsshub", "no", "https://rsshub.app/36kr/newsflashes"] in [
        line.split() for line in lines
    ]
    assert len(lines) == 1 + len(load_sources(DEFAULT_SOURCES))
    mine = tmp_path / "s.toml"
    mine.write_text(TABLE + '[[source]]\nname = "x"\nspider = "nosuch"\ncategories = ["a"]\n'
                    'author = "x"\nenabled = false\n', encoding="utf-8")  # fmt: skip
    status, out, _err = sources(capsys, "--sources", str(mine), "--json")
    assert status == 0
    assert json.loads(out) == [
        {"name": "hn", "kind": "feed", "url": "https://news.ycombinator.com/rss",
         "enabled": True, "categories": ["Tech", "Hacker News", "Front Page"],
         "author": "Hacker News"},
        {"name": "x", "kind": "spider", "url": None, "enabled": False, "categories": ["a"],
         "author": "x"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--allow-private",), "error: --allow-private goes with --import-opml\n"),
        (("--rsshub-base", "ftp://x"), "error: --rsshub-base 'ftp://x': not an http(s) URL\n"),
    ],
)
def test_usage_errors(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sources(capsys, *args) == (2, "", message)


def test_outline_quirks_names_apart_and_the_feed_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from crawler import opml
    from crawler.sources_opml import plan_import

    data = (
        b'<opml version="2.0"><body><foo/><outline text="News" xmlurl="https://a.example/rss"/>'
        b'<outline title="News" xmlUrl="https://b.example/rss"/>'
        b'<outline xmlUrl="https://www.c.example/feed"/></body></opml>'
    )
    feeds = parse_opml(data)
    assert [f.url for f in feeds] == [
        "https://a.example/rss", "https://b.example/rss", "https://www.c.example/feed",
    ]  # fmt: skip
    plan = plan_import(feeds, [], "https://rsshub.app")
    assert [(t["name"], t["author"]) for t in plan.tables] == [
        ("news", "News"), ("news-2", "News"), ("c", "c.example"),
    ]  # fmt: skip
    monkeypatch.setattr(opml, "MAX_FEEDS", 2)
    with pytest.raises(OpmlError, match="more than 2 feeds"):
        parse_opml(data)


def test_a_sources_file_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no" / "s.toml"
    status, out, err = sources(
        capsys, "--sources", str(target), "--import-opml", str(OPML / "inoreader.xml")
    )
    assert (status, out) == (1, "")
    assert err == f"error: {target}: cannot write (No such file or directory)\n"
