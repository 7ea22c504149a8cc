"""Progress that shows everywhere: a tqdm bar on a terminal, a plain line every few seconds
otherwise (tqdm is silent under `dvc repro`, whose stdout and stderr are not terminals).

The clock here only paces log lines; nothing it reads reaches an output.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

PLAIN_EVERY_S = 5.0


class PlainProgress:
    """The subset of tqdm's interface the stages use, printing `desc: n/total unit (p%) last`
    at most every `every_s` seconds, and once at the end."""

    def __init__(self, total: int, desc: str, unit: str, *, every_s: float = PLAIN_EVERY_S,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.n = 0
        self.postfix = ""
        self._last = clock()
        self._printed_at = -1

    def line(self) -> str:
        pct = 100.0 * self.n / self.total if self.total else 100.0
        tail = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%){tail}"

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._printed_at = self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._print()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if self._printed_at != self.n:
            self._print()


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None, *, stream: TextIO | None = None):
    """A tqdm bar when `stream` (default stderr) is a terminal, else a `PlainProgress`; None when
    `enabled` is False or there is nothing to do. `enabled=True` forces tqdm."""
    stream = stream if stream is not None else sys.stderr
    if enabled is False or total == 0:
        return None
    if enabled or stream.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return PlainProgress(total, desc, unit, stream=stream)


def track(items: Iterable[T], total: int, desc: str, unit: str, enabled: bool | None = None) -> Iterator[T]:
    """`items`, ticking a `progress_bar` after each one (whatever the loop body does)."""
    bar = progress_bar(total, desc, unit, enabled)
    try:
        for item in items:
            yield item
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
