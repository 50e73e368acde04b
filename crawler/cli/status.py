"""``python -m crawler status [DIR]``: each source's health, from the archive's own records.

Read-only: it reads ``DIR/.runs.jsonl`` (one harvest report a line, crawler/cli/report.py)
and ``DIR/.index.jsonl`` (one post a line, crawler/archive/index.py), writes nothing into
the archive and takes no lock, so it may run while a harvest does.

Per source (every source named in a run): its last run (the ``finished`` time of the last
run, in file order, that included it) and that run's status, its last success (the last run
where it was neither FAILED nor DRIFT), its last new post (the newest ``date`` among its
posts in the index), how many of its latest runs in a row were FAILED, the drift its last
run reported, and its new posts per UTC day over the last 7 days (the runs' ``new`` counts,
by the day the run finished).

A source entry's status is its ``status`` (``"ok"``, ``"FAILED"`` or ``"DRIFT"``); an older
entry without one is ``"FAILED"`` when ``failed`` is true, else ``"ok"``; ``failed: true``
is always ``"FAILED"``. Damaged lines (not JSON, not an object, a run without a usable
``finished`` or ``sources``, a source entry with a missing or odd-typed field) are skipped
with one warning line each on stderr.

``--json`` prints one JSON object::

    {
      "archive": "/srv/news",                   # DIR, absolute
      "checked": "2026-11-27T12:00:00+00:00",   # now, UTC
      "days": ["2026-11-21", …, "2026-11-27"],  # the 7 UTC days of new_per_day, oldest first
      "runs": 42,                               # runs read (0: no harvest recorded yet)
      "warnings": 0,                            # warning lines (damaged lines skipped, …)
      "fail_after": 3,
      "failing": ["missing"],                   # sources whose last fail_after runs FAILED
      "exit_status": 1,
      "sources": [                              # by name
        {"name": "cnbeta",
         "last_run": "2026-11-27T11:30:42+00:00",
         "status": "ok",                        # "ok", "FAILED" or "DRIFT", of the last run
         "reason": null,                        # the last run's one-line reason, or null
         "interrupted": false,                  # the last run was interrupted
         "last_success": "2026-11-27T11:30:42+00:00",  # or null
         "last_post": "2021-07-17T14:35:32+00:00",     # the newest post's date, or null
         "last_post_title": "…",                       # its title, or null
         "consecutive_failures": 0,
         "failing": false,                      # consecutive_failures >= fail_after
         "drift": null,                         # when status is "DRIFT": {"field": "title",
                                                #   "example": URL, "rate": 0.8,
                                                #   "empty_runs": 3} (any of them null)
         "new_per_day": [3, 0, 5, 1, 0, 0, 2]}
      ]
    }

Exit status: 0; 1 when a source's last ``--fail-after`` runs all FAILED (named in one line
on stderr); 2 for a usage error (one ``error: …`` line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from crawler.archive.index import INDEX_FILE
from crawler.cli.main import EXIT_FAILED, EXIT_OK, UsageFailure
from crawler.cli.report import RUNS_FILE

# "interrupted": the run was stopped (SIGINT/SIGTERM) before the source was done; it says
# nothing about the site, so it neither breaks nor extends a failure streak.
STATUSES = ("ok", "FAILED", "DRIFT", "interrupted")
DAYS = 7
MAX_LINE_BYTES = 1 << 20  # a longer line is damage, not a report
MAX_WARNINGS = 20  # per command; then one line counts the rest

Warn = Callable[[str], None]


class Damaged(ValueError):
    """A line or entry that does not have the documented shape."""


@dataclass(frozen=True)
class Drift:
    field: str | None
    example: str | None
    rate: float | None
    empty_runs: int | None


NO_DRIFT = Drift(field=None, example=None, rate=None, empty_runs=None)


@dataclass(frozen=True)
class SourceRun:
    """One source's entry in one run."""

    name: str
    status: str
    new: int
    reason: str | None
    drift: Drift | None


@dataclass(frozen=True)
class Run:
    finished: datetime  # UTC
    interrupted: bool
    sources: tuple[SourceRun, ...]


@dataclass(frozen=True)
class Post:
    date: datetime  # UTC
    title: str | None


@dataclass
class SourceHealth:
    name: str
    last_run: datetime
    status: str
    reason: str | None
    interrupted: bool
    drift: Drift | None
    last_success: datetime | None = None
    consecutive_failures: int = 0
    new_per_day: list[int] = field(default_factory=lambda: [0] * DAYS)
    last_post: Post | None = None


# --- reading --------------------------------------------------------------------------------


def numbered_lines(path: Path, warn: Warn) -> Iterator[tuple[int, bytes]]:
    """The file's non-blank lines with their numbers; over-long lines skipped with a warning."""
    with path.open("rb") as handle:
        number = 0
        while line := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                warn(f"{_clean(str(path))} line {number}: over {MAX_LINE_BYTES} bytes, skipped")
            elif line.strip():
                yield number, line


def json_objects(path: Path, warn: Warn) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's lines that are JSON objects; any other line skipped with a warning."""
    for number, line in numbered_lines(path, warn):
        try:
            data = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            warn(f"{_clean(str(path))} line {number}: not JSON (truncated?), skipped")
            continue
        if isinstance(data, dict):
            yield number, data
        else:
            warn(f"{_clean(str(path))} line {number}: not a JSON object, skipped")


def read_runs(path: Path, warn: Warn) -> Iterator[Run]:
    """The runs of ``.runs.jsonl`` in file order; damaged lines and entries skipped."""
    for number, data in json_objects(path, warn):
        where = f"{_clean(str(path))} line {number}"
        try:
            yield parse_run(data, lambda message, where=where: warn(f"{where}: {message}"))
        except Damaged as error:
            warn(f"{where}: {error}, skipped")


def parse_run(data: dict[str, Any], warn: Warn) -> Run:
    """One report line; a damaged source entry is skipped (``warn``), a damaged run raises."""
    finished = _utc_time(data.get("finished"), "finished")
    entries = data.get("sources")
    if not isinstance(entries, list):
        raise Damaged("'sources' is not a list")
    interrupted = data.get("interrupted", False)
    if not isinstance(interrupted, bool):
        raise Damaged("'interrupted' is not true or false")
    sources: list[SourceRun] = []
    for position, entry in enumerate(entries, 1):
        try:
            source = parse_source(entry)
        except Damaged as error:
            warn(f"source entry {position}: {error}, skipped")
            continue
        if any(seen.name == source.name for seen in sources):
            warn(f"source entry {position}: {_clean(source.name)!r} listed twice, skipped")
            continue
        sources.append(source)
    return Run(finished=finished, interrupted=interrupted, sources=tuple(sources))


def parse_source(entry: object) -> SourceRun:
    """One source entry of a run, old (no ``status``) or new."""
    if not isinstance(entry, dict):
        raise Damaged("not a JSON object")
    name = _typed(entry, "name", str)
    if not name:
        raise Damaged("'name' is empty")
    _typed(entry, "kind", str)
    for key in ("seen", "duplicate", "dropped"):
        _count(entry, key)
    new = _count(entry, "new")
    failed = _typed(entry, "failed", bool)
    _number(entry.get("seconds"), "seconds")
    status = entry.get("status")
    if status is not None and status not in STATUSES:
        raise Damaged(f"'status' is not one of {', '.join(STATUSES)}")
    reason = entry.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise Damaged("'reason' is not a string or null")
    if failed or status is None:
        status = "FAILED" if failed else "ok"
    drift = parse_drift(entry.get("drift"))
    return SourceRun(name=name, status=status, new=new, reason=reason, drift=drift)


def parse_drift(drift: object) -> Drift | None:
    if drift is None:
        return None
    if not isinstance(drift, dict):
        raise Damaged("'drift' is not an object or null")
    found = {key: drift.get(key) for key in ("field", "example", "rate", "empty_runs")}
    for key in ("field", "example"):
        if found[key] is not None and not isinstance(found[key], str):
            raise Damaged(f"'drift.{key}' is not a string or null")
    rate = None if found["rate"] is None else _number(found["rate"], "drift.rate")
    empty_runs = found["empty_runs"]
    if empty_runs is not None and not _is_count(empty_runs):
        raise Damaged("'drift.empty_runs' is not a whole number or null")
    return Drift(field=found["field"], example=found["example"], rate=rate, empty_runs=empty_runs)


def latest_posts(path: Path, warn: Warn) -> dict[str, Post]:
    """The newest post of each source in ``.index.jsonl`` (by ``date``); damaged lines and
    lines without a usable date skipped with a warning."""
    newest: dict[str, Post] = {}
    for number, entry in json_objects(path, warn):
        source, title = entry.get("source"), entry.get("title")
        if not isinstance(source, str):
            continue  # posts of no source (an ad-hoc crawl) have none to report on
        try:
            published = _rfc1123(entry.get("date"))
        except Damaged as error:
            warn(f"{_clean(str(path))} line {number}: {error}, skipped")
            continue
        if source not in newest or published > newest[source].date:
            newest[source] = Post(published, title if isinstance(title, str) else None)
    return newest


def _typed(entry: dict[str, Any], key: str, kind: type) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise Damaged(f"{key!r} is missing or not a {kind.__name__}")
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(entry: dict[str, Any], key: str) -> int:
    value = entry.get(key)
    if not _is_count(value):
        raise Damaged(f"{key!r} is missing or not a whole number")
    return value  # type: ignore[return-value]


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Damaged(f"{key!r} is missing or not a number")
    return float(value)


def _utc_time(value: object, key: str) -> datetime:
    """An ISO 8601 time with a UTC offset, in UTC."""
    try:
        moment = datetime.fromisoformat(value)  # type: ignore[arg-type]
        if moment.tzinfo is None:
            raise ValueError
        return moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        raise Damaged(f"{key!r} is missing or not an ISO 8601 time with an offset") from None


def _rfc1123(value: object) -> datetime:
    """``Sat, 17 Jul 2021 14:35:32 GMT`` in UTC."""
    try:
        moment = parsedate_to_datetime(value)  # type: ignore[arg-type]
        if moment.tzinfo is None:
            raise ValueError
        return moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
        raise Damaged("'date' is missing or not an RFC 1123 date") from None


# --- judging --------------------------------------------------------------------------------


def window(today: date) -> list[date]:
    """The ``DAYS`` UTC days up to today, oldest first."""
    return [today - timedelta(days=back) for back in range(DAYS - 1, -1, -1)]


def summarize(runs: Iterable[Run], days: list[date]) -> dict[str, SourceHealth]:
    """Each source's health after the runs, in file order (the runs are not kept)."""
    health: dict[str, SourceHealth] = {}
    for run in runs:
        for source in run.sources:
            health[source.name] = after(health.get(source.name), run, source, days)
    return health


def after(
    previous: SourceHealth | None, run: Run, source: SourceRun, days: list[date]
) -> SourceHealth:
    """A source's health once ``run`` is counted (``previous``: before it, None at first)."""
    new_per_day = list(previous.new_per_day) if previous else [0] * len(days)
    offset = (run.finished.date() - days[0]).days
    if 0 <= offset < len(days):
        new_per_day[offset] += source.new
    if source.status == "ok":
        last_success: datetime | None = run.finished
    else:
        last_success = previous.last_success if previous else None
    failures = previous.consecutive_failures if previous else 0
    return SourceHealth(
        name=source.name,
        last_run=run.finished,
        status=source.status,
        reason=source.reason,
        interrupted=run.interrupted,
        drift=(source.drift or NO_DRIFT) if source.status == "DRIFT" else None,
        last_success=last_success,
        consecutive_failures=(
            failures + 1
            if source.status == "FAILED"
            else failures
            if source.status == "interrupted"
            else 0
        ),
        new_per_day=new_per_day,
    )


def with_posts(health: dict[str, SourceHealth], posts: dict[str, Post]) -> list[SourceHealth]:
    """The sources by name, each with its newest post."""
    return [replace(health[name], last_post=posts.get(name)) for name in sorted(health)]


def failing(sources: Iterable[SourceHealth], fail_after: int) -> list[str]:
    return [source.name for source in sources if source.consecutive_failures >= fail_after]


# --- rendering ------------------------------------------------------------------------------


@dataclass
class Status:
    archive: Path
    checked: datetime
    days: list[date]
    runs: int
    warnings: int
    fail_after: int
    sources: list[SourceHealth]

    @property
    def failing(self) -> list[str]:
        return failing(self.sources, self.fail_after)

    @property
    def exit_status(self) -> int:
        return EXIT_FAILED if self.failing else EXIT_OK


def as_dict(status: Status) -> dict[str, Any]:
    failing_names = status.failing
    return {
        "archive": str(status.archive),
        "checked": _iso(status.checked),
        "days": [day.isoformat() for day in status.days],
        "runs": status.runs,
        "warnings": status.warnings,
        "fail_after": status.fail_after,
        "failing": failing_names,
        "exit_status": status.exit_status,
        "sources": [_source_dict(s, s.name in failing_names) for s in status.sources],
    }


def _source_dict(source: SourceHealth, is_failing: bool) -> dict[str, Any]:
    post = source.last_post
    return {
        "name": source.name,
        "last_run": _iso(source.last_run),
        "status": source.status,
        "reason": source.reason,
        "interrupted": source.interrupted,
        "last_success": _iso(source.last_success),
        "last_post": _iso(post.date if post else None),
        "last_post_title": post.title if post else None,
        "consecutive_failures": source.consecutive_failures,
        "failing": is_failing,
        "drift": asdict(source.drift) if source.drift else None,
        "new_per_day": source.new_per_day,
    }


def as_json(status: Status) -> str:
    return json.dumps(as_dict(status), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def as_text(status: Status) -> str:
    """A table, one line per source, then one line per drifting or interrupted source."""
    if not status.sources:
        return f"no usable harvest report in {_clean(str(status.archive))}: nothing to check"
    header = (
        "source", "last run", "status", "last success", "fails", "last new post",
        f"new/day {status.days[0]:%m-%d}..{status.days[-1]:%m-%d}",
    )  # fmt: skip
    rows = [header, *(_row(source) for source in status.sources)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [_aligned(row, widths) for row in rows]
    lines += [_drift_line(source) for source in status.sources if source.drift]
    lines += [
        f"interrupted: {_clean(s.name)}: its last run ({_short(s.last_run)}) was interrupted"
        for s in status.sources
        if s.interrupted
    ]
    return "\n".join(lines)


def _row(source: SourceHealth) -> tuple[str, ...]:
    return (
        _clean(source.name),
        _short(source.last_run),
        source.status,
        _short(source.last_success),
        str(source.consecutive_failures),
        _short(source.last_post.date if source.last_post else None),
        " ".join(str(count) for count in source.new_per_day),
    )


def _aligned(row: tuple[str, ...], widths: list[int]) -> str:
    """Cells padded to their column (the failure count right-aligned, the last cell bare)."""
    cells = [
        cell.rjust(width) if column == 4 else cell.ljust(width)
        for column, (cell, width) in enumerate(zip(row[:-1], widths, strict=False))
    ]
    return "  ".join([*cells, row[-1]])


def _drift_line(source: SourceHealth) -> str:
    drift = source.drift or NO_DRIFT
    return (
        f"drift: {_clean(source.name)}: field {_clean(drift.field or '-')}, "
        f"example {_clean(drift.example or '-')}"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _short(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%dT%H:%MZ}" if moment else "-"


def _clean(text: str) -> str:
    """Text from the archive made safe for one terminal line (control characters escaped)."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


# --- the command ----------------------------------------------------------------------------


class Warnings:
    """Warning lines on stderr, as they come; after ``MAX_WARNINGS``, only counted."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS:
            print(f"warning: {message}", file=sys.stderr)

    def finish(self) -> None:
        if self.count > MAX_WARNINGS:
            hidden = self.count - MAX_WARNINGS
            print(f"warning: {hidden} more damaged lines or entries skipped", file=sys.stderr)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def whole_number(text: str, option: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise UsageFailure(f"{option}: expected a whole number >= 1, got {_clean(text)!r}")
    return int(text)


def regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (False when it is absent); never a FIFO or device,
    which could block or never end."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def check(archive: Path, fail_after: int, warn: Warnings) -> Status | None:
    """The archive's status, or None when no harvest was recorded yet."""
    runs_file = archive / RUNS_FILE
    try:
        if not regular_file(runs_file):
            if runs_file.exists() or runs_file.is_symlink():
                raise UsageFailure(f"{_clean(str(runs_file))} is not a regular file")
            return None
        now = _utc_now()
        days = window(now.date())
        counted = Counted(read_runs(runs_file, warn))
        health = summarize(counted, days)
    except OSError as error:
        raise UsageFailure(f"cannot read {_clean(str(runs_file))}: {error.strerror}") from None
    posts = _posts(archive / INDEX_FILE, warn)
    return Status(
        archive=archive,
        checked=now,
        days=days,
        runs=counted.count,
        warnings=warn.count,
        fail_after=fail_after,
        sources=with_posts(health, posts),
    )


def _posts(index_file: Path, warn: Warn) -> dict[str, Post]:
    try:
        if not regular_file(index_file):
            if index_file.exists() or index_file.is_symlink():
                warn(f"{_clean(str(index_file))}: not a regular file, no post dates")
            return {}
        return latest_posts(index_file, warn)
    except OSError as error:
        warn(f"{_clean(str(index_file))}: cannot read ({error.strerror}), no post dates")
        return {}


class Counted:
    """An iterable that counts what went through it."""

    def __init__(self, items: Iterable[Run]) -> None:
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[Run]:
        for item in self.items:
            self.count += 1
            yield item


def status_command(args: argparse.Namespace) -> int:
    fail_after = whole_number(args.fail_after, "--fail-after")
    archive = Path(args.directory).expanduser()
    if not archive.is_dir():
        raise UsageFailure(f"{_clean(str(archive))} is not a directory")
    archive = archive.resolve()
    warn = Warnings()
    status = check(archive, fail_after, warn)
    warn.finish()
    if status is None:  # nothing to judge
        if args.json:
            now = _utc_now()
            print(as_json(Status(archive, now, window(now.date()), 0, 0, fail_after, [])))
        else:
            print(f"no harvest recorded in {_clean(str(archive))} yet (no {RUNS_FILE})")
        return EXIT_OK
    print(as_json(status) if args.json else as_text(status), flush=True)
    if status.failing:
        print(failing_line(status), file=sys.stderr)
    return status.exit_status


def failing_line(status: Status) -> str:
    """``failing: missing (FAILED 4 runs in a row), rdf (FAILED 3 runs in a row); --fail-after 3``
    (one line)."""
    names = [
        f"{_clean(s.name)} (FAILED {s.consecutive_failures} run"
        f"{'s' if s.consecutive_failures > 1 else ''} in a row)"
        for s in status.sources
        if s.name in status.failing
    ]
    return f"failing: {', '.join(names)}; --fail-after {status.fail_after}"
