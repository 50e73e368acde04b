"""``python -m crawler sources``: being built (issue 10)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    commands.add_parser("sources", help="(being built)")


def run(args: argparse.Namespace) -> int:
    from crawler.cli.main import UsageFailure

    raise UsageFailure("sources: not built yet")
