"""Silence detection: a series that stops reporting is an anomaly no value-based detector sees.

``SilenceWatch`` learns a series' cadence online from inter-arrival times and says when the gap
since the last value is far longer than usual. Time is always passed in (epoch seconds), so the
stream can ask from a timer and tests can ask with any clock.

>>> w = SilenceWatch()
>>> for i in range(20):
...     w.observe(60.0 * i)
>>> w.is_silent(now=60.0 * 19 + 90)
False
>>> w.is_silent(now=60.0 * 19 + 600)
True
"""

from __future__ import annotations

import math


class SilenceWatch:
    """Expected cadence learned from inter-arrival times; silent when a gap exceeds ``factor`` of it.

    Parameters
    ----------
    factor
        A gap longer than ``factor`` times the usual one is silence.
    alpha
        Learning rate of the cadence (an EWMA of log gaps: a geometric mean, robust to bursts).
    min_gaps
        Gaps to see before judging; until then nothing is silent.
    """

    # (a worker keeps one per device decoded while the device sleeps: no instance dict, ~0.1 KiB less each)
    __slots__ = ("factor", "alpha", "min_gaps", "last", "log_gap", "gaps")

    def __init__(self, factor: float = 5.0, alpha: float = 0.05, min_gaps: int = 5) -> None:
        if factor <= 1.0:
            raise ValueError("factor must be > 1")
        self.factor = factor
        self.alpha = alpha
        self.min_gaps = min_gaps
        self.last: float | None = None
        self.log_gap = 0.0
        self.gaps = 0

    def __setstate__(self, state: dict[str, float | int | None] | tuple[None, dict[str, float | int | None]]) -> None:
        # (None, slots) as pickled now; a dict as pickled before the slots
        for name, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, name, value)

    @property
    def cadence(self) -> float | None:
        """Usual gap between values in seconds, once learned."""
        return math.exp(self.log_gap) if self.gaps else None

    def observe(self, t: float) -> None:
        """Record a value arriving at ``t``."""
        last = self.last
        if last is not None and t > last:
            gap = t - last
            if self.gaps:
                # an outage must not teach us that outages are normal: cap its weight. (Conditional expressions, the
                # same as min() and max() here: those builtins parse keyword arguments on every call, once per reading.)
                cap = self.factor * math.exp(self.log_gap)
                lg = math.log(cap if cap < gap else gap)
                a = 1.0 / (self.gaps + 1)
                if not a > self.alpha:
                    a = self.alpha
                self.log_gap += a * (lg - self.log_gap)
            else:
                self.log_gap = math.log(gap)
            self.gaps += 1
        if last is None or t > last:
            self.last = t

    def overdue(self, now: float) -> float:
        """Time since the last value in units of the usual gap (0 until the cadence is known)."""
        if self.last is None or not self.gaps:
            return 0.0
        return max(0.0, now - self.last) / math.exp(self.log_gap)

    def is_silent(self, now: float) -> bool:
        """True when the series should have reported by ``now`` and has not."""
        return self.gaps >= self.min_gaps and self.overdue(now) > self.factor
