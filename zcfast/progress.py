"""Progress reporting that reads well both in a terminal and in a log file.

On a terminal, a tqdm bar redraws one line in place. Redirected to a file, every redraw would
be a line of its own, and tqdm's closing redraw repeats the last one; there, zcfast writes plain
lines instead: a first one, then one per tenth of the work or per minute (whichever comes
first), and the last one exactly once.
"""

from __future__ import annotations

import sys
import time


def _isatty(f) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """tqdm's ``update``/``close`` interface, writing whole lines (for logs)."""

    def __init__(self, total: int, initial: int = 0, unit: str = "it", desc: str = "",
                 file=None, every_s: float = 60.0, every_frac: float = 0.1):
        self.total, self.n, self.unit, self.desc = int(total), int(initial), unit, desc
        self.file = file if file is not None else sys.stderr
        self.every_s, self.step = every_s, max(1, int(total * every_frac))
        self.t0 = time.perf_counter()
        self.start_n = self.n
        self.closed = False
        self._last_t, self._last_n = self.t0, None
        self._emit()

    def _emit(self) -> None:
        done = self.n - self.start_n
        dt = time.perf_counter() - self.t0
        pct = 100.0 * self.n / self.total if self.total else 100.0
        line = f"{self.desc}: {self.n}/{self.total} {self.unit}s ({pct:.0f}%)"
        if done > 0:
            rate = dt / done
            left = (self.total - self.n) * rate
            line += f", {rate:.2f} s/{self.unit}, {dt:.0f} s elapsed"
            if self.n < self.total:
                line += f", about {left:.0f} s left"
        print(line, file=self.file, flush=True)
        self._last_t, self._last_n = time.perf_counter(), self.n

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if (self.n - self._last_n >= self.step or time.perf_counter() - self._last_t >= self.every_s
                or self.n >= self.total):
            self._emit()

    def close(self) -> None:
        if not self.closed and self._last_n != self.n:
            self._emit()
        self.closed = True


def progress_bar(total: int, initial: int = 0, unit: str = "it", desc: str = "", file=None):
    """A tqdm bar on a terminal, :class:`LogProgress` lines elsewhere."""
    f = file if file is not None else sys.stderr
    if _isatty(f):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, file=f)
    return LogProgress(total, initial, unit=unit, desc=desc, file=f)
