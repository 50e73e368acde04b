"""Hostile text through the cleaning steps: seconds per input size, to show the work is linear
(doubling the input about doubles the time). Usage: ``python bench/bench_hostile.py``."""

from __future__ import annotations

import time
from collections.abc import Callable

from crawler.post.cleaning import clean_body, clean_title, encode_for_post

CASES: dict[str, Callable[[int], str]] = {
    "unclosed tags '<a<a<a…'": lambda n: "<a" * (n // 2),
    "lone '<' runs": lambda n: "<" * n,
    "entities '&amp;…'": lambda n: "&amp;" * (n // 5),
    "blank lines": lambda n: "<p>a</p>\n \n" * (n // 11),
    "nested divs": lambda n: "<div>" * (n // 11) + "x" + "</div>" * (n // 11),
}
STEPS: dict[str, Callable[[str], object]] = {
    "clean_title": clean_title,
    "clean_body": lambda text: clean_body(text, "https://example.com/"),
    "encode_for_post": encode_for_post,
}


def timed(step: Callable[[str], object], text: str) -> float:
    began = time.perf_counter()
    step(text)
    return time.perf_counter() - began


def main() -> None:
    sizes = (250_000, 500_000, 1_000_000)
    print(f"{'input':<26} {'step':<16} " + " ".join(f"{size // 1000:>7} KB" for size in sizes))
    for case, make in CASES.items():
        for name, step in STEPS.items():
            times = [timed(step, make(size)) for size in sizes]
            print(f"{case:<26} {name:<16} " + " ".join(f"{t:>8.3f}s" for t in times))


if __name__ == "__main__":
    main()
