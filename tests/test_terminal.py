"""The command line as a person meets it: the progress line on a real pseudo-terminal (no INFO
lines between the bar and the report), ``--help``/``--version`` and usage errors naming the
command as it was called (``technews`` or ``python -m crawler``)."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    FAST,
    PROJECT_ROOT,
    background_job,
    fixture_server,
    run_concurrently,
    serve_feeds,
    source_table,
    write_sources,
)

from crawler.cli.progress import TerminalLog, terminal_log

TECHNEWS = str(Path(sys.executable).with_name("technews"))
BOUND = 120.0  # seconds a harvest on the terminal may take at most (a hung run fails)


@dataclass
class Screen:
    returncode: int
    text: str  # every byte the terminal received, decoded
    log: str | None = None  # the --log-file, if one was given


def on_terminal(folder: Path, *extra: str) -> Screen:
    """``python -m crawler harvest`` of one good and one missing feed with stdout and stderr
    on a pseudo-terminal of 100 columns, as in a person's shell; everything it shows."""
    with fixture_server(serve_feeds) as server:
        sources = write_sources(
            folder / "sources.toml",
            server,
            source_table("verge", url="{base}/feeds/verge.xml", categories=["T", "V", "A"],
                         author="V"),
            source_table("missing", url="{base}/feeds/missing.xml", categories=["T", "M", "A"],
                         author="M"),
        )  # fmt: skip
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        command = [sys.executable, "-m", "crawler", "harvest", *FAST,
                   "--output", str(folder / "out"), "--sources", str(sources), *extra]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
        )
        os.close(slave)
        screen = bytearray()
        try:
            while select.select([master], [], [], BOUND)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the harvest closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
        finally:
            os.close(master)
            returncode = process.wait(timeout=BOUND)
    log = folder / "harvest.log"
    return Screen(
        returncode,
        screen.decode("utf-8", "replace"),
        log.read_text(encoding="utf-8") if log.exists() else None,
    )


@background_job
def terminal_run(folder: Path) -> Screen:
    return on_terminal(folder)


@background_job
def terminal_run_with_log_file(folder: Path) -> Screen:
    return on_terminal(folder, "--log-file", str(folder / "harvest.log"))


def test_the_progress_line_is_not_broken_up_by_info_lines(terminal_run: Screen) -> None:
    screen = terminal_run.text
    assert terminal_run.returncode == 1, screen  # the missing feed FAILED
    assert " INFO: " not in screen and " DEBUG: " not in screen
    assert "\rfeeds: 3 pages [" in screen and "new=2, duplicate=0, dropped=0]" in screen
    # The warning is written above the bar, which is drawn again below it.
    warning = screen.index("[feeds] WARNING: source missing failed: HTTP 404")
    assert screen.rfind("\rfeeds: ", 0, warning) < warning < screen.rindex("\rfeeds: 3 pages")
    hidden = screen.index(" lines below WARNING not shown (--log-file FILE keeps the whole log)")
    report = screen.index("source     new  duplicate  dropped  failed  seconds")
    assert hidden < report  # the summary ends the log, then the report
    assert "\r\nverge        2  " in screen and "missing: FAILED: HTTP 404" in screen


def test_with_a_log_file_the_log_goes_there_and_the_bar_to_the_terminal(
    terminal_run_with_log_file: Screen,
) -> None:
    run = terminal_run_with_log_file
    assert run.returncode == 1 and run.log is not None
    assert " INFO: " not in run.text and "lines below WARNING" not in run.text
    assert "\rfeeds: 3 pages [" in run.text and "WARNING: source missing failed" in run.text
    assert "[scrapy.core.engine] INFO: Spider opened" in run.log
    assert "WARNING: source missing failed" in run.log


def test_terminal_log_counts_what_it_hides(capsys: pytest.CaptureFixture[str]) -> None:
    handler = TerminalLog(logging.INFO, logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("test_terminal.counted")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.debug("below LOG_LEVEL: neither shown nor counted")
        logger.info("counted")
        logger.warning("shown %s", "once")
        logger.error("and this")
    finally:
        logger.removeHandler(handler)
    assert handler.hidden == 1
    assert capsys.readouterr().err == "WARNING: shown once\nERROR: and this\n"


def test_terminal_log_replaces_scrapys_terminal_handler_while_the_bar_is_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scrapy.settings import Settings

    settings = Settings({"PROGRESS_DISPLAY": True, "LOG_LEVEL": logging.DEBUG})
    logger = logging.getLogger("test_terminal.root")
    logger.setLevel(logging.DEBUG)
    with terminal_log(settings):
        assert not settings.getbool("LOG_ENABLED")  # Scrapy's own handler: a null one
        logger.debug("counted: LOG_LEVEL is DEBUG")
        logger.info("counted too")
    logger.info("after the block: not ours")
    err = capsys.readouterr().err
    assert err.endswith("log: 2 lines below WARNING not shown (--log-file FILE keeps the "
                        "whole log)\n")  # fmt: skip


def test_terminal_log_is_off_without_a_progress_display() -> None:
    from scrapy.settings import Settings

    settings = Settings({"PROGRESS_DISPLAY": False})
    before = list(logging.getLogger().handlers)
    with terminal_log(settings):
        assert logging.getLogger().handlers == before
    assert settings.getbool("LOG_ENABLED")


# --- names, --help and --version -------------------------------------------------------------


@background_job
def called_as(folder: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The command line, as ``technews`` (the installed console script) and as
    ``python -m crawler``, all at once."""
    module = [sys.executable, "-m", "crawler"]
    commands = {
        "technews --help": [TECHNEWS, "--help"],
        "module --help": [*module, "--help"],
        "technews --version": [TECHNEWS, "--version"],
        "technews sources --help": [TECHNEWS, "sources", "--help"],
        "technews harvest --nope": [TECHNEWS, "harvest", "--nope"],
        "module harvest --nope": [*module, "harvest", "--nope"],
        "technews sources --import-opml": [TECHNEWS, "sources", "--import-opml"],
        "technews nope": [TECHNEWS, "nope"],
    }
    return run_concurrently({name: _runner(command, folder) for name, command in commands.items()})


def _runner(command: list[str], folder: Path) -> Callable[[], subprocess.CompletedProcess[str]]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=BOUND, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    return run


def test_help_names_the_command_as_it_was_called(
    called_as: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    technews, module = called_as["technews --help"], called_as["module --help"]
    assert technews.returncode == 0 and technews.stdout.startswith("usage: technews [-h]")
    assert module.returncode == 0 and module.stdout.startswith("usage: python -m crawler [-h]")
    for command in ("harvest", "reindex", "status", "export", "sources"):
        assert command in technews.stdout
    sources = called_as["technews sources --help"]
    assert sources.returncode == 0
    assert sources.stdout.startswith("usage: technews sources [-h] [--sources FILE]")
    assert "--import-opml FILE" in sources.stdout and "--export-opml FILE" in sources.stdout


def test_version(called_as: dict[str, subprocess.CompletedProcess[str]]) -> None:
    from importlib.metadata import version

    expected = version("technews-harvester")
    assert called_as["technews --version"].stdout == f"technews {expected}\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("technews harvest --nope",
         "error: unrecognized arguments: --nope (see technews harvest --help)"),
        ("module harvest --nope",
         "error: unrecognized arguments: --nope (see python -m crawler harvest --help)"),
        ("technews sources --import-opml",
         "error: argument --import-opml: expected one argument (see technews sources --help)"),
    ],
)  # fmt: skip
def test_usage_errors_name_the_command(
    called_as: dict[str, subprocess.CompletedProcess[str]], name: str, message: str
) -> None:
    done = called_as[name]
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == message


def test_an_unknown_command_names_the_program(
    called_as: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    done = called_as["technews nope"]
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith("error: argument command: invalid choice: ")
    assert done.stderr.splitlines()[-1].endswith("(see technews --help)")
