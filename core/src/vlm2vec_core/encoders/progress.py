"""A tqdm bar that is off when not on a terminal (or when asked)."""

from __future__ import annotations

import sys
import threading
from typing import Any


class Progress:
    """Items done of ``total``; ``update`` may be called from several threads at once."""

    def __init__(self, total: int, show: bool | None) -> None:
        self._lock = threading.Lock()
        if show is None:
            show = total > 64 and sys.stderr.isatty()
        self._bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="item", desc="encoding")

    def __enter__(self) -> Progress:
        return self

    def update(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


class IndexProgress:
    """Drives a tqdm-like ``bar`` (``update``, and ``total``/``refresh``/``set_postfix_str`` when it has them)
    for indexing: the total is set once the items are counted (so the bar shows an ETA), and the rates it
    shows are each kind's items over the seconds those items took (a chunk takes the time from the end of the
    previous one to its own end), not run totals over one file's time. ``bar`` None: nothing is shown."""

    def __init__(self, bar: Any, clock: Any = None) -> None:
        import time

        self.bar = bar
        self._clock = clock or time.perf_counter
        self._last = self._clock()
        self.items: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def set_total(self, total: int) -> None:
        if self.bar is not None and hasattr(self.bar, "total"):
            self.bar.total = total
            if hasattr(self.bar, "refresh"):
                self.bar.refresh()

    def restart_clock(self) -> None:
        """Time from now on (e.g. after counting, or a file skipped as unchanged)."""
        self._last = self._clock()

    def advance(self, n: int, kind: str | None, embedded: int) -> None:
        """``n`` items done (stored, reused or failed), ``embedded`` of them embedded now, all of ``kind``."""
        now = self._clock()
        took, self._last = now - self._last, now
        if kind is not None and embedded:
            self.items[kind] = self.items.get(kind, 0) + embedded
            self.seconds[kind] = self.seconds.get(kind, 0.0) + took
        if self.bar is None:
            return
        self.bar.update(n)
        if hasattr(self.bar, "set_postfix_str") and self.items:
            self.bar.set_postfix_str(self.rates())

    def rates(self) -> str:
        """``12.3 pages/s, 1.5 clips/s``: each kind's items over the seconds they took."""
        return ", ".join(f"{n / max(self.seconds[kind], 1e-9):.1f} {kind}s/s" for kind, n in sorted(self.items.items()))

    def finish(self) -> None:
        """End at 100%: items the count promised but files did not give (bad pages) are not waited for."""
        bar = self.bar
        if bar is not None and hasattr(bar, "n") and getattr(bar, "total", None) not in (None, bar.n):
            bar.total = bar.n
            if hasattr(bar, "refresh"):
                bar.refresh()
