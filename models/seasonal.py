"""Seasonal baseline of one series: a robust level, a time-of-day profile and a weekly correction.

``SeasonalBaseline`` predicts a value as ``level + lam * profile[time of day] + mu * week[hour of week]``:

- the level is an EWMA of the deseasonalised value;
- the profile has one bin per sampling interval (at most ``max_bins`` per ``period``). The first period
  is kept raw (the mean of each bin's values), then smoothed by a median of three neighbouring bins;
  later periods move each bin by ``season_gamma`` per period. So that a one-off event of the first
  day does not come back as "expected" every day, a bump of the first day that the next two days
  contradict is removed at once. A bin the first period did not see (the shift's hours of a machine
  first seen on a Saturday) takes the mean of its own first period's worth of values when they come
  (``forming``: the caller does not judge them), as the first period's bins did;
- the weekly correction (when ``week`` is set, from the second period on) is what the daily profile
  leaves, by hour of the week: tills on Sundays, taxis on holidays. Its first week is kept raw, then
  smoothed, like the profile;
- ``lam`` and ``mu`` are how much of the profile and of the weekly correction recur: regressions of
  what the level leaves on them, out of sample (each is learned before it is used). A profile of noise
  (a series without a daily cycle) shrinks towards 0 instead of adding its noise to every prediction;
  the weekly correction starts at 0 and must earn its place.

Learning is robust: the caller passes a clip (the residual's scale times a factor) and each update is
winsorised at it, so an outlier moves the baseline no more than an ordinary large value. Values the
caller finds rare (an episode, see ``models.anomaly``) do not move the level at all, and the profile
only at its steady rate: an outage is not learned, what recurs at the same time each day still is.

>>> import math
>>> base = SeasonalBaseline(week=None)
>>> base.start(20.0, 0.0)
>>> for i in range(1, 288 * 3):  # three days of 5-minute readings: 20 +/- 5 over the day
...     _ = base.learn(20 + 5 * math.sin(2 * math.pi * i / 288), 300.0 * i, 300.0 * (i - 1), i, math.inf)
>>> base.bins, round(base.expected(300.0 * 72), 1), round(base.expected(300.0 * 216), 1)
(288, 25.0, 15.0)
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from mypy_extensions import mypyc_attr

from models.pickled import attributes, restore

_SMOOTHED = 0.45  # variance of a median of three noisy bins, relative to one bin's
_CONFIRM = 3  # periods after the first one in which a contradicted first-day bump is removed


def _median3(a: float, b: float, c: float) -> float:
    """Median of the seen values among three (nan: not seen); nan if none was."""
    seen = sorted(v for v in (a, b, c) if v == v)
    if not seen:
        return math.nan
    return seen[1] if len(seen) == 3 else sum(seen) / len(seen)


def _floats(values: Iterable[float] = ()) -> array[float]:
    """Doubles in one block (8 bytes each, where a list holds a 24-byte object per value)."""
    return array("d", values)


def _shape(values: Iterable[float] = ()) -> array[float]:
    """A formed profile, correction or deviation: single precision (4 bytes a value).

    These are zero-mean shapes around the level, not raw values: float32's seven digits lie far below
    their noise, and they are most of what a series keeps and changelogs. A first period's raw bin means
    include the level (a meter reading of 10**9 would lose its units) and stay in doubles.
    """
    return array("f", values)


def _counts(values: Iterable[int] = ()) -> array[int]:
    """Counts and day numbers in one block."""
    return array("i", values)


def _smooth(raw: Sequence[float]) -> tuple[list[float], float]:
    """Circular median of three neighbouring bins: its zero-mean shape and its mean (nan: no value)."""
    nb = len(raw)
    med = [_median3(raw[k - 1], raw[k], raw[(k + 1) % nb]) for k in range(nb)]
    seen = [v for v in med if v == v]
    mean = sum(seen) / len(seen) if seen else math.nan
    return [v - mean if v == v else 0.0 for v in med], mean


def _clip(r: float, c: float) -> float:
    """``r`` winsorised at +-``c``."""
    return -c if r < -c else (c if r > c else r)


@mypyc_attr(allow_interpreted_subclasses=True)  # unpickled without __init__, as in Python (models.pickled)
class SeasonalBaseline:
    """Level, time-of-day profile and weekly correction of one series (see the module docstring).

    Parameters
    ----------
    period
        Length of the profile's cycle in seconds (a day); ``None``: a level only.
    max_bins
        Cap on profile bins; otherwise one bin per sampling interval (fixed at the second value).
    slow_alpha
        Learning rate of the level (a running mean at first).
    season_gamma
        Share of a new period's (or week's) values in the profile (and the weekly correction).
    week
        Length of the weekly correction's cycle in seconds (a whole number of periods); ``None``: none.
    """

    def __init__(self, period: float | None = 86400.0, max_bins: int = 288, slow_alpha: float = 0.01,
                 season_gamma: float = 0.1, week: float | None = 7 * 86400.0) -> None:
        self.period = period
        self.max_bins = max_bins
        self.slow_alpha = slow_alpha
        self.season_gamma = season_gamma
        self.week_s = week if period and week and week > period and (week / period).is_integer() else None
        self.t_first = 0.0  # time of the first value (-inf: started from another series' history)
        self.slow = 0.0  # deseasonalised level
        self.dt = 0.0  # mean sampling interval in seconds (0: not known yet)
        self.bins = 0  # profile bins, fixed at the second timestamped value
        self.ready = False  # first period complete: the profile is in use
        # Profiles are arrays, not lists of float objects: doubles while the first period's raw means are kept,
        # then single precision once formed (_shape).
        self.season: array[float] = _floats()
        self.season_n: array[int] = _counts()  # values per bin in the first period (then empty)
        # bins the first period did not see (a shut day's hours; bit k: bin k), and the values those begun have had
        # since: they take the mean of their first period's worth of values, as the first period's bins did (see
        # _learn_unseen). A bitmask: a store's closed hours are never seen, and stay in every state it pickles.
        self.unseen = 0
        self.unseen_n: dict[int, int] = {}
        self.season_sum = 0.0  # kept so the profile is used with zero mean (the level stays in `slow`)
        self.per_bin = 1.0  # values per bin per period, counted over the first one
        self.x_prev = math.nan  # previous value in the first period
        self.noise = 0.0  # first period: sum, then mean, of half the squared steps (the noise variance)
        self.noise_n = 0
        self.lam = 1.0  # share of the profile in the prediction
        self.cov_ps = 0.0
        self.var_ps = 0.0
        self.dev: array[float] = _floats()  # last deviation beyond the clip at each bin, and its period
        self.dev_day: array[int] = _counts()
        self.young_until = 0  # last period in which a deviation may still correct the profile
        self.week: array[float] = _floats()  # weekly correction, from the second period
        self.week_n: array[int] = _counts()  # values per bin in its first week (then empty)
        self.week_sum = 0.0
        self.week_t0 = 0.0
        self.mu = 0.0  # share of the weekly correction in the prediction
        self.shut: array[float] = _floats()  # shut-day correction per hour (see shut_at), from the first shut day
        self.shut_n: array[int] = _counts()
        self.cov_pw = 0.0
        self.var_pw = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return attributes(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # states pickled before the shut-day correction existed load with none learned yet
        restore(self, state, {"shut": _floats(), "shut_n": _counts(), "dt": 0.0, "unseen": 0, "unseen_n": {}})

    def locate(self, t: float | None) -> tuple[int, float, int, float]:
        """Profile bin of ``t`` and its zero-mean value, weekly bin and value (bins -1 and 0.0: none)."""
        nb = self.bins
        if t is None or not nb:
            return -1, 0.0, -1, 0.0
        p = self.period
        # bins start on the clock (19:55, 20:00, ...): opening hours, shifts and jobs change on the hour,
        # and a bin straddling 20:00 would expect half of each side at closing time every day. (floor, the same
        # as int() for these non-negative values, is the cheaper call in this per-value path)
        k = math.floor((t % p) * nb / p + 1e-6)  # type: ignore[operator]
        if k >= nb:
            k -= nb
        s = self.season[k] - self.season_sum / nb if self.ready else 0.0
        nw = len(self.week)
        if not nw:
            return k, s, -1, 0.0
        wp = self.week_s
        kw = math.floor((t % wp) * nw / wp)  # type: ignore[operator]
        if kw >= nw:
            kw -= nw
        return k, s, kw, (self.week[kw] - self.week_sum / nw if not self.week_n else 0.0)

    def expected(self, t: float | None) -> float:
        """The baseline's prediction at time ``t``."""
        _, s, _, wv = self.locate(t)
        return self.slow + self.lam * s + self.mu * wv

    def start(self, x: float, t: float | None, fresh: bool = True) -> None:
        """Start the level at ``x`` (the profile is kept); ``fresh``: the series' first value ever."""
        _, s, _, wv = self.locate(t)
        self.slow = x - self.lam * s - self.mu * wv
        self.t_first = (t if t is not None else 0.0) if fresh else -math.inf

    def learn(self, x: float, t: float | None, t_prev: float | None, n: int, clip: float,
              where: tuple[int, float, int, float] | None = None, held: bool = False,
              shut: tuple[int, float] | None = None, weight: float = 1.0) -> bool:
        """Fold in value ``x`` at ``t`` (``n``: values seen so far, ``t_prev``: time of the previous one).

        Residuals are winsorised at ``clip``; ``where`` is ``locate(t)`` when the caller has it.
        ``held``: the caller finds the value rare (an episode): the level does not move, the profile
        and weekly correction move at their steady rate only, so that what recurs at the same time
        every day or week is still adopted, slowly, while a one-off episode barely registers.
        ``shut``: ``shut_at(t)`` for a value of a shut day, when ``where`` is the closing time it is judged
        like: it teaches the shut-day correction instead of the profile (see ``shut_at``).
        ``weight``: the value's share of one step of the level's learning rate (a value of a series sampled
        faster than its caller's tick counts for less, so the level's memory is a time, not a count).
        Returns True when this value completed the first period (the profile has just been formed:
        deseasonalised values change).
        """
        if t is not None and t_prev is not None and t >= t_prev:
            step = t - t_prev
            dt = self.dt
            if not dt:
                self.dt = step
            elif step != dt:  # (a steady interval leaves it as it is)
                self.dt = dt + (step - dt) / (n if n < 100 else 100)
        if held:
            if self.ready and t is not None and shut is None:
                self._learn_held(x, t, self.locate(t) if where is None else where, clip)
            return False
        p = self.period
        if not self.bins and t is not None and p and t_prev is not None and t > t_prev:
            # one bin per sampling interval (capped); too coarse to resolve a period: no profile
            nb = min(self.max_bins, round(p / (t - t_prev)))
            if nb >= 4:
                self.bins = nb
                self.season = _floats([math.nan] * nb)  # nan: bin not seen yet in the first period
                self.season_n = _counts([0] * nb)
                where = None
        if where is None:
            where = self.locate(t)
        k, s, kw, wv = where
        if self.unseen and shut is None and self.forming(k):
            self._learn_unseen(k, x - self.slow - self.mu * wv - s, s)
            return False
        a = self.slow_alpha * weight
        if a * n < 1.0:
            a = 1.0 / n
        slow = self.slow
        lam, mu = self.lam, self.mu
        r = x - lam * s - mu * wv - slow
        if shut is not None:
            r -= shut[1]
            # the level holds while the first shut day teaches its correction (a wrong prior is not the level)
            if not self.ready or self._learn_shut(shut[0], r, clip):
                self.slow = slow + a * _clip(r, clip)
            return False
        # (winsorised inline here and below, rather than with _clip: this runs for every value)
        self.slow = slow + a * (-clip if r < -clip else (clip if r > clip else r))
        if k < 0:
            return False
        if not self.ready:  # first period: the mean of each bin's values
            if self.x_prev == self.x_prev:
                self.noise += 0.5 * (x - self.x_prev) ** 2
                self.noise_n += 1
            self.x_prev = x
            c = self.season_n[k] = self.season_n[k] + 1
            self.season[k] = x if c == 1 else self.season[k] + (x - self.season[k]) / c
            if t is not None and t - self.t_first >= p:  # type: ignore[operator]
                self._form_profile(n + 1, t)
                return True
            return False
        if self.dev and self._recur(x, t, where, clip):  # type: ignore[arg-type]
            return False
        nb = self.bins
        per_bin = self.per_bin
        g = self.season_gamma / per_bin
        if g * n < nb:  # young: a running mean
            g = nb / n
        e = r + (lam - 1.0) * s  # the profile's own residual: x - slow - s - mu w
        e = g * (-clip if e < -clip else (clip if e > clip else e))
        self.season[k] += e
        self.season_sum += e
        # how much of the profile recurs: regression of x - slow on it (1: all of it, 0: it is noise)
        al = 1.0 / (per_bin * nb)
        r0 = x - slow
        self.cov_ps = cov = self.cov_ps + al * (r0 * s - self.cov_ps)
        self.var_ps = var = self.var_ps + al * (s * s - self.var_ps)
        lam = cov / var if var > 0.0 else 1.0
        self.lam = lam = 0.0 if lam < 0.0 else (1.0 if lam > 1.0 else lam)
        if self.week_s and t is not None:
            self._learn_week(x, t, kw, wv, r, clip, slow + lam * s)
        return False

    def shut_at(self, t: float) -> tuple[int, float]:
        """Shut-day correction at ``t``: its bin (the hour) and value (0 until a shut day has taught it).

        On a day the site is shut, a value is judged like the closing time of that day (the caller's
        ``where``), a prior that fits what follows opening hours (fridge doors) but not what follows the
        clock (the outdoor temperature). What it leaves, hour by hour, is this correction: learned as a
        plain mean over the first shut day, then at ``season_gamma`` per shut day.
        """
        if not self.bins or not self.ready:
            return -1, 0.0
        ns, need = self._shut_size()
        h = int((t % self.period) * ns / self.period)  # type: ignore[operator]
        h = h - ns if h >= ns else h
        if not self.shut or self.shut_n[h] < need:
            return h, 0.0
        return h, self.shut[h]

    def _shut_size(self) -> tuple[int, float]:
        """Shut-day correction bins per period (hours), and the values of one bin that teach it."""
        ns = self.bins if self.bins < 24 else 24
        return ns, self.per_bin * self.bins / ns

    def _learn_shut(self, h: int, r: float, clip: float) -> bool:
        """Fold residual ``r`` into shut-day bin ``h``; True once the bin is taught (the level may learn)."""
        if h < 0:
            return True
        ns, need = self._shut_size()
        if not self.shut:
            self.shut = _shape([0.0] * ns)
            self.shut_n = _counts([0] * ns)
        c = self.shut_n[h]
        if c < need:
            self.shut_n[h] = c + 1
            self.shut[h] += (_clip(r, 3.0 * clip) - self.shut[h]) / (c + 1)
            return False
        self.shut[h] += self.season_gamma / need * _clip(r, clip)
        return True

    def forming(self, k: int) -> bool:
        """Whether profile bin ``k`` has yet to see its first period's worth of values (see ``unseen``)."""
        return k >= 0 and self.unseen >> k & 1 == 1

    def _learn_unseen(self, k: int, e: float, s: float) -> None:
        """A value at a bin the first period did not see: the bin is the running mean of its first values.

        A series that starts on a shut day (a machine first seen on a Saturday) forms its profile without the
        shift's hours; learned at ``season_gamma`` per day from a guess, they would take weeks to reach the
        shift's level, and meanwhile the level would chase the shift every day and the surprises learn a scale
        many times the noise. ``e``: the value's residual from the bin (``s``). As at the profile's forming, the
        level takes the profile's mean (so the bins already formed keep their place), and the share of the
        profile that recurs counts the bin as signal.
        """
        c = self.unseen_n.get(k, 0) + 1
        e /= c
        self.season[k] += e
        self.season_sum += e
        nb = self.bins
        self.slow += e / nb
        grown = ((s + e) ** 2 - s * s) / nb
        self.var_ps += grown
        self.cov_ps += grown
        if self.var_ps > 0.0:
            lam = self.cov_ps / self.var_ps
            self.lam = 0.0 if lam < 0.0 else (1.0 if lam > 1.0 else lam)
        if c + 0.5 >= self.per_bin:
            self.unseen &= ~(1 << k)
            self.unseen_n.pop(k, None)
        else:
            self.unseen_n[k] = c

    def _learn_held(self, x: float, t: float, where: tuple[int, float, int, float], clip: float) -> None:
        """A rare value: no level update, steady-rate winsorised profile and weekly updates."""
        if self.dev and self._recur(x, t, where, clip):
            return
        k, s, kw, wv = where
        r = x - self.lam * s - self.mu * wv - self.slow
        e = self.season_gamma / self.per_bin * _clip(r + (self.lam - 1.0) * s, clip)
        self.season[k] += e
        self.season_sum += e
        if kw >= 0 and not self.week_n:
            nw = len(self.week)
            per = self.per_bin * self.bins * round(self.week_s / self.period) / nw  # type: ignore[operator]
            e = self.season_gamma / per * _clip(r + (self.mu - 1.0) * wv, clip)
            self.week[kw] += e
            self.week_sum += e

    def _recur(self, x: float, t: float, where: tuple[int, float, int, float], clip: float) -> bool:
        """In the profile's first periods, remove a bump of its first day that the next two contradict.

        The profile starts from a single period, so a one-off event of that day would otherwise come
        back as "expected" every day (and, being rare, never be learned away). When a value is ordinary
        for the level but beyond ``clip`` from the profile, two periods running at the same bin, the
        first day was the odd one: the bin moves by the smaller of the two deviations at once.
        Returns True when it did.
        """
        day = int(t // self.period)  # type: ignore[operator]
        if day > self.young_until:
            if self.dev:  # the profile has settled: this memory is no longer needed
                self.dev, self.dev_day = _shape(), _counts()
            return False
        k, s, _, wv = where
        flat = x - self.slow - self.mu * wv  # the value against the level alone
        dev = flat - s
        if -clip <= dev <= clip or not -clip <= flat <= clip:
            self.dev[k] = 0.0
            return False
        prev, self.dev[k] = self.dev[k], dev
        agree = self.dev_day[k] == day - 1 and prev * dev > 0.0
        self.dev_day[k] = day
        if agree:
            e = prev if abs(prev) < abs(dev) else dev
            self.season[k] += e
            self.season_sum += e
        return agree

    def _form_profile(self, n: int, t: float) -> None:
        """End of the first period (``n`` values): the smoothed bin means become the profile and level."""
        self.unseen = sum(1 << k for k, v in enumerate(self.season) if v != v)
        smoothed, mean = _smooth(self.season)
        self.season = _shape(smoothed)
        if mean == mean:
            self.slow = mean
        nb = self.bins
        self.season_n = _counts()
        self.season_sum = 0.0
        self.ready = True
        self.per_bin = max(1.0, n / nb)
        self.var_ps = sum(v * v for v in self.season) / nb
        self.noise = self.noise / self.noise_n if self.noise_n else 0.0
        # prior: the share of the profile that is not the noise of its bin means (empirical Bayes)
        self.cov_ps = max(0.0, self.var_ps - _SMOOTHED * self.noise / self.per_bin)
        self.lam = self.cov_ps / self.var_ps if self.var_ps > 0.0 else 1.0
        self.dev = _shape([0.0] * nb)
        self.dev_day = _counts([0] * nb)
        self.young_until = int(t // self.period) + _CONFIRM  # type: ignore[operator]

    def _learn_week(self, x: float, t: float, kw: int, wv: float, r: float, clip: float, base: float) -> None:
        """Weekly correction: what the daily baseline leaves (``r`` the level's residual, winsorised at ``clip``)."""
        if not self.week:
            nw = round(self.week_s / self.period) * min(24, self.bins)  # type: ignore[operator]
            self.week = _floats([math.nan] * nw)
            self.week_n = _counts([0] * nw)
            self.week_t0 = t
            kw = self.locate(t)[2]
        nw = len(self.week)
        if self.week_n:  # first week: the mean of each bin's values (of what the daily baseline leaves)
            raw = _clip(r + self.mu * wv, clip)
            c = self.week_n[kw] = self.week_n[kw] + 1
            self.week[kw] = raw if c == 1 else self.week[kw] + (raw - self.week[kw]) / c
            if t - self.week_t0 >= self.week_s:  # type: ignore[operator]
                self.week = _shape(_smooth(self.week)[0])
                self.week_sum = 0.0
                self.week_n = _counts()
            return
        mu = self.mu
        rw = r + (mu - 1.0) * wv  # the weekly correction's own residual
        per = self.per_bin * self.bins * round(self.week_s / self.period) / nw  # type: ignore[operator]
        e = self.season_gamma / per * (-clip if rw < -clip else (clip if rw > clip else rw))
        self.week[kw] += e
        self.week_sum += e
        # how much of it recurs week to week (0 at first: it must earn its place)
        al = 1.0 / (per * nw)
        r0 = x - base
        self.cov_pw = cov = self.cov_pw + al * (r0 * wv - self.cov_pw)
        self.var_pw = var = self.var_pw + al * (wv * wv - self.var_pw)
        mu = cov / var if var > 0.0 else 0.0
        self.mu = 0.0 if mu < 0.0 else (1.0 if mu > 1.0 else mu)
