"""``python -m crawler sources``: list the sources; import and export OPML subscription lists.

- no option: one line per source (name, kind, enabled, URL), or ``--json``;
- ``--import-opml FILE``: the feeds of FILE as ``[[source]]`` tables, appended to the
  ``--sources`` file given (atomically), or printed as TOML when no ``--sources`` is given
  (the packaged crawler/sources.toml is never changed unless named);
- ``--export-opml FILE`` (``-``: stdout): every feed source as OPML 2.0, folders by topic.

Exit status: 0 done; 1 some feeds were refused (each named with its reason on the report) or
the file could not be written; 2 usage error (an unusable OPML or sources file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(commands: Any) -> None:
    sources = commands.add_parser(
        "sources", help="list the sources; import or export an OPML subscription list"
    )
    sources.add_argument(
        "--sources", metavar="FILE", help="the sources file (default: crawler/sources.toml)"
    )
    what = sources.add_mutually_exclusive_group()
    what.add_argument("--json", action="store_true", help="list the sources as one JSON array")
    what.add_argument(
        "--import-opml", metavar="FILE",
        help="add the feeds of an OPML file (to --sources FILE, else printed as TOML)",
    )  # fmt: skip
    what.add_argument(
        "--export-opml", metavar="FILE", help="write the feed sources as OPML 2.0 ('-': stdout)"
    )
    sources.add_argument(
        "--allow-private", action="store_true",
        help="import feeds on loopback, private or link-local addresses too",
    )  # fmt: skip
    sources.add_argument(
        "--rsshub-base", metavar="URL", help="where rsshub routes point (default: RSSHUB_BASE)"
    )


def run(args: argparse.Namespace) -> int:
    from crawler import settings as project_settings
    from crawler.cli.main import UsageFailure
    from crawler.sources import DEFAULT_SOURCES, SourcesError, is_http_url, load_sources

    rsshub_base = args.rsshub_base or project_settings.RSSHUB_BASE
    if not is_http_url(rsshub_base):
        raise UsageFailure(f"--rsshub-base {rsshub_base!r}: not an http(s) URL")
    if args.allow_private and not args.import_opml:
        raise UsageFailure("--allow-private goes with --import-opml")
    sources_file = Path(args.sources).expanduser() if args.sources else DEFAULT_SOURCES
    if args.import_opml:
        return _import(Path(args.import_opml).expanduser(), args, sources_file, rsshub_base)
    try:
        sources = load_sources(sources_file)
    except SourcesError as error:
        raise UsageFailure(str(error)) from None
    if args.export_opml:
        return _export(args.export_opml, sources, rsshub_base)
    rows = _rows(sources, rsshub_base)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        print(_table(rows))
    return EXIT_OK


def _rows(sources: list[Any], rsshub_base: str) -> list[dict[str, Any]]:
    """Name, kind (``feed`` for a url, else the table's kind), enabled and what it reads: the
    feed's URL (an rsshub route joined to its base), the sitemap or list page, a spider's
    site."""
    rows = []
    for source in sources:
        kind = "feed" if source.kind == "url" else source.kind
        if source.is_feed:
            url = source.feed_url(rsshub_base)
        elif source.kind == "spider":
            url = _spider_site(source.spider)
        else:
            url = getattr(source, source.kind)
        rows.append(
            {
                "name": source.name,
                "kind": kind,
                "url": url,
                "enabled": source.enabled,
                "categories": list(source.categories),
                "author": source.author,
            }
        )
    return rows


def _spider_site(spider: str) -> str | None:
    """The site a spider of this project reads (None for an unknown spider)."""
    import os

    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    from scrapy.spiderloader import get_spider_loader
    from scrapy.utils.project import get_project_settings

    try:
        spidercls = get_spider_loader(get_project_settings()).load(spider)
    except KeyError:
        return None
    return getattr(spidercls, "site_url", "") or None


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [("name", "kind", "enabled", "url")] + [
        (row["name"], row["kind"], "yes" if row["enabled"] else "no", row["url"] or "-")
        for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True))
        + "  "
        + line[3]
        for line in lines
    )


def _import(opml_file: Path, args: argparse.Namespace, sources_file: Path, base: str) -> int:
    from crawler.cli.main import UsageFailure
    from crawler.opml import OpmlError, read_opml
    from crawler.sources import SourcesError, load_sources
    from crawler.sources_opml import append_to_sources_file, plan_import, render_tables

    try:
        feeds = read_opml(opml_file)
    except OpmlError as error:
        raise UsageFailure(str(error)) from None
    except OSError as error:
        raise UsageFailure(f"{opml_file}: cannot read ({error.strerror})") from None
    appending = args.sources is not None
    if appending and sources_file.is_symlink():
        raise UsageFailure(
            f"--sources {sources_file}: a symlink; refusing to replace it (name the real file)"
        )
    try:
        # A new sources file, or an empty one (`touch`ed for the import), starts with none.
        fresh = appending and (not sources_file.exists() or sources_file.stat().st_size == 0)
        existing = [] if fresh else load_sources(sources_file)
    except SourcesError as error:
        raise UsageFailure(str(error)) from None
    plan = plan_import(feeds, existing, base, allow_private=args.allow_private)
    status = EXIT_FAILED if plan.refused else EXIT_OK
    # The TOML on stdout when printing it, so the summary goes to stderr then.
    report = sys.stdout if appending else sys.stderr
    if plan.tables and appending:
        try:
            append_to_sources_file(sources_file, plan.tables)
        except SourcesError as error:
            print(f"error: {error}; {sources_file} was not changed", file=sys.stderr)
            return EXIT_FAILED
        except OSError as error:
            print(f"error: {sources_file}: cannot write ({_shown(error)})", file=sys.stderr)
            return EXIT_FAILED
    elif plan.tables:
        print(render_tables(plan.tables), end="")
    names = ", ".join(table["name"] for table in plan.tables)
    where = f"to {sources_file}" if appending else "(printed above)"
    print(f"added {len(plan.tables)} of {len(feeds)} feeds {where}: {names or 'none'}", file=report)
    for skipped in plan.duplicates:
        print(f"skipped (duplicate): {_shown(skipped.describe())}", file=report)
    for skipped in plan.refused:
        print(f"refused: {_shown(skipped.describe())}", file=report)
    return status


def _export(target: str, sources: list[Any], rsshub_base: str) -> int:
    from crawler.opml import build_opml
    from crawler.sources_opml import export_outlines, write_atomically

    outlines = export_outlines(sources, rsshub_base)
    data = build_opml(outlines, title="technews-harvester sources")
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    path = Path(target).expanduser()
    try:
        write_atomically(path, data)
    except OSError as error:
        print(f"error: {path}: cannot write ({_shown(error)})", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {len(outlines)} feeds to {path}")
    return EXIT_OK


def _shown(value: object) -> str:
    """One line without control characters (an OPML file's text reaches the terminal)."""
    from crawler.post.cleaning import one_line

    text = str(value.strerror if isinstance(value, OSError) and value.strerror else value)
    return one_line("".join(char if char.isprintable() else " " for char in text))
