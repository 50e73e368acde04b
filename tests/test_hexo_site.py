"""A freshly crawled archive through the real Hexo: ``export --hexo`` into throwaway sites,
``hexo generate`` under ``TZ=UTC`` and ``TZ=Asia/Shanghai``, with and without ``timezone:``,
and every generated post page checked against its post file.

Hexo (the pins in tests/hexo/package.json) comes from tests/hexo/install.sh, the script
``.ci/run`` runs too: installed once into a cache folder, reused later. Without node or npm
these tests fail, saying so. The test theme (tests/hexo/theme) prints each page's title,
instant, categories and rendered body in a form read back here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import frontmatter
import lxml.html
import pytest
from pytest_httpserver import HTTPServer
from support import (
    FIXTURES,
    PROJECT_ROOT,
    TESTS,
    background_job,
    fixture_server,
    run_concurrently,
    run_harvest,
    serve_cnbeta,
    serve_feeds,
    source_table,
    write_sources,
)

HEXO = TESTS / "hexo"
SITE_OWN_POST = "_posts/hello-world.md"
SITE_OWN_TEXT = "---\ntitle: The site's own post\ndate: 2020-01-01 12:00:00\n---\n\nHello.\n"
EIGHT_HOURS = timedelta(hours=8)
IMAGE = "5e/5e6c0d.jpg"
IMAGE_BYTES = b"\xff\xd8\xff\xe0 an archived image"


@dataclass(frozen=True)
class Variant:
    tz: str  # the TZ hexo generate runs with
    timezone: str  # the site's _config.yml timezone: ('' is Hexo's default)
    permalink: str | None  # None: Hexo's default (:year/:month/:day/:title/)
    shift: timedelta  # what Hexo does to every post's instant
    offset: timedelta  # the zone Hexo shows dates in


VARIANTS = {
    # The settings README recommends, on a machine in UTC and one in China.
    "utc": Variant("UTC", "", ":title/", timedelta(0), timedelta(0)),
    "shanghai": Variant("Asia/Shanghai", "", ":title/", timedelta(0), EIGHT_HOURS),
    # timezone: names the zone of a date WITHOUT one, and Hexo applies it to ours (GMT)
    # too: every post moves by the difference to the machine's zone (hexo issue 4548)...
    "timezone-set": Variant("UTC", "Asia/Shanghai", None, -EIGHT_HOURS, timedelta(0)),
    # ... which is none when they are the same.
    "timezone-matches": Variant("Asia/Shanghai", "Asia/Shanghai", ":title/", timedelta(0),
                                EIGHT_HOURS),
}  # fmt: skip
HOSTILE = source_table(
    "hostile",
    url="{base}/feeds/hostile.xml",
    categories=["AI: 前沿", "#Hostile", "- 频道"],
    author="'Hostile' Author",
)
SOURCES = (
    source_table("cnbeta", spider="cnbeta", base_url="{base}",
                 categories=["新媒体", "cnBeta", "最新"], author="cnBeta"),
    source_table("ithome", url="{base}/feeds/ithome.xml",
                 categories=["科技", "IT之家", "最新"], author="IT之家"),
    source_table("atom", url="{base}/feeds/atom.xml", categories=["开发", "Atom", "博客"],
                 author="Atom"),
    HOSTILE,
)  # fmt: skip


@dataclass
class Page:
    meta: dict[str, Any]
    h1: str
    content: lxml.html.HtmlElement


@dataclass
class Site:
    folder: Path
    export: subprocess.CompletedProcess[str]
    generate: subprocess.CompletedProcess[str]
    pages: dict[str, Page]  # by source (_posts/…)


@dataclass
class Built:
    harvest: subprocess.CompletedProcess[str]
    archive: Path
    sites: dict[str, Site]


def install_hexo() -> Path:
    """The cache folder of the pinned Hexo (tests/hexo/install.sh installs it if needed)."""
    done = subprocess.run(
        ["bash", str(HEXO / "install.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"cannot install Hexo for the tests: {done.stderr.strip()}"
    return Path(done.stdout.strip().splitlines()[-1])


def serve_hostile(server: HTTPServer) -> None:
    server.expect_request("/feeds/hostile.xml").respond_with_data(
        (FIXTURES / "hexo" / "hostile-titles.xml").read_bytes(),
        content_type="application/rss+xml; charset=utf-8",
    )


def make_site(folder: Path, hexo: Path, variant: Variant) -> Path:
    """A minimal Hexo site: its config, the test theme, the pinned Hexo, one post of its own."""
    pins = json.loads((HEXO / "package.json").read_text(encoding="utf-8"))["dependencies"]
    package = {"name": "site", "private": True, "hexo": {"version": pins["hexo"]},
               "dependencies": pins}  # fmt: skip
    (folder / "themes").mkdir(parents=True)
    (folder / "themes" / "check").symlink_to(HEXO / "theme")
    (folder / "node_modules").symlink_to(hexo / "node_modules")
    (folder / "package.json").write_text(json.dumps(package), encoding="utf-8")
    config = ["title: check", "url: http://example.com", "theme: check",
              f"timezone: '{variant.timezone}'"]  # fmt: skip
    if variant.permalink is not None:
        config.append(f"permalink: {variant.permalink}")
    (folder / "_config.yml").write_text("\n".join(config) + "\n", encoding="utf-8")
    (folder / "source" / "_posts").mkdir(parents=True)
    (folder / "source" / SITE_OWN_POST).write_text(SITE_OWN_TEXT, encoding="utf-8")
    return folder


def export(archive: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "export", str(archive), "--hexo", str(site)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def generate(site: Path, tz: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is not installed (tests/hexo/install.sh needs nodejs and npm)"
    return subprocess.run(
        [node, "node_modules/hexo/bin/hexo", "generate"], cwd=site, capture_output=True,
        text=True, check=False, timeout=120, env={**os.environ, "TZ": tz},
    )  # fmt: skip


def read_pages(public: Path) -> dict[str, Page]:
    pages: dict[str, Page] = {}
    for path in sorted(public.rglob("index.html")):
        document = lxml.html.fromstring(path.read_bytes(), parser=UTF8)
        meta = json.loads(document.get_element_by_id("meta").text)
        pages[meta["source"]] = Page(
            meta, document.find(".//h1").text_content(), document.get_element_by_id("content")
        )
    return pages


UTF8 = lxml.html.HTMLParser(encoding="utf-8")


@background_job
def hexo_sites(home: Path) -> Built:
    """A harvest of the fixture sites and feeds (hostile titles among them), exported into
    one Hexo site per variant, each generated."""
    hexo = install_hexo()
    archive = home / "archive"
    with fixture_server(serve_cnbeta, serve_feeds, serve_hostile) as server:
        sources = write_sources(home / "sources.toml", server, *SOURCES)
        harvest = run_harvest("--sources", str(sources), "--output", str(archive))
    # As IMAGES_URL_PREFIX's image archiving leaves one (posts refer to /images/…).
    (archive / "images" / IMAGE).parent.mkdir(parents=True)
    (archive / "images" / IMAGE).write_bytes(IMAGE_BYTES)
    sites = {name: make_site(home / name, hexo, variant) for name, variant in VARIANTS.items()}
    exports = run_concurrently(
        {name: (lambda site=site: export(archive, site)) for name, site in sites.items()}
    )
    generated = run_concurrently(
        {
            name: (lambda site=site, tz=VARIANTS[name].tz: generate(site, tz))
            for name, site in sites.items()
        }
    )
    return Built(
        harvest,
        archive,
        {
            name: Site(site, exports[name], generated[name], read_pages(site / "public"))
            for name, site in sites.items()
        },
    )


def archive_posts(built: Built) -> dict[str, frontmatter.Post]:
    return {
        path.relative_to(built.archive).as_posix(): frontmatter.load(path)
        for path in sorted(built.archive.glob("*/*/*.md"))
    }


@pytest.fixture(params=list(VARIANTS))
def site(request: pytest.FixtureRequest, hexo_sites: Built) -> tuple[Variant, Site]:
    return VARIANTS[request.param], hexo_sites.sites[request.param]


def test_the_archive_is_fresh_and_hostile(hexo_sites: Built) -> None:
    assert hexo_sites.harvest.returncode == 0, hexo_sites.harvest.stderr
    titles = {post["title"] for post in archive_posts(hexo_sites).values()}
    assert len(titles) >= 15
    assert {"- a leading dash, [a bracket] and {{ x }}", "{% raw %} 模板 {# c #} ? yes: no",
            "\"引号\" 与 'apostrophes': 冒号 # 井号"} <= titles  # fmt: skip


def test_hexo_generates_a_page_for_every_post(
    site: tuple[Variant, Site], hexo_sites: Built
) -> None:
    variant, built = site
    assert built.export.returncode == 0, built.export.stderr
    new = len(archive_posts(hexo_sites)) + 1  # and the image
    assert built.export.stdout.startswith(f"hexo: {new} new, 0 updated, 0 unchanged, 0 removed")
    warned = "sets timezone: Asia/Shanghai: Hexo moves every post's GMT date"
    assert (warned in built.export.stderr) == bool(variant.timezone), built.export.stderr
    assert built.generate.returncode == 0, built.generate.stdout + built.generate.stderr
    assert "ERROR" not in built.generate.stdout + built.generate.stderr
    expected = {f"_posts/{relpath}" for relpath in archive_posts(hexo_sites)} | {SITE_OWN_POST}
    assert set(built.pages) == expected
    own = (built.folder / "source" / SITE_OWN_POST).read_text(encoding="utf-8")
    assert own == SITE_OWN_TEXT


def test_titles_instants_and_categories_are_exact(
    site: tuple[Variant, Site], hexo_sites: Built
) -> None:
    variant, built = site
    for relpath, post in archive_posts(hexo_sites).items():
        page = built.pages[f"_posts/{relpath}"]
        assert page.meta["title"] == post["title"] == page.h1, relpath
        published = parsedate_to_datetime(post["date"])
        shown = datetime.fromisoformat(page.meta["date"])
        assert shown == published + variant.shift, relpath
        assert shown.utcoffset() == variant.offset, relpath
        categories = post["categories"]
        assert len(categories) == 3
        assert page.meta["categories"] == [categories[:1], categories[:2], categories], relpath


def test_permalinks(site: tuple[Variant, Site], hexo_sites: Built) -> None:
    variant, built = site
    for relpath in archive_posts(hexo_sites):
        page = built.pages[f"_posts/{relpath}"]
        if variant.permalink == ":title/":  # README's: the archive's own path, whatever the TZ
            assert page.meta["path"] == relpath.removesuffix(".md") + "/"
        else:  # Hexo's default repeats the archive's folders after its own date ones
            day = datetime.fromisoformat(page.meta["date"])
            assert page.meta["path"] == f"{day:%Y/%m/%d}/{relpath.removesuffix('.md')}/"


def test_bodies_render_unchanged(site: tuple[Variant, Site], hexo_sites: Built) -> None:
    """The rendered body is the post's body: the same elements, attributes and text (white
    space included), nothing re-read as Markdown, no code block made, no template run. Hexo's
    external_link filter adds target="_blank" to links, and that is all it adds."""
    _variant, built = site
    for relpath in archive_posts(hexo_sites):
        text = (hexo_sites.archive / relpath).read_text(encoding="utf-8")
        body = text.split("\n---\n", 2)[2].removeprefix("\n")  # after the front matter
        written = lxml.html.fragment_fromstring(body, create_parent="article")
        rendered = built.pages[f"_posts/{relpath}"].content
        assert inside(rendered) == inside(written), relpath


def test_hostile_bodies_show_their_syntax_as_text(site: tuple[Variant, Site]) -> None:
    _variant, built = site
    text = " ".join(
        page.content.text_content() for page in built.pages.values() if "Hostile" in str(page.meta)
    )
    for literal in ("{{ page.title }}", "{% raw %}x{% endraw %}", "{# comment #}",
                    "**bold**", "[link](https://x.example/)", "`code`", "```js",
                    "{%- if a -%}b{%- endif -%}", "<script> shown as text & {{ not run }}",
                    "line one\n\nline three",
                    "    indented *not emphasis* _nor this_"):  # fmt: skip
        assert literal in text, literal
    images = [img.get("src") for page in built.pages.values() for img in page.content.iter("img")]
    assert "https://img.hostile.example/one.png" in images


def inside(element: lxml.html.HtmlElement) -> list[object]:
    """What an element holds: its text and its children's shapes."""
    return [element.text or "", [shape(child) for child in element]]


def shape(element: lxml.html.HtmlElement) -> list[object]:
    """An element as nested lists: tag, attributes, text, children, tail."""
    attributes = dict(element.attrib)
    if element.tag == "a" and attributes.get("target") == "_blank":
        del attributes["target"]
    return [
        element.tag,
        sorted(attributes.items()),
        element.text or "",
        [shape(child) for child in element],
        element.tail or "",
    ]


def test_archived_images_are_published_by_the_site(site: tuple[Variant, Site]) -> None:
    _variant, built = site
    assert (built.folder / "public" / "images" / IMAGE).read_bytes() == IMAGE_BYTES
