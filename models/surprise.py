"""Calibrated rarity of surprises: how often surprises at least this large have begun on this series.

A detector measures a few *surprises* per value (non-negative numbers: a step, a distance from the
baseline, ...). ``SurpriseCalibrator`` turns each into a tail probability learned from the series'
own history, so that the same probability means the same rarity whatever the unit or noise:

- a running 90% quantile ``u`` of each surprise, tracked in the log domain (scale-free);
- the mean excess ``b`` over it: an exponential tail above ``u`` (peaks over threshold), as predicted from the
  ``n`` excesses ``b`` rests on: the Lomax tail ``(1 + x / (n b)) ** -n``, heavier while they are few;
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

A ``signed`` surprise (a distance above or below a baseline) counts the episodes of each side apart: its
tail probability is twice (both sides are tested) the rate of episodes that went as far *on the same side*
(credited with at least 5% of both sides' episodes: a first weekend's quiet days do not make the next busy
day unheard of); beyond anything seen, the exponential tail of both. A series that often jumps up (a busy
hour) but never drops does not find a drop ordinary because of its jumps, nor a jump because of its
drops; on a symmetric series nothing changes.

The rare up-crossings (levels fewer than one value in a hundred reached) of the episodes under way are
remembered, and ``record`` keeps those of an event (from the ones under way when it starts until
``stop_recording``): ``unlearn`` takes them back out of the histogram, so an incident that people confirmed
does not make the next one look ordinary, and ordinary noise around it stays as common as it was.

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
from array import array
from typing import Any

from mypy_extensions import mypyc_attr

from models.pickled import attributes, restore

NB = 32  # histogram levels: half-octaves of z / u
_LOG10E = math.log10(math.e)
_LN10 = math.log(10.0)
_TINY = 1e-12
_HALF_OCTAVE = math.sqrt(2.0)
_LEDGER_MAX = 64  # level ranges an event's record keeps (beyond, an unlearned event is partly remembered)
_MIN_SIDE = 0.05  # share of a signed surprise's episodes a side is credited with at least (an unseen one can happen)
_RARE_RATE = 0.01  # levels reached by fewer than one value in a hundred are what an event's record keeps


def _level(z: float, u: float) -> int:
    """Histogram level (half-octave) of ``z`` above ``u`` (both positive); NB or more beyond the top.

    The difference of logarithms, not the log of the ratio: a huge ``z`` over a small ``u`` overflows.
    """
    r = 2.0 * (math.log2(z) - math.log2(u))
    return int(r) if r < NB else NB


@mypyc_attr(allow_interpreted_subclasses=True)  # unpickled without __init__, as in Python (models.pickled)
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
    signed
        The surprise whose sides are calibrated apart (-1: none); ``learn`` and ``log10ps`` are then told
        which side each value is on (``neg``).
    """

    def __init__(self, n: int, tail_q: float = 0.9, tail_rate: float = 0.005, horizon: float = 2000.0,
                 sustained: tuple[int, ...] = (), signed: int = -1) -> None:
        self.sustained = frozenset(sustained)
        self.signed = signed
        self.nslot = n if signed >= 0 else -1  # histogram slot of the signed surprise's negative side
        slots = n + 1 if signed >= 0 else n
        self.tail_q = tail_q
        self.tail_rate = tail_rate
        self.horizon = horizon
        self.lq = math.log10(1.0 - tail_q)  # log10 p at u
        self.m = 0  # values learned since the scales (re)started
        self.u = [0.0] * n  # running tail_q quantile of each surprise
        self.b = [0.0] * n  # mean excess over it: the exponential tail's scale
        self.hist = [array("d", bytes(8 * NB)) for _ in range(slots)]  # decayed up-crossing counts per level (and side)
        self.above = [-1] * slots  # level each surprise (side) currently sits at (-1: below u)
        self.own = [0.0] * slots  # weight with which the current episode last counted its levels
        self.w = 1.0  # weight of the next count (grows instead of decaying all counts)
        self.tot = 0.0  # decayed count of the values the histogram saw
        self.top: dict[int, float] = {}  # largest surprise that went beyond the top level, where one did
        # weight counted per (slot, first level, last level), rare levels only: by the episodes under way,
        # and by the recorded event (None: nothing recorded)
        self.ongoing: dict[tuple[int, int, int], float] = {}
        self.ledger: dict[tuple[int, int, int], float] | None = None
        self.recording = False

    def __getstate__(self) -> dict[str, Any]:
        return attributes(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickled before ``top`` or the ledger: nothing beyond the top level, nor of an event, is known
        restore(self, state, {"top": {}, "ongoing": {}, "ledger": None, "recording": False, "signed": -1,
                              "nslot": -1})

    def restart(self) -> None:
        """Learn the scales afresh (the histogram is kept): what came before no longer describes them."""
        n = len(self.u)
        self.u = [0.0] * n
        self.b = [0.0] * n
        self.m = 0

    def forget_history(self, keep: float = 0.0) -> None:
        """Keep ``keep`` of the episode history, values and episodes alike (the scales are kept).

        For a history counted against a poorer model (a baseline without its weekly correction): its departures
        were partly the model's, and would otherwise make real ones of that size look ordinary for as long as the
        history remembers them.
        """
        for h in self.hist:
            for j in range(NB):
                h[j] *= keep
        self.tot *= keep
        self.top = {} if keep == 0.0 else self.top

    def forget_episodes(self) -> None:
        """No surprise is within an episode any more (a new series starts from this history)."""
        self.above = [-1] * len(self.above)
        self.own = [0.0] * len(self.own)
        self.ongoing = {}
        self.ledger, self.recording = None, False

    def record(self) -> None:
        """Start keeping the up-crossings of an event: those of the episodes under way, and the ones to come."""
        self.ledger = dict(self.ongoing)
        self.recording = True

    def stop_recording(self) -> None:
        """The event is over: its record is kept (for ``unlearn``) but grows no more."""
        self.recording = False

    def unlearn(self) -> int:
        """Take the recorded event's up-crossings back out of the histogram; how many were taken.

        The values themselves stay counted (the event was seen), only the episodes it started are not:
        surprises as large are as rare as they were before it.

        >>> cal = SurpriseCalibrator(1, horizon=1e9)
        >>> for _ in range(2000):
        ...     cal.learn([1.0], count=True)
        >>> cal.record()
        >>> for z in (10.0, 40.0, 1.0):  # an event: the surprise climbs to 10, then to 40
        ...     cal.learn([z], count=True)
        >>> round(cal.log10ps([40.0])[0], 1)  # once seen, about one in 2000 values
        -3.3
        >>> cal.unlearn(), cal.log10ps([40.0])[0] < -10  # taken back: unheard of again
        (2, True)
        """
        ledger = self.ledger or {}
        for (i, lo, hi), w in ledger.items():
            h = self.hist[i]
            for j in range(lo, hi + 1):
                h[j] = h[j] - w if h[j] > w else 0.0
            self.own[i] = 0.0  # an episode still under way is judged against the others only
            self.ongoing.pop((i, lo, hi), None)
        self.ledger = {} if self.recording else None
        return len(ledger)

    def log10ps(self, z: list[float], with_own: list[float] | None = None, neg: bool = False) -> list[float]:
        """log10 tail probability of each surprise in ``z`` (0 when nothing is learned yet).

        ``with_own``, if given, receives (its items replaced) the same with every ongoing episode counted
        (as if no surprise were ``sustained``). ``neg``: the ``signed`` surprise is on its negative side.
        """
        u, lq, sg = self.u, self.lq, self.signed
        ne = 0.0  # the tail's excesses (at least 1), worked out for the first surprise above its scale: most have none
        out: list[float] = []
        judged: list[tuple[int, float]] | None = None  # sustained surprises judged against the other episodes
        for i, zi in enumerate(z):
            ui = u[i]
            if zi <= ui or ui <= 0.0:  # unremarkable, or nothing learned yet: most values, kept cheap
                out.append(lq if zi > 0.0 and ui > 0.0 else 0.0)
                continue
            if not ne:
                ne = self._excesses()
            bi = self.b[i]
            # the exponential tail, as predicted from ``ne`` excesses: a Lomax tail, heavier while they are few
            lexp = lq - ne * math.log10(1.0 + (zi - ui) / (ne * bi)) if bi > 0.0 else -300.0
            k = self.nslot if neg and i == sg else i  # a signed surprise's episodes on its side
            j = _level(zi, ui)
            if j >= NB and zi < self.top.get(k, 0.0) * _HALF_OCTAVE:  # beyond the histogram, but not beyond what
                j = NB - 1  # reached its top level (to its resolution, a half-octave): counted there
            tot = self.tot
            seen = self.hist[k][j] if j < NB and tot > 0.0 else 0.0
            if i == sg and j < NB and tot > 0.0:  # one side's episodes (a share of both), both sides tested
                both = _MIN_SIDE * (self.hist[i][j] + self.hist[self.nslot][j])
                seen = 2.0 * (seen if seen > both else both)
            if seen > 0.0:
                lseen = math.log10(seen / tot)
                lp = lseen if lseen > lexp else lexp
            else:
                lp = lexp
            out.append(lp)
            if j <= self.above[k] and i in self.sustained:  # judged against the other episodes, not itself
                seen -= self.own[k] * (2.0 if i == sg else 1.0)
                lp = lexp if seen <= 0.0 else math.log10(seen / tot)
                if lexp > lp:
                    lp = lexp
                if judged is None:
                    judged = []
                judged.append((i, lp))
        if with_own is not None:
            with_own[:] = out
        if judged:
            for i, lp in judged:
                out[i] = lp
        return out

    def _excesses(self) -> float:
        """How many excesses the tail's scale ``b`` rests on: those seen, up to the memory of its average.

        The scale is an estimate; averaged over what it might be (a gamma posterior over the rate), the exponential
        tail becomes a Lomax one, ``(1 + x / (n b)) ** -n``: heavier while ``n`` is small, the exponential as it
        grows. A series a few days old does not yet know how far its bursts can go, and its first large one is
        less of a surprise than an exponential fitted on a handful of excesses says.
        """
        n = (1.0 - self.tail_q) * self.m
        cap = 2.0 / self.tail_rate
        return 1.0 if n < 1.0 else (cap if n > cap else n)

    def reach(self, i: int, decades: float) -> float:
        """Size of surprise ``i`` whose tail probability (``log10ps``'s, beyond the histogram) is ``10**-decades``."""
        d = decades + self.lq
        ne = self._excesses()
        return self.u[i] + ne * self.b[i] * (10.0 ** ((0.0 if d < 0.0 else d) / ne) - 1.0)

    def learn(self, z: list[float], count: bool, weight: float = 1.0, neg: bool = False) -> None:
        """Fold in one value's surprises; ``count``: also into the histogram of episodes.

        ``weight``: the value's share of one step of every memory (``tail_rate``, ``horizon``), for
        series sampled faster than the caller's unit of time; probabilities stay per value. ``neg``: the
        ``signed`` surprise is on its negative side.
        """
        self.m = m = self.m + 1
        rate = er = self.tail_rate * weight
        if m * rate < 2.0:  # early on: bigger steps, like a running mean
            rate = 2.0 / m
        q = self.tail_q
        down = math.exp(-rate * (1.0 - q))
        if 1.0 / m > er:
            er = 1.0 / m
        # (what only a surprise above its quantile needs is looked up there: most values have none)
        u, above, w, tiny = self.u, self.above, self.w, _TINY
        sg = ks = self.signed
        if sg >= 0:  # the signed surprise counts in its side's slot; the other side's episode, if any, is over
            other = self.nslot
            if neg:
                ks, other = other, sg
            if above[other] >= 0:
                if self.ongoing:
                    self.ongoing = {key: v for key, v in self.ongoing.items() if key[0] != other}
                above[other] = -1
        for i, zi in enumerate(z):
            k = ks if i == sg else i  # the histogram slot
            ui = u[i]
            if ui <= tiny:
                if zi > tiny:  # below, a surprise is rounding (subnormal steps), not a scale
                    u[i] = zi
                continue
            if zi > ui:
                b = self.b
                b[i] += er * ((zi - ui) - b[i])
                u[i] = ui * math.exp(rate * q)
                j = _level(zi, ui)
                if j >= NB:
                    j = NB - 1
                    if count and zi > self.top.get(k, 0.0):
                        self.top[k] = zi
                if count and j > above[k]:  # count each level once per episode
                    h = self.hist[k]
                    rare = self.tot * _RARE_RATE
                    lo = j + 1  # the lowest level this value counts that was rare (counts fall with the level)
                    for jj in range(j, above[k], -1):
                        if h[jj] >= rare:
                            break
                        lo = jj
                    for jj in range(above[k] + 1, j + 1):
                        h[jj] += w
                    self.own[k] = w
                    if lo <= j:  # only rare levels are worth taking back: the ordinary ones are not the event
                        key = (k, lo, j)
                        self.ongoing[key] = self.ongoing.get(key, 0.0) + w
                        led = self.ledger
                        if self.recording and (key in led or len(led) < _LEDGER_MAX):  # type: ignore[operator,arg-type]
                            led[key] = led.get(key, 0.0) + w  # type: ignore[union-attr,index]
                above[k] = j
            else:
                if above[k] >= 0:  # the episode is over
                    if self.ongoing:
                        self.ongoing = {key: v for key, v in self.ongoing.items() if key[0] != k}
                    above[k] = -1
                ui *= down
                u[i] = ui if ui > tiny else tiny
        if count:  # the histogram and its total count the same values
            self.tot += w
        w /= 1.0 - weight / self.horizon
        if w > 1e12:  # renormalise the lazily decayed counts
            for h in self.hist:
                for jj in range(NB):
                    h[jj] /= w
            self.tot /= w
            own = self.own
            for i in range(len(own)):
                own[i] /= w
            self.ongoing = {k: v / w for k, v in self.ongoing.items()}
            if self.ledger:
                self.ledger = {k: v / w for k, v in self.ledger.items()}
            w = 1.0
        self.w = w
