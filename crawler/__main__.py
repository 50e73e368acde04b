"""``python -m crawler harvest|reindex|status``: see crawler/cli/main.py."""

from crawler.cli import main

raise SystemExit(main())
