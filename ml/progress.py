"""Progress lines for long loops whose steps are slow: at most one every ``every_s`` seconds,
plus the first and the last step, each with its rate and the time left.

Why not a fixed step interval: on 2 CPU cores one step of the report writer takes 5-15 s and one
epoch of the dense head 3-4 s, so "every 20 steps" left a first run's log silent for four
minutes at a time, and a reader could not tell a slow machine from a hung one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from tqdm import tqdm


def format_seconds(seconds: float) -> str:
    """``75.4`` -> ``"01:15"``, ``3725`` -> ``"1:02:05"`` (tqdm's format, as the bars beside these
    lines show it; negatives as 0); ``"?"`` when not finite (no step done yet: no pace to
    extrapolate)."""
    if not math.isfinite(seconds):
        return "?"
    return str(tqdm.format_interval(max(0.0, seconds)))


class ProgressLog:
    """Logs ``what: done/total unit (rate, time left) detail`` through ``logger`` at INFO.

    ``update(done, detail)`` is called after every step; it writes a line for the first step,
    the last one, every ``every_steps``-th one (0: none) and whenever ``every_s`` seconds have
    passed since the last line. ``clock`` is injectable for tests."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int,
        unit: str = "steps",
        every_s: float = 30.0,
        every_steps: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.logger, self.what, self.total, self.unit = logger, what, total, unit
        self.every_s, self.every_steps, self.clock = every_s, every_steps, clock
        self.start = self.last = clock()
        self.lines = 0

    def update(self, done: int, detail: str = "") -> bool:
        """Record that ``done`` of ``total`` steps are done; True when a line was written."""
        now = self.clock()
        due = (
            done in (1, self.total)
            or (self.every_steps > 0 and done % self.every_steps == 0)
            or now - self.last >= self.every_s
        )
        if not due:
            return False
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else float("inf")
        left = (self.total - done) / rate if rate > 0 else float("inf")
        one = self.unit[:-1] if self.unit.endswith("s") else self.unit
        if done <= 0:
            pace = f"started {format_seconds(elapsed)} ago"
        else:
            pace = f"{rate:.2f} {self.unit}/s" if rate >= 1 else f"{elapsed / done:.1f} s/{one}"
        tail = f" {detail}" if detail else ""
        self.logger.info(
            "%s: %d/%d %s (%s, %s left)%s", self.what, done, self.total, self.unit, pace, format_seconds(left), tail
        )
        self.last = now
        self.lines += 1
        return True
