"""The archive folder: its state (SQLite), post files, index, lock and reindex.

:class:`crawler.archive.service.ArchiveService` is the one owner of all of it during a crawl;
everything else reaches the archive through that service.
"""
