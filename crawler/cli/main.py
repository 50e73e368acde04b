"""``python -m crawler`` (also installed as ``technews``): harvest, reindex, status, export,
images, sources, demo and merge.

Exit status: 0 every source was reached; 1 at least one source failed; 2 usage or
configuration error (one ``error: …`` line on stderr); 75 the archive is locked by another
run; 130 / 143 the harvest was stopped by SIGINT / SIGTERM (its report says what it did).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from crawler.archive.lock import EXIT_LOCKED, ArchiveLock, ArchiveLocked
from crawler.archive.shared import check_shared
from crawler.archive.state import CorruptState, check_state
from crawler.post.cleaning import one_line
from crawler.sources import DEFAULT_SOURCES, Source, SourcesError, load_sources, select_sources

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = 128  # + the signal's number: 130 SIGINT, 143 SIGTERM (as a shell reports it)


# Subcommands that live in a module of their own: each has ``add_parser(commands)`` (cheap
# to import: heavy imports stay inside ``run``) and ``run(args) -> int`` (an exit status).
MODULE_COMMANDS = {
    "export": "crawler.cli.export",
    "images": "crawler.cli.images",
    "sources": "crawler.cli.sources_command",
    "demo": "crawler.cli.demo",
    "merge": "crawler.cli.merge",
}


class UsageFailure(Exception):
    """A usage or configuration error: one line, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "harvest":
            return harvest(args)
        if args.command == "status":
            from crawler.cli.status import status_command

            return status_command(args)
        if args.command in MODULE_COMMANDS:
            return importlib.import_module(MODULE_COMMANDS[args.command]).run(args)  # type: ignore[no-any-return]
        return reindex_command(args)
    except UsageFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiveLocked as locked:
        print(f"error: {locked}", file=sys.stderr)
        return EXIT_LOCKED
    except (CorruptState, OSError) as error:  # the archive cannot be used: a failed run
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # Ctrl-C before a harvest handles signals itself (or reindex)
        print("interrupted (SIGINT)", file=sys.stderr)
        return EXIT_SIGNAL + signal.SIGINT


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error: …`` line on stderr and exit status 2, for every
    subcommand (argparse prints its usage banner first); ``--help`` is unchanged."""

    def error(self, message: str, prog: str | None = None) -> NoReturn:
        message = " ".join(message.split())
        self.exit(EXIT_USAGE, f"error: {message} (see {prog or self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:  # found by the subcommand's parser: its help is the one to read
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else None
            self.error(f"unrecognized arguments: {' '.join(unknown)}", prog)
        return parsed


def program_name() -> str:
    """How the user called us: ``technews`` (the installed command) or ``python -m crawler``
    (also when ``main()`` is called from other code: a test runner's name is not ours)."""
    called = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return called if called == "technews" else "python -m crawler"


def version() -> str:
    try:
        return metadata.version("technews-harvester")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=program_name(), description="Archive tech news as Hexo-style posts."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    harvest = commands.add_parser("harvest", help="run every enabled source once")
    harvest.add_argument("--output", help="the archive folder (default: ./output)")
    harvest.add_argument(
        "--sources", help="the sources file, replacing crawler/sources.toml entirely"
    )
    harvest.add_argument("--only", help="comma-separated source names to run")
    harvest.add_argument(
        "-s", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="a Scrapy setting (repeatable)",
    )  # fmt: skip
    harvest.add_argument("--log-file", help="write the log to this file instead of stderr")
    harvest.add_argument(
        "--quiet", action="store_true", help="print nothing on success (warnings still logged)"
    )
    harvest.add_argument(
        "--json", action="store_true", help="print the report as one JSON line on stdout"
    )
    harvest.add_argument(
        "--dry-run", action="store_true",
        help="fetch, parse and dedup, report what would be written; change nothing in the archive",
    )  # fmt: skip
    reindex = commands.add_parser("reindex", help="rebuild .state.sqlite3 and .index.jsonl")
    reindex.add_argument("directory", nargs="?", default="output", help="the archive folder")
    status = commands.add_parser("status", help="each source's health (read-only)")
    status.add_argument("directory", nargs="?", default="output", help="the archive folder")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument(
        "--fail-after", default="3", metavar="N",
        help="exit status 1 when a source's last N runs all failed (default 3)",
    )  # fmt: skip
    for module in MODULE_COMMANDS.values():
        importlib.import_module(module).add_parser(commands)
    return parser


def harvest(args: argparse.Namespace) -> int:
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    from scrapy.utils.project import get_project_settings

    from crawler.checks import SettingError, check_settings
    from crawler.cli import harvest as harvesting
    from crawler.cli.progress import terminal_log
    from crawler.cli.report import append_run

    settings = get_project_settings()
    for assignment in args.settings:
        name, sep, value = assignment.partition("=")
        if not sep or not name.strip():
            raise UsageFailure(f"-s {assignment!r}: expected NAME=VALUE")
        settings.set(name.strip(), value, priority="cmdline")
    output = Path(args.output or settings["OUTPUT_DIR"]).expanduser().resolve()
    if output.exists() and not output.is_dir():
        raise UsageFailure(f"--output {output}: not a folder")
    if output.is_dir() and not os.access(output, os.W_OK | os.X_OK) and not args.dry_run:
        raise UsageFailure(f"--output {output}: not writable")
    settings.set("OUTPUT_DIR", str(output), priority="cmdline")
    if args.log_file:
        log_file = Path(args.log_file).expanduser().resolve()
        if not log_file.parent.is_dir() or log_file.is_dir():
            raise UsageFailure(f"--log-file {log_file}: its folder does not exist")
        # Logs name URLs, paths and errors: owner-only, created before Scrapy appends to it.
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        settings.set("LOG_FILE", str(log_file), "cmdline")
    if args.quiet:
        settings.set("LOG_LEVEL", "WARNING", priority="cmdline")
    settings.set("PROGRESS_DISPLAY", _wants_progress(args), priority="cmdline")
    try:
        check_settings(settings)
    except SettingError as error:
        raise UsageFailure(str(error)) from None
    dry_run = args.dry_run or settings.getbool("DRY_RUN")  # --dry-run or -s DRY_RUN=True
    if dry_run:  # items that would be written pass every pipeline: counted `new`
        from crawler.archive.service import without_write_pipeline

        settings.set("DRY_RUN", True, priority="cmdline")
        settings.set("ITEM_PIPELINES", without_write_pipeline(settings), priority="cmdline")

    sources_file = Path(args.sources).expanduser().resolve() if args.sources else DEFAULT_SOURCES
    sources = _select(sources_file, args.only, settings)
    with ArchiveLock(output, read_only=dry_run):
        check_state(output)  # a corrupt state: one clear line before anything is fetched
        check_shared(settings)  # so is a shared backend that does not answer
        with terminal_log(settings):  # on a terminal: only warnings and errors beside the bar
            report = harvesting.run(settings, harvesting.plan(sources), output)
        if not dry_run:
            append_run(output, report)
    if args.json:
        line = report.as_json_line()
        if dry_run:
            line = json.dumps({**report.as_dict(), "dry_run": True}, ensure_ascii=False,
                              separators=(",", ":"))  # fmt: skip
        print(line, flush=True)
    elif not args.quiet or report.exit_status:
        dry = f"dry run: {output} was not changed; new = what a real run would write\n"
        print((dry if dry_run else "") + report.as_text(), flush=True)
    return report.exit_status


def _select(sources_file: Path, only: str | None, settings: object) -> list[Source]:
    """The sources to run, each checked against its spider before anything is fetched."""
    from scrapy.spiderloader import get_spider_loader

    from crawler.spiders.base import ArgumentError

    try:
        wanted = [name.strip() for name in only.split(",") if name.strip()] if only else None
        sources = select_sources(load_sources(sources_file), wanted, f"--only ({sources_file})")
    except SourcesError as error:
        raise UsageFailure(str(error)) from None
    loader = get_spider_loader(settings)  # type: ignore[arg-type]
    for source in sources:
        if source.is_feed:
            continue
        try:
            spidercls = loader.load(source.spider_name)
        except KeyError:
            raise UsageFailure(
                f"{sources_file}: source {source.name!r}: key 'spider': no spider named "
                f"{source.spider_name!r} (known: {', '.join(sorted(loader.list()))})"
            ) from None
        try:
            spidercls.check_arguments(source=source)
        except ArgumentError as error:
            raise UsageFailure(f"{sources_file}: source {source.name!r}: {error}") from None
    return sources


def _wants_progress(args: argparse.Namespace) -> bool:
    """A live progress display only for a person at a terminal (with --log-file too: the
    log goes to the file, the bar to the terminal)."""
    return sys.stderr.isatty() and not (args.quiet or args.json)


def reindex_command(args: argparse.Namespace) -> int:
    """Rebuild the state and index of an archive; a corrupt state is moved aside first.

    A refused symlink or another error of the archive is one ``error: …`` line and exit
    status 1 (a locked archive: 75, as for harvest).
    """
    from crawler.archive.reindex import reindex
    from crawler.archive.state import CorruptState

    directory = Path(args.directory).expanduser().resolve()
    if not directory.is_dir():
        raise UsageFailure(f"{directory} is not a directory")
    try:
        with ArchiveLock(directory):
            result = reindex(directory)
    except (OSError, CorruptState) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if result.moved_aside is not None:
        print(f"the corrupt state was moved aside to {result.moved_aside}")
    print(
        f"reindexed {result.posts} posts in {directory} "
        f"({result.url_keys} with a URL key, {result.unreadable} unreadable)"
    )
    return EXIT_OK
