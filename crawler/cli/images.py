"""``python -m crawler images``: being built (issue 10)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    commands.add_parser("images", help="(being built)")


def run(args: argparse.Namespace) -> int:
    from crawler.cli.main import UsageFailure

    raise UsageFailure("images: not built yet")
