"""``python -m crawler demo``: a bundled site served on 127.0.0.1 (server.py), the sources
that read it (sources.toml), and a guard that keeps every request on that server (guard.py)."""
