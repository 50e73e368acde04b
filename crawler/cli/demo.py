"""``python -m crawler demo``: a first run that works offline.

Serves the bundled demo site (crawler/demo/site) on 127.0.0.1, runs a real harvest of the
demo sources (crawler/demo/sources.toml) into a fresh folder, and prints the report, three
of the posts and how to view them with Hexo. Every request goes to the demo server
(crawler/demo/guard.py refuses any other); politeness delays are off.

The folder (default ``demo-output``) must be new, empty or an earlier demo's (it holds the
``.demo`` marker): a second run writes nothing new and shows the duplicates. Any other folder
is refused (exit status 2): the demo never mixes its stories into a real archive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.sources import Source

DEFAULT_OUTPUT = "demo-output"
MARKER = ".demo"  # in the output folder: written by the demo, so a rerun may use it
PLACEHOLDER = "http://demo.invalid"  # the sources' base_url origin, replaced by the server's
GUARD = "crawler.demo.guard.DemoServerOnly"
CONTENT_GUARD = "crawler.middlewares.ContentAddressGuard"
EXAMPLES = 3


def add_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="harvest a bundled demo site served on 127.0.0.1 (works offline)"
    )
    demo.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help=f"the demo archive: new, empty or an earlier demo's (default: ./{DEFAULT_OUTPUT})",
    )
    demo.add_argument("--log-file", help="write the full log (INFO) to this file")
    demo.add_argument(
        "--json", action="store_true", help="print the report as one JSON line on stdout"
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    from scrapy.utils.project import get_project_settings

    from crawler.archive.files import write_atomically
    from crawler.archive.lock import ArchiveLock
    from crawler.archive.state import check_state
    from crawler.cli import harvest as harvesting
    from crawler.cli.report import append_run
    from crawler.demo.server import DemoServer

    output = _output_folder(args.output)
    log_file = _log_file(args.log_file)
    settings = get_project_settings()
    sources = demo_sources()
    with DemoServer() as server:
        for name, value in demo_settings(server.origin, output, log_file, args).items():
            settings.set(name, value, priority="cmdline")
        sources = [_mirrored(source, server.origin) for source in sources]
        with ArchiveLock(output):
            check_state(output)  # a corrupt state: one clear line before anything is fetched
            write_atomically(output / MARKER, b"written by python -m crawler demo\n")
            report = harvesting.run(settings, harvesting.plan(sources), output)
            append_run(output, report)
        served = server.requests()
    examples = example_posts(output, [source.name for source in report.sources])
    if args.json:
        demo = {
            "server": server.origin,
            "requests": len(served),
            "examples": [str(output / path) for path in examples],
        }
        line = json.dumps({**report.as_dict(), "demo": demo}, ensure_ascii=False,
                          separators=(",", ":"))  # fmt: skip
        print(line, flush=True)
    else:
        text = report.as_text()
        totals = report.totals()
        if not totals["new"] and totals["seen"] and not report.exit_status:
            text += (
                f"\nnothing new: {shown(output)} holds every story already (site sources do "
                "not even fetch an archived article again)"
            )
        refused = any("off the demo server" in (s.reason or "") for s in report.sources)
        print(
            summary(text, output, examples, len(served), server.origin, refused=refused),
            flush=True,
        )
    return report.exit_status


def demo_sources() -> list[Source]:
    """The bundled demo sources, as in the file (their ``base_url`` on the placeholder)."""
    from importlib import resources

    from crawler.sources import load_sources

    with resources.as_file(resources.files("crawler.demo") / "sources.toml") as path:
        return load_sources(path)


def _mirrored(source: Source, origin: str) -> Source:
    """The source fetched from the demo server: its placeholder origin replaced."""
    base_url = source.base_url or ""
    if not base_url.startswith(PLACEHOLDER + "/"):
        raise AssertionError(f"demo source {source.name!r}: base_url not on {PLACEHOLDER}")
    return replace(source, base_url=origin + base_url.removeprefix(PLACEHOLDER))


def demo_settings(
    origin: str, output: Path, log_file: Path | None, args: argparse.Namespace
) -> dict[str, Any]:
    """The project's settings changed for the demo: fast, local, every request guarded."""
    from scrapy.utils.project import get_project_settings

    middlewares = get_project_settings().getdict("DOWNLOADER_MIDDLEWARES")
    return {
        "OUTPUT_DIR": str(output),
        "DEMO_SERVER": origin,
        # First of all middlewares: a request off the server is refused before robots.txt
        # of its host is asked for, and before anything could resolve its name.
        # ContentAddressGuard would refuse the links to 127.0.0.1 the content holds; the
        # demo's guard is stricter (one origin), so it is left out rather than disabled
        # with a warning line per crawl.
        "DOWNLOADER_MIDDLEWARES": {**middlewares, GUARD: 10, CONTENT_GUARD: None},
        "ALLOW_PRIVATE_ADDRESSES": True,
        "RSSHUB_BASE": origin,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "RETRY_BACKOFF_BASE": 0,
        "LOG_LEVEL": "INFO" if log_file else "WARNING",
        **({"LOG_FILE": str(log_file)} if log_file else {}),
        "PROGRESS_DISPLAY": sys.stderr.isatty() and not (args.json or log_file),
    }


def _output_folder(given: str) -> Path:
    from crawler.cli.main import UsageFailure

    output = Path(given).expanduser().resolve()
    if output.exists() and not output.is_dir():
        raise UsageFailure(f"--output {output}: not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / MARKER).is_file():
        raise UsageFailure(
            f"--output {output}: not empty and not an earlier demo's archive "
            "(the demo never writes into another folder); name a new one"
        )
    return output


def _log_file(given: str | None) -> Path | None:
    from crawler.cli.main import UsageFailure

    if not given:
        return None
    log_file = Path(given).expanduser().resolve()
    if not log_file.parent.is_dir() or log_file.is_dir():
        raise UsageFailure(f"--log-file {log_file}: its folder does not exist")
    # Logs name URLs, paths and errors: owner-only, created before Scrapy appends to it.
    os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    return log_file


def example_posts(output: Path, source_names: list[str]) -> list[str]:
    """Up to three posts of the archive (paths relative to it), of as many sources as can be,
    in the report's order of sources."""
    from crawler.archive.index import read_index

    entries = sorted(
        (entry for path, entry in read_index(output).items() if (output / path).is_file()),
        key=_published,
        reverse=True,
    )
    chosen: list[str] = []
    for name in source_names:  # the newest post of each source
        mine = [entry["path"] for entry in entries if entry.get("source") == name]
        if mine and len(chosen) < EXAMPLES:
            chosen.append(mine[0])
    others = [entry["path"] for entry in entries if entry["path"] not in chosen]
    return (chosen + others)[:EXAMPLES]


def _published(entry: dict[str, Any]) -> str:
    """An index entry's date as a sortable string (an unreadable one sorts first)."""
    try:
        return parsedate_to_datetime(str(entry.get("date"))).isoformat()
    except (TypeError, ValueError):
        return ""


def shown(path: Path) -> str:
    """A path as the user may type it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summary(
    report: str,
    output: Path,
    examples: list[str],
    requests: int,
    origin: str,
    *,
    refused: bool = False,
) -> str:
    from crawler.cli.main import program_name

    program = program_name()
    folder = shown(output)
    served = (
        f"{requests} requests answered by the demo site on {origin}; requests elsewhere "
        "were refused (FAILED above)"
        if refused
        else f"{requests} requests, all answered by the demo site on {origin}."
    )
    lines = [report, "", served]
    if examples:
        lines += ["", "Three of the posts:" if len(examples) == EXAMPLES else "Posts:"]
        lines += [f"  {shown(output / path)}" for path in examples]
    lines += [
        "",
        "View them with Hexo (Node.js and npm needed):",
        f"  npx hexo init site && {program} export --hexo site {folder} "
        "&& cd site && npx hexo server",
        "  then open http://localhost:4000",
        f"Run the demo again: nothing is written twice ({program} demo --output {folder}).",
    ]
    return "\n".join(lines)
