"""Calibrated rarity of surprises: how often surprises at least this large have begun on this series.

A detector measures a few *surprises* per value (non-negative numbers: a step, a distance from the
baseline, ...). ``SurpriseCalibrator`` turns each into a tail probability learned from the series'
own history, so that the same probability means the same rarity whatever the unit or noise:

- a running 90% quantile ``u`` of each surprise, tracked in the log domain (scale-free);
- the mean excess ``b`` over it: an exponential tail above ``u`` (peaks over threshold);
- a histogram of up-crossings in half-octaves of ``z / u`` (up to ``2**16`` times ``u``, for spiky
  series), whose counts decay with a ``horizon`` of values: an episode counts once, at each level it
  reaches, however long it lasts.

The tail probability of ``z`` is the rate at which surprises at least that large have *started*
lately or, beyond anything seen, the exponential tail. A surprise beyond the histogram's top level
that is no larger (to a half-octave) than the largest one seen there is counted at the top level: a
series whose bursts dwarf its usual noise by more than ``2**16`` does not find each burst unheard of.
For a ``sustained`` surprise (a short moving average of a departure: an outage), an episode still
under way is judged against the *other* episodes: its own up-crossing, counted on its first values
(while it was still small), would otherwise make its continuation look ordinary, at a rate of one in
however few values the history holds.

>>> import random
>>> rng = random.Random(0)
>>> cal = SurpriseCalibrator(1)
>>> for _ in range(3000):
...     cal.learn([abs(rng.gauss(0, 1))], count=True)
>>> 1.4 < cal.u[0] < 1.9  # about the 90% quantile of |N(0, 1)|, 1.64
True
>>> cal.log10ps([1.0]), cal.log10ps([6.0])[0] < -5  # below u: p is 1/10 at most; 6 sigma: rare
([-1.0], True)
"""

from __future__ import annotations

import math

NB = 32  # histogram levels: half-octaves of z / u
_LOG10E = math.log10(math.e)
_LN10 = math.log(10.0)
_TINY = 1e-12
_HALF_OCTAVE = math.sqrt(2.0)


def _level(z: float, u: float) -> int:
    """Histogram level (half-octave) of ``z`` above ``u`` (both positive); NB or more beyond the top.

    The difference of logarithms, not the log of the ratio: a huge ``z`` over a small ``u`` overflows.
    """
    r = 2.0 * (math.log2(z) - math.log2(u))
    return int(r) if r < NB else NB


class SurpriseCalibrator:
    """Tail probabilities of ``n`` surprise measures, learned online (see the module docstring).

    Parameters
    ----------
    n
        Number of surprise measures, passed together as a list to ``learn`` and ``log10ps``.
    tail_q
        Quantile above which the tail is modelled.
    tail_rate
        Step of the quantile tracking (its memory is about ``1 / tail_rate`` values).
    horizon
        Memory, in values, of the up-crossing counts.
    sustained
        Surprises whose ongoing episode is judged against the other episodes only: the levels it has
        already reached are not made ordinary by its own count (see the module docstring).
    """

    def __init__(self, n: int, tail_q: float = 0.9, tail_rate: float = 0.005, horizon: float = 2000.0,
                 sustained: tuple[int, ...] = ()) -> None:
        self.sustained = frozenset(sustained)
        self.tail_q = tail_q
        self.tail_rate = tail_rate
        self.horizon = horizon
        self.lq = math.log10(1.0 - tail_q)  # log10 p at u
        self.m = 0  # values learned since the scales (re)started
        self.u = [0.0] * n  # running tail_q quantile of each surprise
        self.b = [0.0] * n  # mean excess over it: the exponential tail's scale
        self.hist = [[0.0] * NB for _ in range(n)]  # decayed up-crossing counts per level
        self.above = [-1] * n  # level each surprise currently sits at (-1: below u)
        self.own = [0.0] * n  # weight with which the current episode last counted its levels
        self.w = 1.0  # weight of the next count (grows instead of decaying all counts)
        self.tot = 0.0  # decayed count of the values the histogram saw
        self.top: dict[int, float] = {}  # largest surprise that went beyond the top level, where one did

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "top" not in state:  # pickled before ``top``: no surprise beyond the top level is known
            self.top = {}

    def restart(self) -> None:
        """Learn the scales afresh (the histogram is kept): what came before no longer describes them."""
        n = len(self.u)
        self.u = [0.0] * n
        self.b = [0.0] * n
        self.m = 0

    def forget_episodes(self) -> None:
        """No surprise is within an episode any more (a new series starts from this history)."""
        self.above = [-1] * len(self.above)

    def log10ps(self, z: list[float], with_own: list[float] | None = None) -> list[float]:
        """log10 tail probability of each surprise in ``z`` (0 when nothing is learned yet).

        ``with_own``, if given, receives the same with every ongoing episode counted (as if no
        surprise were ``sustained``).
        """
        u, b, hist, tot, lq, above, own = self.u, self.b, self.hist, self.tot, self.lq, self.above, self.own
        out = []
        if with_own is None:
            with_own = [0.0] * len(z)
        for i, zi in enumerate(z):
            ui = u[i]
            if zi <= ui or ui <= 0.0:  # unremarkable, or nothing learned yet
                with_own[i] = lp = lq if zi > 0.0 and ui > 0.0 else 0.0
                out.append(lp)
                continue
            bi = b[i]
            lexp = lq - (zi - ui) / bi * _LOG10E if bi > 0.0 else -300.0
            j = _level(zi, ui)
            if j >= NB and zi < self.top.get(i, 0.0) * _HALF_OCTAVE:  # beyond the histogram, but not beyond what
                j = NB - 1  # reached its top level (to its resolution, a half-octave): counted there
            seen = hist[i][j] if j < NB and tot > 0.0 else 0.0
            if seen > 0.0:
                lseen = math.log10(seen / tot)
                lp = lseen if lseen > lexp else lexp
            else:
                lp = lexp
            with_own[i] = lp
            if j <= above[i] and i in self.sustained:  # judged against the other episodes, not itself
                seen -= own[i]
                lp = lexp if seen <= 0.0 else max(math.log10(seen / tot), lexp)
            out.append(lp)
        return out

    def reach(self, i: int, decades: float) -> float:
        """Size of surprise ``i`` whose exponential-tail probability is ``10**-decades``."""
        return self.u[i] + self.b[i] * max(decades + self.lq, 0.0) * _LN10

    def learn(self, z: list[float], count: bool, weight: float = 1.0) -> None:
        """Fold in one value's surprises; ``count``: also into the histogram of episodes.

        ``weight``: the value's share of one step of every memory (``tail_rate``, ``horizon``), for
        series sampled faster than the caller's unit of time; probabilities stay per value.
        """
        self.m = m = self.m + 1
        rate = self.tail_rate * weight
        if m * rate < 2.0:  # early on: bigger steps, like a running mean
            rate = 2.0 / m
        q = self.tail_q
        up, down = math.exp(rate * q), math.exp(-rate * (1.0 - q))
        er = max(self.tail_rate * weight, 1.0 / m)
        u, b, hist, above, own, w = self.u, self.b, self.hist, self.above, self.own, self.w
        for i, zi in enumerate(z):
            ui = u[i]
            if ui <= _TINY:
                if zi > _TINY:  # below, a surprise is rounding (subnormal steps), not a scale
                    u[i] = zi
                continue
            if zi > ui:
                b[i] += er * ((zi - ui) - b[i])
                u[i] = ui * up
                j = _level(zi, ui)
                if j >= NB:
                    j = NB - 1
                    if count and zi > self.top.get(i, 0.0):
                        self.top[i] = zi
                if count and j > above[i]:  # count each level once per episode
                    h = hist[i]
                    for jj in range(above[i] + 1, j + 1):
                        h[jj] += w
                    own[i] = w
                above[i] = j
            else:
                above[i] = -1
                u[i] = ui * down if ui * down > _TINY else _TINY
        if count:  # the histogram and its total count the same values
            self.tot += w
        w /= 1.0 - weight / self.horizon
        if w > 1e12:  # renormalise the lazily decayed counts
            for h in hist:
                for jj in range(NB):
                    h[jj] /= w
            self.tot /= w
            for i in range(len(own)):
                own[i] /= w
            w = 1.0
        self.w = w
