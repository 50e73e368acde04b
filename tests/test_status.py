"""``python -m crawler status``: each source's health from ``.runs.jsonl`` and ``.index.jsonl``.

Real archive folders in tmp_path, lines written in the documented shapes (the report before
and after ``status``/``reason``/``drift``), damaged on purpose; the command runs in-process
(one subprocess proves the real command), the clock fixed at ``NOW``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import PROJECT_ROOT

from crawler.archive.lock import ArchiveLock
from crawler.cli import status as status_module
from crawler.cli.main import main

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DAYS = ["2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26",
        "2026-11-27"]  # fmt: skip
EXAMPLE = "https://news.example.com/2026/11/27/a-story"


def at(days_ago: float, hour: int = 10) -> str:
    """A run's ``finished`` time, ``days_ago`` UTC days before NOW's day, at ``hour``."""
    moment = NOW.replace(hour=hour) - timedelta(days=days_ago)
    return moment.isoformat(timespec="seconds")


def old_entry(name: str, new: int = 0, failed: bool = False) -> dict[str, Any]:
    """A source entry as written before ``status``, ``reason`` and ``drift``."""
    return {"name": name, "kind": "feed", "seen": new + 2, "new": new, "duplicate": 2,
            "dropped": 0, "failed": failed, "seconds": 0.5}  # fmt: skip


def entry(
    name: str, new: int = 0, status: str = "ok", drift: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A source entry as written now."""
    reason = {"ok": None, "FAILED": "HTTP 404", "DRIFT": "drift: title found on 10% of pages",
              "interrupted": "SIGTERM before it was done"}  # fmt: skip
    return {**old_entry(name, new, status == "FAILED"), "status": status,
            "reason": reason[status], "drift": drift}  # fmt: skip


def run(finished: str, *sources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"started": finished, "finished": finished, "seconds": 1.0, "output": "/srv/news",
            "exit_status": 0, "sources": list(sources), "totals": {}, **extra}  # fmt: skip


def write_lines(path: Path, *lines: dict[str, Any] | str | bytes) -> Path:
    """JSON lines; a str or bytes line is written as it is (damage), with its own ending."""
    with path.open("ab") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line, ensure_ascii=False) + "\n"
            handle.write(line.encode("utf-8") if isinstance(line, str) else line)
    return path


def post(source: str, date: str, title: str = "A story") -> dict[str, Any]:
    return {"path": f"2026/11/{title}.md", "title": title, "date": date, "url": EXAMPLE,
            "canonical_url": EXAMPLE, "source": source, "categories": ["Tech"],
            "sha256": "0" * 64}  # fmt: skip


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_module, "_utc_now", lambda: NOW)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "news"
    folder.mkdir()
    return folder


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    """Exit status, stdout and the stderr lines of ``python -m crawler status ARGS``."""
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = status(capsys, *args, "--json")
    assert len(out.splitlines()) == 1
    return code, json.loads(out)


def healthy_archive(archive: Path) -> None:
    """cnbeta: old and new lines, runs on some of the 7 days (two on one), one outside."""
    write_lines(
        archive / ".runs.jsonl",
        run(at(9), old_entry("cnbeta", new=50)),  # before the 7 days
        run(at(6), old_entry("cnbeta", new=3)),
        run(at(4, hour=1), entry("cnbeta", new=2)),
        run(at(4, hour=23), entry("cnbeta", new=3)),
        run(at(3), entry("cnbeta", new=1)),
        run(at(0, hour=0), entry("cnbeta", new=0)),
        run(at(0, hour=11), entry("cnbeta", new=2)),
    )
    write_lines(
        archive / ".index.jsonl",
        post("cnbeta", "Thu, 26 Nov 2026 08:00:00 GMT", "older"),
        post("cnbeta", "Fri, 27 Nov 2026 09:30:00 GMT", "最新的故事"),
        post("cnbeta", "Wed, 25 Nov 2026 23:59:59 GMT", "appended later, published earlier"),
        post("other", "Fri, 27 Nov 2026 11:00:00 GMT", "another source's"),
    )


def test_a_healthy_source_as_text(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    healthy_archive(archive)
    code, out, err = status(capsys, str(archive))
    assert (code, err) == (0, [])
    header, line = out.splitlines()
    assert header.split() == ["source", "last", "run", "status", "last", "success", "fails",
                              "last", "new", "post", "new/day", "11-21..11-27"]  # fmt: skip
    assert line.split() == ["cnbeta", "2026-11-27T11:00Z", "ok", "2026-11-27T11:00Z", "0",
                            "2026-11-27T09:30Z", "3", "0", "5", "1", "0", "0", "2"]  # fmt: skip
    assert line.index("ok") == header.index("status")


def test_a_healthy_source_as_json(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    healthy_archive(archive)
    code, report = as_json(capsys, str(archive))
    assert code == 0
    assert report == {
        "archive": str(archive.resolve()),
        "checked": "2026-11-27T12:00:00+00:00",
        "days": DAYS,
        "runs": 7,
        "warnings": 0,
        "fail_after": 3,
        "failing": [],
        "exit_status": 0,
        "sources": [
            {
                "name": "cnbeta",
                "last_run": "2026-11-27T11:00:00+00:00",
                "status": "ok",
                "reason": None,
                "interrupted": False,
                "last_success": "2026-11-27T11:00:00+00:00",
                "last_post": "2026-11-27T09:30:00+00:00",
                "last_post_title": "最新的故事",
                "consecutive_failures": 0,
                "failing": False,
                "drift": None,
                "new_per_day": [3, 0, 5, 1, 0, 0, 2],
            }
        ],
    }


def failing_archive(archive: Path) -> None:
    """missing: FAILED (old line), ok, then FAILED twice; cnbeta fine throughout."""
    write_lines(
        archive / ".runs.jsonl",
        run(at(3), old_entry("cnbeta", 1), old_entry("missing", failed=True)),
        run(at(2), old_entry("cnbeta", 1), old_entry("missing", 4)),
        run(at(1), entry("cnbeta", 1), old_entry("missing", failed=True)),
        run(at(0), entry("missing", status="FAILED")),  # an --only run: cnbeta not in it
    )


def test_a_failing_source(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing_archive(archive)
    code, out, err = status(capsys, str(archive), "--fail-after", "2")
    assert code == 1
    assert err == ["failing: missing (FAILED 2 runs in a row); --fail-after 2"]
    cnbeta, missing = (line.split() for line in out.splitlines()[1:])
    assert cnbeta[:5] == ["cnbeta", "2026-11-26T10:00Z", "ok", "2026-11-26T10:00Z", "0"]
    assert missing[:6] == ["missing", "2026-11-27T10:00Z", "FAILED", "2026-11-25T10:00Z", "2",
                           "-"]  # fmt: skip
    assert missing[6:] == ["0", "0", "0", "0", "4", "0", "0"]

    code, report = as_json(capsys, str(archive), "--fail-after=2")
    assert (code, report["failing"], report["exit_status"]) == (1, ["missing"], 1)
    by_name = {source["name"]: source for source in report["sources"]}
    assert by_name["missing"]["consecutive_failures"] == 2
    assert by_name["missing"]["failing"] is True
    assert by_name["missing"]["reason"] == "HTTP 404"
    assert by_name["missing"]["last_success"] == "2026-11-25T10:00:00+00:00"
    assert by_name["cnbeta"]["failing"] is False


def test_every_failing_source_on_one_line(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing_archive(archive)
    write_lines(
        archive / ".runs.jsonl",
        *(run(at(0, hour=11), entry("rdf", status="FAILED"), entry("missing", status="FAILED"))
          for _ in range(3)),
    )  # fmt: skip
    code, _, err = status(capsys, str(archive))
    assert code == 1
    assert err == [
        "failing: missing (FAILED 5 runs in a row), rdf (FAILED 3 runs in a row); --fail-after 3"
    ]


@pytest.mark.parametrize("args", [("--fail-after", "3"), ()], ids=["--fail-after 3", "default"])
def test_fewer_failures_than_fail_after_pass(
    archive: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    failing_archive(archive)
    code, out, err = status(capsys, str(archive), *args)
    assert (code, err) == (0, [])
    assert "FAILED" in out
    code, report = as_json(capsys, str(archive), *args)
    assert (code, report["failing"], report["fail_after"]) == (0, [], 3)


def test_a_drifting_source(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drift = {"field": "title", "example": EXAMPLE, "rate": 0.1, "empty_runs": None}
    write_lines(
        archive / ".runs.jsonl",
        run(at(2), entry("itHome", 4)),
        run(at(1), entry("itHome", status="FAILED")),
        run(at(0), entry("itHome", 1, status="DRIFT", drift=drift)),
    )
    code, out, err = status(capsys, str(archive), "--fail-after", "1")
    assert (code, err) == (0, [])  # DRIFT ends a run of failures
    table, drift_line = out.splitlines()[1:]
    assert table.split()[:5] == ["itHome", "2026-11-27T10:00Z", "DRIFT", "2026-11-25T10:00Z", "0"]
    assert drift_line == f"drift: itHome: field title, example {EXAMPLE}"

    _, report = as_json(capsys, str(archive))
    (source,) = report["sources"]
    assert source["status"] == "DRIFT"
    assert source["drift"] == drift
    assert source["reason"] == "drift: title found on 10% of pages"
    assert source["last_success"] == "2026-11-25T10:00:00+00:00"
    assert source["new_per_day"] == [0, 0, 0, 0, 4, 0, 1]


def test_drift_without_details_and_an_interrupted_run(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(
        archive / ".runs.jsonl",
        run(at(0), entry("lwn", status="DRIFT"), entry("solidot", 2), interrupted=True),
    )
    code, out, err = status(capsys, str(archive))
    assert (code, err) == (0, [])
    assert out.splitlines()[3:] == [
        "drift: lwn: field -, example -",
        "interrupted: lwn: its last run (2026-11-27T10:00Z) was interrupted",
        "interrupted: solidot: its last run (2026-11-27T10:00Z) was interrupted",
    ]
    _, report = as_json(capsys, str(archive))
    lwn, solidot = report["sources"]
    assert lwn["drift"] == {"field": None, "example": None, "rate": None, "empty_runs": None}
    assert (lwn["interrupted"], solidot["interrupted"], solidot["drift"]) == (True, True, None)


def test_a_truncated_last_line(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A crash in the middle of an append leaves half a line, without its newline."""
    healthy_archive(archive)
    last = json.dumps(run(at(0, hour=11), entry("cnbeta", 40)))
    write_lines(archive / ".runs.jsonl", last[: len(last) // 2])
    code, out, err = status(capsys, str(archive))
    assert code == 0
    assert err == [f"warning: {archive.resolve()}/.runs.jsonl line 8: not JSON (truncated?), "
                   "skipped"]  # fmt: skip
    assert out.splitlines()[1].split()[-7:] == ["3", "0", "5", "1", "0", "0", "2"]
    code, report = as_json(capsys, str(archive))
    assert (code, report["runs"], report["warnings"]) == (0, 7, 1)


def test_a_broken_middle_line(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(
        archive / ".runs.jsonl",
        run(at(2), entry("cnbeta", 1)),
        '{"started": "2026-11-26T10:00:00+00:00", "finished": "2026-11-2\n',
        run(at(0), entry("cnbeta", status="FAILED")),
    )
    code, report = as_json(capsys, str(archive), "--fail-after", "1")
    assert code == 1
    assert (report["runs"], report["warnings"]) == (2, 1)
    (source,) = report["sources"]
    assert source["last_success"] == "2026-11-25T10:00:00+00:00"
    assert source["consecutive_failures"] == 1
    code, _, err = status(capsys, str(archive), "--fail-after", "1")
    assert code == 1
    assert err[0].endswith(".runs.jsonl line 2: not JSON (truncated?), skipped")
    assert err[1:] == ["failing: cnbeta (FAILED 1 run in a row); --fail-after 1"]


GOOD = entry("cnbeta", 1)
DAMAGE = {
    "a JSON array": ("[1, 2]\n", "line 2: not a JSON object, skipped"),
    "JSON null": ("null\n", "line 2: not a JSON object, skipped"),
    "no finished": (
        run(None, GOOD),
        "line 2: 'finished' is missing or not an ISO 8601 time with an offset",
    ),
    "a time without a zone": (
        run("2026-11-26T10:00:00", GOOD),
        "line 2: 'finished' is missing or not an ISO 8601",
    ),
    "a year out of range": (run("0001-01-01T00:00:00+01:00", GOOD), "line 2: 'finished'"),
    "sources not a list": ({**run(at(1)), "sources": {"cnbeta": GOOD}}, "'sources' is not a list"),
    "interrupted not a bool": (run(at(1), GOOD, interrupted="yes"), "'interrupted' is not true"),
    "invalid UTF-8": (b'{"finished": "\xff\xfe"}\n', "line 2: not JSON (truncated?), skipped"),
    "NUL bytes (a crash)": (b"\0" * 200 + b"\n", "line 2: not JSON (truncated?), skipped"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000 + "\n", "line 2: not JSON"),
}
BAD_ENTRIES = {
    "not an object": ("cnbeta", "source entry 1: not a JSON object, skipped"),
    "no new": ({**GOOD, "new": None}, "source entry 1: 'new' is missing or not a whole number"),
    "new as text": ({**GOOD, "new": "3"}, "'new' is missing or not a whole number"),
    "new negative": ({**GOOD, "new": -1}, "'new' is missing or not a whole number"),
    "new a bool": ({**GOOD, "new": True}, "'new' is missing or not a whole number"),
    "no name": ({k: v for k, v in GOOD.items() if k != "name"}, "'name' is missing or not a str"),
    "failed as text": ({**GOOD, "failed": "no"}, "'failed' is missing or not a bool"),
    "seconds NaN": ({**GOOD, "seconds": float("nan")}, "'seconds' is missing or not a number"),
    "unknown status": ({**GOOD, "status": "fine"}, "'status' is not one of ok, FAILED, DRIFT"),
    "reason a list": ({**GOOD, "reason": ["x"]}, "'reason' is not a string or null"),
    "drift a list": ({**GOOD, "drift": ["title"]}, "'drift' is not an object or null"),
    "drift rate text": ({**GOOD, "drift": {"field": "body", "rate": "1"}}, "'drift.rate'"),
    "drift example": ({**GOOD, "drift": {"field": "body", "example": 3}}, "'drift.example'"),
    "listed twice": (entry("rdf", 9), "source entry 3: 'rdf' listed twice, skipped"),
}


@pytest.mark.parametrize("line, warning", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_line_is_skipped_with_one_warning(
    archive: Path, capsys: pytest.CaptureFixture[str], line: Any, warning: str
) -> None:
    write_lines(
        archive / ".runs.jsonl",
        run(at(2), entry("cnbeta", 1)),
        line,
        run(at(0), entry("cnbeta", 2)),
    )
    code, report = as_json(capsys, str(archive))
    assert (code, report["runs"], report["warnings"]) == (0, 2, 1)
    assert report["sources"][0]["new_per_day"] == [0, 0, 0, 0, 1, 0, 2]
    code, out, err = status(capsys, str(archive))
    assert code == 0 and len(out.splitlines()) == 2
    assert len(err) == 1 and err[0].startswith(f"warning: {archive.resolve()}/.runs.jsonl ")
    assert warning in err[0]


@pytest.mark.parametrize("bad, warning", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_a_damaged_source_entry_is_skipped_with_one_warning(
    archive: Path, capsys: pytest.CaptureFixture[str], bad: Any, warning: str
) -> None:
    """The run's other entries still count."""
    write_lines(archive / ".runs.jsonl", run(at(0), bad, entry("cnbeta", 5), entry("rdf", 1)))
    code, out, err = status(capsys, str(archive))
    assert code == 0
    assert len(err) == 1 and err[0].startswith(f"warning: {archive.resolve()}/.runs.jsonl line 1")
    assert warning in err[0]
    assert [row.split()[0] for row in out.splitlines()[1:]] == ["cnbeta", "rdf"]
    assert out.splitlines()[1].split()[-1] == "5"


def test_many_damaged_lines_are_counted_not_all_printed(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(archive / ".runs.jsonl", *(["{\n"] * 50), run(at(0), entry("cnbeta")))
    code, out, err = status(capsys, str(archive))
    assert code == 0 and "cnbeta" in out
    assert len(err) == status_module.MAX_WARNINGS + 1
    assert err[-1] == "warning: 30 more damaged lines or entries skipped"


def test_an_over_long_line_is_skipped_without_reading_it_whole(
    archive: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_module, "MAX_LINE_BYTES", 1000)
    write_lines(archive / ".runs.jsonl", "x" * 5000 + "\n", run(at(0), entry("cnbeta", 3)))
    code, report = as_json(capsys, str(archive))
    assert (code, report["runs"], report["warnings"]) == (0, 1, 1)
    _, _, err = status(capsys, str(archive))
    assert err == [f"warning: {archive.resolve()}/.runs.jsonl line 1: over 1000 bytes, skipped"]


def test_damaged_index_lines(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(archive / ".runs.jsonl", run(at(0), entry("cnbeta", 1)))
    write_lines(
        archive / ".index.jsonl",
        post("cnbeta", "Thu, 26 Nov 2026 08:00:00 GMT", "kept"),
        post("cnbeta", "2026-11-27T09:00:00Z", "not RFC 1123"),
        post("cnbeta", None, "no date"),  # type: ignore[arg-type]
        {**post("cnbeta", "Fri, 27 Nov 2026 09:00:00 GMT"), "source": None},
        '{"path": "2026/11/x.md", "title": "trunc',
    )
    code, report = as_json(capsys, str(archive))
    assert (code, report["warnings"]) == (0, 3)
    assert report["sources"][0]["last_post"] == "2026-11-26T08:00:00+00:00"
    assert report["sources"][0]["last_post_title"] == "kept"
    _, _, err = status(capsys, str(archive))
    assert [line.split(".index.jsonl ")[1] for line in err] == [
        "line 2: 'date' is missing or not an RFC 1123 date, skipped",
        "line 3: 'date' is missing or not an RFC 1123 date, skipped",
        "line 5: not JSON (truncated?), skipped",
    ]


def test_control_characters_stay_on_their_line(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drift = {"field": "title\n", "example": "https://x/\x1b[2J", "rate": None, "empty_runs": 2}
    write_lines(archive / ".runs.jsonl", run(at(0), entry("evil\nname", status="DRIFT",
                                                          drift=drift)))  # fmt: skip
    code, out, _ = status(capsys, str(archive))
    assert code == 0
    assert out.splitlines()[1].startswith("evil\\nname  ")
    assert out.splitlines()[2] == "drift: evil\\nname: field title\\n, example https://x/\\x1b[2J"
    assert len(out.splitlines()) == 3


def test_no_runs_yet(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = status(capsys, str(archive))
    assert (code, err) == (0, [])
    assert out == f"no harvest recorded in {archive.resolve()} yet (no .runs.jsonl)\n"
    code, report = as_json(capsys, str(archive))
    assert (code, report["runs"], report["sources"], report["days"]) == (0, 0, [], DAYS)


def test_only_damage_yet(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(archive / ".runs.jsonl", "{")
    code, out, err = status(capsys, str(archive))
    assert (code, len(err)) == (0, 1)
    assert out == f"no usable harvest report in {archive.resolve()}: nothing to check\n"


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = status(capsys, *args)
    assert (code, out) == (2, "")
    (line,) = err
    assert line.startswith("error: ")
    return line


def test_usage_errors(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = archive / "missing"
    assert usage_error(capsys, str(missing)) == f"error: {missing} is not a directory"
    write_lines(archive / "a-file", "x")
    assert usage_error(capsys, str(archive / "a-file")).endswith("a-file is not a directory")
    assert usage_error(capsys, str(archive / "new\nline")).endswith("new\\nline is not a directory")
    for bad in ("0", "-1", "1.5", "abc", "", " 2", "³"):
        assert usage_error(capsys, str(archive), f"--fail-after={bad}") == (
            f"error: --fail-after: expected a whole number >= 1, got {bad!r}"
        )


def test_runs_file_that_is_not_a_file(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO would block a reader forever, a directory cannot be read: one line, exit 2."""
    os.mkfifo(archive / ".runs.jsonl")
    assert usage_error(capsys, str(archive)).endswith(".runs.jsonl is not a regular file")
    os.unlink(archive / ".runs.jsonl")
    (archive / ".runs.jsonl").mkdir()
    assert usage_error(capsys, str(archive)).endswith(".runs.jsonl is not a regular file")


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (hidden ones too), with its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "folder"
        for path in sorted(folder.rglob("*"))
    }


def test_the_archive_is_left_byte_identical_and_unlocked(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read-only, and no lock: it works while a harvest holds the archive's lock."""
    healthy_archive(archive)
    failing_archive(archive)
    write_lines(archive / ".runs.jsonl", "{broken")
    (archive / "2026" / "11").mkdir(parents=True)
    (archive / "2026" / "11" / "2026-11-27-a-story-0123abcd.md").write_text("---\n")
    (archive / ".state.sqlite3").write_bytes(b"SQLite format 3\0")
    with ArchiveLock(archive):  # exclusive, as a harvest holds it
        before = fingerprint(archive)
        for args in ((), ("--json",), ("--fail-after", "1")):
            status(capsys, str(archive), *args)
        assert fingerprint(archive) == before
    assert len(before) == 7


def test_the_real_command(archive: Path) -> None:
    failing_archive(archive)
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "status", str(archive), "--json", "--fail-after", "2"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == ["failing: missing (FAILED 2 runs in a row); --fail-after 2"]
    report = json.loads(done.stdout)
    assert [source["name"] for source in report["sources"]] == ["cnbeta", "missing"]
    assert report["sources"][1]["consecutive_failures"] == 2
    assert report["archive"] == str(archive.resolve())


def test_an_interrupted_source_neither_breaks_nor_extends_a_failure_streak(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(
        archive / ".runs.jsonl",
        run(at(3), entry("rdf", status="FAILED")),
        run(at(2), entry("rdf", status="FAILED")),
        run(at(1), entry("rdf", status="interrupted"), interrupted=True),
        run(at(0), entry("rdf", status="FAILED")),
    )
    code, report = as_json(capsys, str(archive), "--fail-after", "3")
    (rdf,) = report["sources"]
    assert (code, report["warnings"], rdf["consecutive_failures"]) == (1, 0, 3)
    assert rdf["last_success"] is None
