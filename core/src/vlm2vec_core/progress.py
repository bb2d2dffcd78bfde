"""A tqdm bar that is off when not on a terminal (or when asked)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, total: int, show: bool | None) -> None:
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
            self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
