"""Records: a value beyond everything its series did over the last week.

"Vibration at its highest in a week, by a wide margin" needs no model of the series to be news, and the
other surprises can miss it: they judge a value against a baseline that adapts and against a history of
departures from it. On a series whose baseline follows its swings, or whose departures are often large, a
value the series has not reached all week can still look ordinary to them.

``RecordRange`` keeps the highest and lowest value of each of the last ``blocks`` spans of ``span / blocks``
seconds (of 100 values, without timestamps): a bounded state whatever the sampling rate. A value beyond that
range by more than ``margin`` of its width is a record. The chance that the latest of ``n`` exchangeable values
is the largest or the smallest is ``2 / n``; beyond the range by a share ``m`` of its width it is ``n ** -m``
times that again under an exponential tail (the largest of ``n`` such values sits about ``ln n`` scales up, and
so does the range), the tail the surprise calibrator assumes beyond what it has seen. A record over a week of
five-minute data (2016 values) is then about one in 2 200; over a week of hourly data, one in 140, which is
nothing to alert on by itself.

>>> rec = RecordRange()
>>> for i in range(7 * 288):  # a week of five-minute readings between 10 and 20
...     rec.learn(10.0 + i % 11, t=300.0 * i)
>>> rec.log10p(20.5), rec.log10p(9.5)  # within a tenth of the range: no record
(0.0, 0.0)
>>> round(rec.log10p(25.0), 2), rec.log10p(25.0) == rec.log10p(-5.0)
(-3.33, True)
"""

from __future__ import annotations

import math

from mypy_extensions import mypyc_attr

# Eight days in half-day blocks: the oldest drops out whole, so the range spans 7.5 to 8 days and last Saturday's
# peak is still in it on Saturday. (Blocks of 6 or 24 hours score the same on NAB; these pickle to under 500 bytes.)
SPAN = 8 * 86400.0
BLOCKS = 16
MARGIN = 0.1
_VALUES_PER_BLOCK = 100  # without timestamps


@mypyc_attr(allow_interpreted_subclasses=True)  # unpickled without __init__, as in Python (models.pickled)
class RecordRange:
    """Highest and lowest values over about the last ``span`` seconds; see the module docstring."""

    def __init__(self, span: float = SPAN, blocks: int = BLOCKS, margin: float = MARGIN) -> None:
        self.block_s = span / blocks
        self.blocks = blocks
        self.margin = margin
        self.his: list[float] = []  # highest, lowest and count of values of each completed block, oldest first
        self.los: list[float] = []
        self.ns: list[int] = []
        self.hi = -math.inf  # over the completed blocks (worked out once per block, not per value)
        self.lo = math.inf
        self.n_done = 0
        self.cur_hi = -math.inf  # the block being filled
        self.cur_lo = math.inf
        self.cur_n = 0
        self.cur_t: float | None = None  # its start
        self.up = math.inf  # beyond these, a value is a record (kept up to date: most values are checked only)
        self.down = -math.inf

    def log10p(self, x: float) -> float:
        """log10 of the chance of a record as far beyond the range as ``x`` (0 when ``x`` is none)."""
        if self.down <= x <= self.up:
            return 0.0
        n = self.n_done + self.cur_n + 1
        return math.log10(2.0 / n) - self.margin * math.log10(n)

    def is_high(self, x: float) -> bool:
        """Whether a record ``x`` is a high one (above the range) rather than a low one."""
        return x > self.up

    def _bounds(self) -> None:
        hi = self.hi if self.hi > self.cur_hi else self.cur_hi
        lo = self.lo if self.lo < self.cur_lo else self.cur_lo
        slack = self.margin * (hi - lo)
        if slack > 0.0:
            self.up, self.down = hi + slack, lo - slack
        else:  # one value, or a flat line: no range to be beyond yet
            self.up, self.down = math.inf, -math.inf

    def learn(self, x: float, t: float | None = None) -> None:
        """Fold ``x`` (at ``t``, epoch seconds) into the range."""
        if t is None:
            full = self.cur_n >= _VALUES_PER_BLOCK
        elif self.cur_t is None:
            self.cur_t, full = t, False
        else:
            full = t - self.cur_t >= self.block_s
        if full:
            self.his.append(self.cur_hi)
            self.los.append(self.cur_lo)
            self.ns.append(self.cur_n)
            if len(self.his) >= self.blocks:  # with the block being filled, ``blocks`` in all
                del self.his[0], self.los[0], self.ns[0]
            self.hi, self.lo, self.n_done = max(self.his), min(self.los), sum(self.ns)
            self.cur_hi, self.cur_lo, self.cur_n, self.cur_t = x, x, 1, t
            self._bounds()
            return
        self.cur_n += 1
        grew = False
        if x > self.cur_hi:
            self.cur_hi, grew = x, True
        if x < self.cur_lo:
            self.cur_lo, grew = x, True
        if grew and (x > self.hi or x < self.lo):  # beyond the completed blocks: the range itself grew
            self._bounds()
