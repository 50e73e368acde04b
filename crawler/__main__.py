"""``python -m crawler harvest|reindex``: see crawler/cli.py."""

from crawler.cli import main

raise SystemExit(main())
