"""Sitemaps, sitemap indexes and Google News sitemaps: the URLs they list, with their dates.

Scrapy's own ``Sitemap`` class flattens each ``<url>`` to its direct children, which loses
``<news:news>``'s title and publication date; this reads them too. The XML parser resolves no
entities and loads nothing from the network (no XXE, no billion laughs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from lxml import etree

from crawler.extract.dates import parse_date

_PARSER = etree.XMLParser(
    recover=True, resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False
)


@dataclass(frozen=True)
class SitemapEntry:
    """One ``<url>`` or ``<sitemap>``: its address and what the sitemap says of it."""

    loc: str
    lastmod: datetime | None = None
    news_title: str | None = None  # text, from <news:title>
    news_date: datetime | None = None  # from <news:publication_date>

    @property
    def date(self) -> datetime | None:
        """The best date of the entry: its publication, else its last modification."""
        return self.news_date or self.lastmod


@dataclass(frozen=True)
class Sitemap:
    kind: str  # 'urlset', 'sitemapindex', or the root tag of something else
    entries: list[SitemapEntry]


def parse_sitemap(body: bytes, zone: tzinfo) -> Sitemap:
    """The entries of a sitemap or sitemap index; ``kind`` tells which it was."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        root = None
    if root is None or not isinstance(root.tag, str):
        return Sitemap("not xml", [])
    kind = etree.QName(root).localname
    entries = []
    for element in root:
        if not isinstance(element.tag, str) or etree.QName(element).localname not in (
            "url",
            "sitemap",
        ):
            continue
        fields = _fields(element)
        loc = fields.get("loc", "").strip()
        if loc:
            entries.append(
                SitemapEntry(
                    loc=loc,
                    lastmod=parse_date(fields.get("lastmod"), zone),
                    news_title=fields.get("title") or None,
                    news_date=parse_date(fields.get("publication_date"), zone),
                )
            )
    return Sitemap(kind, entries)


def _fields(element: etree._Element) -> dict[str, str]:
    """Local name -> text of the element's children and of its <news:news> children."""
    fields: dict[str, str] = {}
    for child in element.iter():
        if child is element or not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        if name not in fields and child.text and child.text.strip():
            fields[name] = child.text.strip()
    return fields


def is_recent(entry: SitemapEntry, now: datetime, max_age_days: float) -> bool:
    """Whether an entry is within ``max_age_days`` of ``now`` (0: every entry is).

    An entry without any date is not: a sitemap lists a site's whole history, so fetching
    undated URLs would fetch all of it.
    """
    if not max_age_days:
        return True
    date = entry.date
    return date is not None and date >= now - timedelta(days=max_age_days)
