"""A faster feedparser, same results: its cp1252 pass runs only where it changes something,
the content parameters it copies for every content element are copied without a deep copy
when they hold only strings, and the base URI it joins at every element is joined once.

feedparser maps the C1 controls U+0080-U+009F (windows-1252 bytes read as latin-1) to the
characters cp1252 gives them, with ``output.translate(_cp1252)`` on the text of every element
(``_FeedParserMixin.pop``). ``str.translate`` with a dict looks up every character: on CJK text
that one line was 13% of a feeds crawl (227 us per 1.5k-character body). Here the same line is
recompiled from feedparser's own source with a guard in front (a regular-expression search for
U+0080-U+009F, 11 us), which leaves the result identical: text without those characters is
what ``translate`` would return unchanged. Upstream-style: the one line changes, nothing else.

The same ``pop`` deep-copies ``contentparams`` (type, language, base: strings) for every
content element it stores, ``copy.deepcopy`` through ``__reduce_ex__`` (3% of a worker reading
feeds); :func:`_copy_params` copies such a dict key by key, as the deep copy does, and leaves
anything else to ``copy.deepcopy``.

feedparser also joins the current base URI with the element's (its own ``xml:base``, or the
same base again) at every start tag, ``make_safe_absolute_uri`` (6% of a feeds crawl's thread);
:func:`cache_uri_joins` remembers the joins of short URIs: a pure function of its arguments.

When feedparser's source is not the one expected (another version, no source on disk), it is
left as it is and the crawl is only slower; :func:`guard_cp1252_pass` returns False.
"""

from __future__ import annotations

import ast
import copy
import inspect
import logging
import re
import textwrap
from collections.abc import Callable
from functools import cache, lru_cache, wraps

import feedparser.mixin
import feedparser.urls
import feedparser.util

logger = logging.getLogger(__name__)

_CALL = "output = output.translate(_cp1252)"
_GUARDED = "output = output.translate(_cp1252) if _C1_CONTROLS.search(output) else output"
_C1_CONTROLS = re.compile("[\x80-\x9f]")
_DEEP_COPY = "contentparams = copy.deepcopy(self.contentparams)"
_COPY = "contentparams = _copy_params(self.contentparams)"
# The edits of pop: (feedparser's line, ours, how many times feedparser 6.0 has it).
_POP_EDITS = ((_CALL, _GUARDED, 1), (_DEEP_COPY, _COPY, 3))
_IMMUTABLE = (str, int, float, bool, type(None))


def _copy_params(params: dict[str, object]) -> dict[str, object]:
    """``copy.deepcopy(params)`` for a FeedParserDict of strings: a new one, filled key by
    key through its ``__setitem__`` as the deep copy fills it."""
    if type(params) is not feedparser.util.FeedParserDict or not all(
        type(value) in _IMMUTABLE for value in params.values()
    ):
        return copy.deepcopy(params)
    copied = feedparser.util.FeedParserDict()
    for key, value in params.items():
        copied[key] = value
    return copied


def guard_cp1252_pass() -> bool:
    """Install the faster ``pop`` (once: the guarded cp1252 pass, the shallow copies);
    whether feedparser now runs it."""
    mixin = feedparser.mixin._FeedParserMixin
    if getattr(mixin.pop, "cp1252_guarded", False):
        return True
    try:
        lines, first_line = inspect.getsourcelines(mixin.pop)
        filename = inspect.getsourcefile(mixin.pop) or "<feedparser>"
    except (OSError, TypeError):
        logger.debug("feedparser's source is not on disk: its cp1252 pass stays unguarded")
        return False
    source = textwrap.dedent("".join(lines))
    if any(source.count(line) != count for line, _, count in _POP_EDITS):
        logger.debug("feedparser %s: unexpected pop(); left as it is", feedparser.__version__)
        return False
    for line, ours, _ in _POP_EDITS:
        source = source.replace(line, ours)
    tree = ast.parse(source)
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point at feedparser's own lines
    namespace = {
        **vars(feedparser.mixin), "_C1_CONTROLS": _C1_CONTROLS, "_copy_params": _copy_params
    }  # fmt: skip
    exec(compile(tree, filename, "exec"), namespace)
    guarded = namespace["pop"]
    guarded.cp1252_guarded = True
    mixin.pop = guarded
    return True


# Longer URIs are joined as they come: a hostile feed's megabyte of href is not kept.
CACHED_URI_LENGTH = 2048


def _cached_join(join: Callable[..., str]) -> Callable[..., str]:
    remembered = lru_cache(maxsize=1024)(join)

    @wraps(join)
    def cached(base: str, rel: str | None = None) -> str:
        if len(base or "") + len(rel or "") > CACHED_URI_LENGTH or not isinstance(rel, str | None):
            return join(base, rel)
        # The schemes feedparser accepts are a module tuple; a new one is a new key.
        return remembered(base, rel, _schemes=id(feedparser.urls.ACCEPTABLE_URI_SCHEMES))

    cached.uri_joins_cached = True  # type: ignore[attr-defined]
    return cached


def cache_uri_joins() -> None:
    """feedparser's element-by-element URI joins remembered (once; idempotent)."""
    mixin = feedparser.mixin
    if getattr(mixin.make_safe_absolute_uri, "uri_joins_cached", False):
        return
    mixin.make_safe_absolute_uri = _cached_join(_safe_absolute)
    mixin._urljoin = _cached_join(_join)


def _safe_absolute(base: str, rel: str | None, _schemes: int = 0) -> str:
    return feedparser.urls.make_safe_absolute_uri(base, rel)


def _join(base: str, rel: str | None, _schemes: int = 0) -> str:
    return feedparser.urls._urljoin(base, rel)


@cache
def install_speedups() -> None:
    """Both speed-ups, once a process: at the first feed parsed, not at start-up (the
    recompiled ``pop`` costs 15-20 ms, and most crawls parse no feed)."""
    guard_cp1252_pass()
    cache_uri_joins()
