"""Drift: a source whose site changed its markup goes quiet without an error; notice it.

Spiders count, per source and run, the pages or entries they parsed (``parsed``) and how many
gave a title, a date and a non-empty body (``extracted``); what was missing is counted by
field (``missing/<field>``) with one example URL (``example/<field>``). A spider that sees
the layout itself is wrong (cnBeta's home page without its list) says so at once
(``layout/<field>``). Plain functions over a crawl's stats; the DriftMonitor extension
(crawler/extensions.py) applies them when a crawl ends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FIELDS = ("title", "date", "body", "list")


@dataclass(frozen=True)
class Drift:
    """Why a source is flagged: the failing field, an example URL, the extraction rate of
    this run and the consecutive empty runs (each None when it is not the reason)."""

    field: str
    example: str | None = None
    rate: float | None = None
    empty_runs: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.empty_runs is not None:
            why = f"nothing new or known for {self.empty_runs} runs"
        elif self.rate is not None:
            why = f"{self.field} found on {self.rate:.0%} of pages"
        else:
            why = f"unexpected {self.field}"
        return f"{why}" + (f", e.g. {self.example}" if self.example else "")


def count_page(stats: Any, source: str, url: str | None, missing: list[str]) -> None:
    """Count one parsed page or entry of ``source`` and what it lacked (title/date/body)."""
    stats.inc_value(f"source/{source}/parsed")
    if not missing:
        stats.inc_value(f"source/{source}/extracted")
    for field in missing:
        stats.inc_value(f"source/{source}/missing/{field}")
        if url and not stats.get_value(f"source/{source}/example/{field}"):
            stats.set_value(f"source/{source}/example/{field}", url)


def count_invalid(stats: Any, source: str, field: str, url: str | None) -> None:
    """A normalized post of ``source`` failed the post schema at ``field``."""
    stats.inc_value(f"source/{source}/invalid")
    stats.inc_value(f"source/{source}/missing/{field}")
    if url and not stats.get_value(f"source/{source}/example/{field}"):
        stats.set_value(f"source/{source}/example/{field}", url)


def layout_changed(stats: Any, source: str, field: str, url: str | None) -> None:
    """The spider saw at once that the site's layout is not what it knows."""
    stats.inc_value(f"source/{source}/layout/{field}")
    if url and not stats.get_value(f"source/{source}/example/{field}"):
        stats.set_value(f"source/{source}/example/{field}", url)


def is_empty_run(stats: dict[str, Any], source: str) -> bool:
    """Reached, but listed nothing, or gave neither a new nor a known article.

    A feed that answered 304 Not Modified is not empty (it said nothing changed), and an
    article a site spider did not fetch because the archive holds it is a known one.
    """

    def value(name: str) -> int:
        return int(stats.get(f"source/{source}/{name}", 0))

    if value("not_modified"):
        return False
    known = value("duplicate") + value("article_skipped_archived")
    return value("seen") == 0 or (value("new") == 0 and known == 0)


def drift_of(
    stats: dict[str, Any],
    source: str,
    min_rate: float,
    min_pages: int,
    empty_runs: int,
    max_empty_runs: int,
) -> Drift | None:
    """The drift flag of one source after a run, or None when it looks healthy."""
    prefix = f"source/{source}/"
    for field in FIELDS:
        if stats.get(f"{prefix}layout/{field}"):
            return Drift(field, stats.get(f"{prefix}example/{field}"))
    parsed = int(stats.get(f"{prefix}parsed", 0))
    # Pages that gave everything, less the posts that then failed the post schema.
    good = int(stats.get(f"{prefix}extracted", 0)) - int(stats.get(f"{prefix}invalid", 0))
    if parsed >= min_pages and good / parsed < min_rate:
        missing = [key.rsplit("/", 1)[1] for key in stats if key.startswith(f"{prefix}missing/")]
        worst = max(missing, key=lambda f: int(stats[f"{prefix}missing/{f}"]), default="body")
        return Drift(worst, stats.get(f"{prefix}example/{worst}"), round(good / parsed, 3))
    if max_empty_runs and empty_runs >= max_empty_runs:
        return Drift("list", None, None, empty_runs)
    return None
