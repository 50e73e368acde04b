"""The command line: ``python -m crawler`` (also installed as ``technews``)."""

from crawler.cli.main import main

__all__ = ["main"]
