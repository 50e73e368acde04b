"""The harvest report: one line per source and a totals line, or the same as one JSON object.

JSON schema (also one line of ``OUTPUT_DIR/.runs.jsonl`` per harvest)::

    {
      "started": "2026-11-27T11:30:00+00:00",   # UTC, ISO 8601
      "finished": "2026-11-27T11:30:42+00:00",
      "seconds": 42.1,
      "output": "/srv/news",                    # the archive, absolute
      "exit_status": 0,                         # 0 all well, 1 a source FAILED or DRIFT,
                                                # 130/143 interrupted by SIGINT/SIGTERM
      "interrupted": false,                     # a SIGINT or SIGTERM stopped the harvest
      "sources": [
        {"name": "cnbeta", "kind": "spider", "seen": 60, "new": 3, "duplicate": 57,
         "dropped": 0, "failed": false, "seconds": 12.5,
         "status": "ok",                        # "ok", "FAILED", "DRIFT" or "interrupted"
         "reason": null,                        # one line: why FAILED, DRIFT or interrupted
         "drift": null,                         # {"field", "example", "rate", "empty_runs"}
         "images_failed": 0}                    # ARCHIVE_IMAGES: images not archived
      ],
      "totals": {"sources": 1, "failed": 0, "drift": 0, "seen": 60, "new": 3,
                 "duplicate": 57, "dropped": 0}
    }

``new`` is the number of post files written; ``seen`` what the source listed; ``duplicate``
what the archive already held; ``dropped`` what could not be archived (no title or date).
A source is FAILED when it could not be read or an article could not be written (``reason``
says why), DRIFT when it was read but its pages no longer give what they used to
(crawler/drift.py); either makes the exit status 1.

A harvest stopped by SIGINT or SIGTERM has ``"interrupted": true`` and exit status 130
(SIGINT) or 143 (SIGTERM), whatever its sources did. Its sources keep their real counts; a
source cut short is ``"interrupted"`` (not FAILED: it says nothing about the site), one whose
crawl never started is ``"interrupted"`` with zero counts and the reason ``not run:
interrupted``; sources that were done before the signal keep their own status.
"""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crawler.archive.files import append_line

RUNS_FILE = ".runs.jsonl"
COUNTS = ("seen", "new", "duplicate", "dropped")


@dataclass
class SourceResult:
    name: str
    kind: str  # "spider", "sitemap", "list" or "feed"
    seen: int = 0
    new: int = 0
    duplicate: int = 0
    dropped: int = 0
    failed: bool = False
    seconds: float = 0.0
    reason: str | None = None  # one line; set for every FAILED, DRIFT and interrupted source
    drift: dict[str, Any] | None = None
    interrupted: bool = False  # cut short (or never started) by a SIGINT/SIGTERM
    # ARCHIVE_IMAGES: images of its new posts that could not be archived (the posts keep the
    # remote URLs). Reported, but no failure: one dead image host must not fail every run.
    images_failed: int = 0

    @property
    def status(self) -> str:
        if self.failed:
            return "FAILED"
        if self.interrupted:
            return "interrupted"
        return "DRIFT" if self.drift else "ok"

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["interrupted"]  # the status says it
        return {**fields, "status": self.status}


@dataclass
class Report:
    started: str
    finished: str
    seconds: float
    output: str
    sources: list[SourceResult] = field(default_factory=list)
    interrupted_by: int | None = None  # the signal that stopped the harvest

    @property
    def exit_status(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by  # as a shell reports a process a signal ended
        return 1 if any(source.status != "ok" for source in self.sources) else 0

    def totals(self) -> dict[str, int]:
        totals = {
            "sources": len(self.sources),
            "failed": sum(s.status == "FAILED" for s in self.sources),
            "drift": sum(s.status == "DRIFT" for s in self.sources),
        }
        for name in COUNTS:
            totals[name] = sum(getattr(source, name) for source in self.sources)
        return totals

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": self.finished,
            "seconds": self.seconds,
            "output": self.output,
            "exit_status": self.exit_status,
            "interrupted": self.interrupted_by is not None,
            "sources": [source.as_dict() for source in self.sources],
            "totals": self.totals(),
        }

    def as_json_line(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))

    def as_text(self) -> str:
        width = max([len("source"), len("total"), *(len(s.name) for s in self.sources)])
        state = max([len("failed"), *(len(s.status) for s in self.sources)])
        header = (
            f"{'source':<{width}}  {'new':>5}  {'duplicate':>9}  {'dropped':>7}  "
            f"{'failed':<{state}}  {'seconds':>7}"
        )
        lines = [header]
        for s in self.sources:
            lines.append(
                f"{s.name:<{width}}  {s.new:>5}  {s.duplicate:>9}  {s.dropped:>7}  "
                f"{s.status if s.status != 'ok' else 'no':<{state}}  {s.seconds:>7.1f}"
            )
        t = self.totals()
        lines.append(
            f"{'total':<{width}}  {t['new']:>5}  {t['duplicate']:>9}  {t['dropped']:>7}  "
            f"{t['failed'] + t['drift']:<{state}}  {self.seconds:>7.1f}"
        )
        # Every source that is not ok, with its reason: one line each.
        lines += [f"{s.name}: {s.status}: {s.reason}" for s in self.sources if s.status != "ok"]
        lines += [
            f"{s.name}: {s.images_failed} images not archived (the posts keep their URLs; "
            "the log says why)"
            for s in self.sources
            if s.images_failed
        ]
        if self.interrupted_by is not None:
            lines.append(f"interrupted by {signal_name(self.interrupted_by)}")
        return "\n".join(lines)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def append_run(output_dir: Path, report: Report) -> None:
    """Append the report to ``.runs.jsonl`` in one write."""
    append_line(output_dir / RUNS_FILE, (report.as_json_line() + "\n").encode("utf-8"))
