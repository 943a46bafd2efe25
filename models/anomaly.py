"""Online anomaly detector for one numeric series (a sensor, a till's takings, a page's traffic).

``SeriesDetector`` scores each value as it arrives and then learns from it, in River's idiom
(``score_one`` / ``learn_one``, or both at once with ``process_one``), with O(1) work per value and a
small, bounded, picklable state that can live in a Faust table.

How a value is judged
---------------------
A baseline is learned online: a slow level (EWMA) plus a time-of-day profile (one bin per sampling
interval, at most ``max_bins`` per ``period``) when timestamps are given. Five surprises are
measured against it:

- ``spike``: the step from the previous value, once the daily profile is taken out;
- ``level``: the distance from the seasonal baseline (slow level + profile): shifts and drifts;
- ``shift``: a short moving average of that distance: small but sustained departures;
- ``flat``: log-ratio of the long-run to the recent step size: a stuck or flat-lined sensor;
- ``cluster``: notable surprises arriving faster than their long-run rate (Poisson tail).

Each surprise becomes a tail probability ``p`` against the series' own recent history: the rate at
which surprises at least that large have *started* lately (up-crossings in a decaying histogram, so
one long episode counts once) or, beyond anything seen, an exponential tail fitted above the running
90% quantile (peaks over threshold). The smallest ``p`` times the number of surprises (Bonferroni)
gives ``L = -log10 p`` and the score ``L / (L + FLAG_DECADES)``: the same score means the same rarity
on every series whatever its unit or noise; 0.5 is ``p = 1/100`` over the five surprises (one in 500
for the single surprise, so an event that recurs daily in five-minute data does not flag), 0.67 is ten
times rarer, 0.75 a hundred; it never saturates.
Rarity alone is not enough to flag: the surprise must also be material (``min_effect`` times its
usual 90th percentile), so a clean, noisy series stays quiet. After a flag, flags are suppressed
for ``refractory`` values (one alert per event; alerting adds its own hysteresis). Statistics
decay, so after a permanent change the detector alerts, then takes the change as the new normal.

>>> det = SeriesDetector(period=None, warmup=50)
>>> for i in range(300):
...     v = det.process_one(20.0 + (i % 7) * 0.1)
>>> v.is_anomaly, v.warming_up
(False, False)
>>> v = det.process_one(35.0)
>>> v.is_anomaly, v.reason
(True, 'level')
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from models.business_calendar import BusinessCalendar

# Bump when the meaning or layout of the pickled state changes; old states are then refused.
STATE_VERSION = 1

# Score 0.5 <=> a surprise whose tail probability (after Bonferroni) is 10**-FLAG_DECADES. NAB's costs
# favour a lower bar (1.5 scores a little higher there) but then a daily job's spike in five-minute
# data would alert every day.
FLAG_DECADES = 2.0

FEATURES = ("spike", "level", "shift", "flat", "shift", "volatility", "cluster")
_SPIKE, _LEVEL, _SHIFT, _FLAT, _FAST, _VOL, _CLUSTER = range(7)
_NCAL = 6  # features with an empirical calibrator (the cluster one is analytic)
_NB = 32  # histogram bins: half-octaves of z / u, so up to 65536 times the 90% quantile
_LOG10E = math.log10(math.e)
_LN10 = math.log(10.0)
_TINY = 1e-12
_SETTLE = 30  # values before surprises are calibrated at all (the level's running mean settles)
# Effect-size floors that a flag needs besides rarity (when min_effect > 0): a sustained shift of
# at least 0.7 times the level's usual 90th percentile, and steps shrunk at least four-fold.
_SHIFT_EFFECT = 0.7
_FLAT_EFFECT = math.log(4.0)
_FAST_ALPHA = 0.4  # the fast shift: a mean of the last three values or so (an outage within minutes)
_HOLD_LP = -2.0  # log10 p of a level or shift surprise that the baseline does not learn from
_HELD_BY = (1, 2, 4)  # level, shift, fast shift


# constructor arguments, kept as attributes of the same name
_SETTINGS = ("threshold", "warmup", "refractory", "period", "max_bins", "slow_alpha", "shift_alpha",
             "season_gamma", "flat_alpha", "horizon", "tail_q", "tail_rate", "cluster_level",
             "cluster_alpha", "min_effect", "clip", "hold", "calendar")


class StateVersionError(ValueError):
    """A pickled detector was written by an incompatible version of this module."""


class Verdict(NamedTuple):
    """What the detector says about one value (``expected`` +/- band is the seasonal baseline)."""

    score: float  # calibrated surprise in [0, 1]; >= threshold means rare on this series
    is_anomaly: bool  # score >= threshold, past warm-up, open, not within a refractory period
    observed: float
    expected: float  # seasonal baseline (slow level + time-of-day profile)
    lower: float  # baseline band: a value outside it would reach the threshold on ``level``
    upper: float
    reason: str  # the surprise that drove the score; "" if unremarkable, "closed", "invalid" (NaN, inf)
    warming_up: bool


def _log10p(z: float, u: float, b: float, hist: list[float], tot: float, lq: float) -> float:
    """log10 tail probability of surprise ``z``: seen rate of that level, or the exponential tail."""
    if z <= u or u <= 0.0:  # unremarkable, or nothing learned yet
        return lq if z > 0.0 and u > 0.0 else 0.0
    lexp = lq - (z - u) / b * _LOG10E if b > 0.0 else -300.0
    j = int(2.0 * math.log2(z / u))
    if j >= _NB or tot <= 0.0:
        return lexp
    seen = hist[j]
    if seen <= 0.0:
        return lexp
    lseen = math.log10(seen / tot)
    return lseen if lseen > lexp else lexp


def _median3(a: float, b: float, c: float) -> float:
    """Median of the seen values among three (nan: not seen); nan if none was."""
    seen = sorted(v for v in (a, b, c) if v == v)
    if not seen:
        return math.nan
    return seen[1] if len(seen) == 3 else sum(seen) / len(seen)


class SeriesDetector:
    """Online anomaly detector for one series; see the module docstring for the method.

    Parameters
    ----------
    threshold
        Score at which a value is flagged (see FLAG_DECADES); 0.6 or 0.7 for fewer, surer alerts.
    warmup
        Values to learn before flagging, counted once the first seasonal period is complete
        (the profile must exist before its surprises mean anything), or after 30 values when
        there is no profile.
    refractory
        Values after a flag during which no new flag is raised.
    period
        Seasonal period in seconds (a day by default); ``None`` disables the profile.
    max_bins
        Cap on profile bins; otherwise one bin per observed sampling interval.
    slow_alpha, shift_alpha, season_gamma
        Learning rates of the baseline level, the short ``shift`` average and the profile.
    horizon
        Memory, in values, of the surprise histogram and quantiles (older evidence decays).
    min_effect
        A flag also needs the spike or level surprise to reach this many times its usual 90th
        percentile (0 disables the effect-size floors and flags on rarity alone).
    calendar
        Opening hours; values at closed times are neither scored nor learned.

    >>> import math, random
    >>> rng = random.Random(3)
    >>> det = SeriesDetector()  # three days of 5-minute readings with a daily cycle:
    >>> for i in range(288 * 3):
    ...     x = 20 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.3)
    ...     v = det.process_one(x, t=300.0 * i)
    >>> v.warming_up
    False
    >>> v = det.process_one(27.0, t=300.0 * 288 * 3)
    >>> v.is_anomaly, v.reason, v.lower < 20 < v.upper
    (True, 'level', True)
    """

    def __init__(self, threshold: float = 0.5, warmup: int = 150, refractory: int = 100,
                 period: float | None = 86400.0, max_bins: int = 288, slow_alpha: float = 0.01,
                 shift_alpha: float = 0.05, season_gamma: float = 0.1, flat_alpha: float = 0.1,
                 horizon: float = 2000.0, tail_q: float = 0.9, tail_rate: float = 0.005,
                 cluster_level: float = 1.5, cluster_alpha: float = 0.05,
                 min_effect: float = 2.5, clip: float = 3.0, hold: int = 100,
                 calendar: BusinessCalendar | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.warmup = warmup
        self.refractory = refractory
        self.period = period
        self.max_bins = max_bins
        self.slow_alpha = slow_alpha
        self.shift_alpha = shift_alpha
        self.season_gamma = season_gamma
        self.flat_alpha = flat_alpha
        self.horizon = horizon
        self.tail_q = tail_q
        self.tail_rate = tail_rate
        self.cluster_level = cluster_level
        self.cluster_alpha = cluster_alpha
        self.calendar = calendar
        self.min_effect = min_effect
        self.clip = clip
        self.hold = hold
        # --- learned state (plain floats and lists: cheap to pickle) ---
        self.n = 0  # values learned
        self.n_mature = 0  # values learned since the model could judge surprises (see _learn)
        self.anchor = True  # next value (re)starts the levels: first value, or after from_prior
        self.t_first = 0.0
        self.t_last: float | None = None
        self.bins = 0  # profile bins, fixed at the second timestamped value
        self.season: list[float] = []
        self.season_sum = 0.0  # kept so the profile is used with zero mean (level stays in `slow`)
        self.season_ready = False  # first period seen: the profile is in use
        self.per_bin = 1.0  # values landing in one bin per period
        self.season_n: list[int] = []  # values per bin in the first period (then empty)
        self.lam = 1.0  # share of the profile in the baseline (shrunk when it does not recur)
        self.cov_ps = 0.0
        self.var_ps = 0.0
        self.week: list[float] = []  # weekly correction by hour of the week, from the second day
        self.week_sum = 0.0
        self.week_t0 = 0.0
        self.week_n: list[int] = []  # values per bin in the first week (then empty)
        self.mu = 0.0  # share of the weekly correction in the baseline
        self.cov_pw = 0.0
        self.var_pw = 0.0
        self.slow = 0.0  # deseasonalised baseline level
        self.last = 0.0  # previous deseasonalised value
        self.last_x = 0.0
        self.shift = 0.0
        self.fshift = 0.0
        self.vol_fast = 0.0  # recent and long-run mean deseasonalised step
        self.vol_slow = 0.0
        self.step_fast = 0.0  # recent mean |step|
        self.step_slow = 0.0  # long-run mean |step|
        self.u = [0.0] * _NCAL  # running 90% quantile of each surprise
        self.b = [0.0] * _NCAL  # mean excess over it: the exponential tail's scale
        self.hist = [[0.0] * _NB for _ in range(_NCAL)]  # decayed up-crossing counts per level
        self.above = [-1] * _NCAL  # histogram level each surprise currently sits at (-1: below u)
        self.w = 1.0  # weight of the next count (grows instead of decaying all counts)
        self.tot = 0.0
        self.cl_short = 0.0
        self.cl_long = 0.005  # prior: one notable surprise in 200 values
        self.cl_prev = False
        self.quiet = 0  # values left in the refractory period
        self.held = 0  # rare values in a row (the baseline holds while an episode is young)

    # ------------------------------------------------------------------ public API
    @property
    def warmed_up(self) -> bool:
        """True once the detector may flag (and is worth copying with ``from_prior``)."""
        return self.n_mature >= self.warmup

    def score_one(self, x: float, t: float | None = None) -> float:
        """Calibrated surprise of ``x`` (at time ``t``, epoch seconds) in [0, 1], without learning it."""
        if self.anchor or not math.isfinite(x):
            return 0.0
        return self._score(self._features(x, t))[0]

    def learn_one(self, x: float, t: float | None = None) -> None:
        """Update the model with ``x``; returns None, as River's ``learn_one`` does."""
        if not math.isfinite(x):  # a NaN would poison every average for good
            return
        if self.anchor:
            self._start(x, t)
            return
        feats = self._features(x, t)
        _, _, notable, rare = self._score(feats)
        self._learn(x, t, feats, notable, rare)

    def process_one(self, x: float, t: float | None = None, is_open: bool = True) -> Verdict:
        """Score ``x`` then learn it: what the stream calls once per value.

        When closed (``is_open=False``, or the detector's calendar says so at ``t``) the value is
        neither scored nor learned: a shut shop's zero takings are not news, nor the new normal.
        """
        if not is_open or (self.calendar is not None and t is not None and not self.calendar.is_open(t)):
            return Verdict(0.0, False, x, math.nan, math.nan, math.nan, "closed", self.n_mature < self.warmup)
        if not math.isfinite(x):  # a NaN would poison every average for good: neither scored nor learned
            return Verdict(0.0, False, x, math.nan, math.nan, math.nan, "invalid", self.n_mature < self.warmup)
        if self.anchor:
            self._start(x, t)
            return Verdict(0.0, False, x, x, x, x, "", self.n_mature < self.warmup)
        feats = self._features(x, t)
        score, reason, notable, rare = self._score(feats)
        warming = self.n_mature < self.warmup
        flag = score >= self.threshold and not warming and self.quiet == 0
        if self.quiet and score < self.threshold:  # one flag per event: its end starts the count
            self.quiet -= 1
        if flag:
            self.quiet = self.refractory
        base = feats[3]
        band = self._band()
        self._learn(x, t, feats, notable, rare)
        return Verdict(score, flag, x, base, base - band, base + band,
                       reason if score >= 0.5 * self.threshold else "", warming)

    @classmethod
    def from_prior(cls, prior: SeriesDetector) -> SeriesDetector:
        """A new series' detector that starts from another (warmed-up) detector of its group.

        The profile, scales, surprise history and settings (threshold, calendar) are copied; the
        level restarts at the new series' first value, and warm-up is skipped when the prior had
        finished it. A prior still warming up has nothing reliable to share: the new detector then
        starts from scratch with the prior's settings. The prior itself is not changed.
        """
        if not prior.warmed_up:
            return cls(**{name: getattr(prior, name) for name in _SETTINGS})
        new = copy.deepcopy(prior)
        new.anchor = True
        new.quiet = 0
        new.cl_short = 0.0
        new.cl_prev = False
        new.above = [-1] * _NCAL
        new.shift = 0.0
        new.fshift = 0.0
        new.vol_fast = new.vol_slow
        new.step_fast = new.step_slow
        new.t_last = None
        return new

    def __getstate__(self) -> dict[str, Any]:
        return {"state_version": STATE_VERSION, **self.__dict__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("state_version", None)
        if version != STATE_VERSION:
            raise StateVersionError(f"detector state version {version}, this code reads {STATE_VERSION}")
        self.__dict__.update(state)

    # ------------------------------------------------------------------ internals
    def _start(self, x: float, t: float | None) -> None:
        """(Re)start the levels at ``x``; the profile and scales are kept."""
        s = self._season_at(t)[1] if self.bins else 0.0
        d = x - self.lam * s
        if self.n == 0:
            self.slow = d
            self.t_first = t if t is not None else 0.0
        else:  # from a group prior: keep its history mature
            self.slow = d
            self.t_first = -math.inf
        self.last = d
        self.last_x = x
        self.t_last = t
        self.anchor = False
        self.n += 1

    def _season_at(self, t: float | None) -> tuple[int, float]:
        """Profile bin for time ``t`` and its zero-mean value (bin -1: no profile)."""
        nb = self.bins
        if t is None or not nb:
            return -1, 0.0
        k = int((t % self.period) * nb / self.period + 0.5)  # type: ignore[operator]
        if k >= nb:
            k -= nb
        if not self.season_ready:
            return k, 0.0
        return k, self.season[k] - self.season_sum / nb

    def _week_at(self, t: float | None) -> tuple[int, float]:
        """Weekly-correction bin for time ``t`` and its zero-mean value (bin -1: none)."""
        nw = len(self.week)
        if t is None or not nw:
            return -1, 0.0
        if self.week_n:
            return self._week_bin(t), 0.0
        return (kw := self._week_bin(t)), self.week[kw] - self.week_sum / nw

    def _week_bin(self, t: float) -> int:
        """Weekly-correction bin of time ``t``."""
        nw = len(self.week)
        wp = 7.0 * self.period  # type: ignore[operator]
        kw = int((t % wp) * nw / wp)
        return kw - nw if kw >= nw else kw

    def _features(self, x: float, t: float | None) -> tuple:
        """Surprises of ``x`` against the current state, plus what learning needs."""
        k, s = self._season_at(t)
        kw, wv = self._week_at(t)
        d = x - self.lam * s - self.mu * wv
        rl = d - self.slow
        sh = self.shift + self.shift_alpha * (rl - self.shift)
        step = abs(x - self.last_x)
        fa = self.flat_alpha
        sf = self.step_fast + fa * (step - self.step_fast)
        ss = self.step_slow
        zf = 0.0
        if ss > 0.0:
            zf = math.log(ss / (sf if sf > ss * 1e-9 else ss * 1e-9))
            if zf < 0.0:
                zf = 0.0
        # a mean of the last few values, each clipped: a lone outlier is the level's business
        c = self.clip * self.u[_LEVEL]
        rc = rl if self.n_mature < _SETTLE else (-c if rl < -c else (c if rl > c else rl))
        shf = self.fshift + _FAST_ALPHA * (rc - self.fshift)
        zs = abs(d - self.last)
        vf = self.vol_fast + fa * (zs - self.vol_fast)
        vs = self.vol_slow
        zv = math.log(vf / vs) if vs > 0.0 and vf > vs else 0.0
        z = [zs, abs(rl), abs(sh), zf, abs(shf), zv]
        return (z, k, d, self.slow + x - d, sh, sf, step, s, shf, vf, kw, wv)

    def _score(self, feats: tuple) -> tuple[float, str, bool, bool]:
        """(score, reason, notable, rare) for computed surprises; reads the state only."""
        u, b, hist, tot = self.u, self.b, self.hist, self.tot
        lq = math.log10(1.0 - self.tail_q)
        best = 0.0
        reason = ""
        lps = [0.0] * _NCAL
        me = self.min_effect
        gates = (me * u[_SPIKE], me * u[_LEVEL], _SHIFT_EFFECT * u[_LEVEL] if me else 0.0,
                 _FLAT_EFFECT if me else 0.0, me * u[_FAST], _FLAT_EFFECT if me else 0.0)
        rare = False
        z = feats[0]
        for i in range(_NCAL):
            lp = _log10p(z[i], u[i], b[i], hist[i], tot, lq)
            if lp <= _HOLD_LP and i in _HELD_BY:
                rare = True
            if lp < -1.0 and z[i] < gates[i]:  # rare, but too small to matter
                lp = -1.0
            lps[i] = lp
            if lp < best:
                best = lp
                reason = FEATURES[i]
        # a notable surprise (p < 10**-cluster_level) on the value itself starts an "event"
        notable = min(lps[_SPIKE], lps[_LEVEL]) <= -self.cluster_level
        ev = 1.0 if notable and not self.cl_prev else 0.0
        ca = self.cluster_alpha
        k = (self.cl_short + ca * (ev - self.cl_short)) / ca  # events in the recent ~1/ca values
        mu = self.cl_long / ca  # expected events in as many values
        if k > mu and tot > 0.0:
            lpc = -(k * math.log(k / mu) - k + mu) / _LN10  # Chernoff bound of the Poisson tail
            if lpc < best:
                best = lpc
                reason = "cluster"
        big = -best - math.log10(len(FEATURES))
        score = big / (big + FLAG_DECADES) if big > 0.0 else 0.0
        return score, reason, notable, rare

    def _band(self) -> float:
        """Distance from the baseline at which ``level`` alone would reach the threshold."""
        th = self.threshold
        target = FLAG_DECADES * th / (1.0 - th) + math.log10(len(FEATURES)) if th < 1.0 else 300.0
        lq = -math.log10(1.0 - self.tail_q)
        u = self.u[_LEVEL]
        tail = u + self.b[_LEVEL] * max(target - lq, 0.0) * _LN10
        return max(tail, self.min_effect * u)

    def _start_profile(self) -> None:
        """End of the first period: raw per-bin values, smoothed, minus their mean become the profile.

        The median of each bin and its two neighbours keeps a steady shape (and its edges) but not a
        one-off event of the first day, which would otherwise come back as "expected" every day.
        """
        raw = self.season
        nb = len(raw)
        med = [_median3(raw[k - 1], raw[k], raw[(k + 1) % nb]) for k in range(nb)]
        seen = [v for v in med if v == v]
        mean = sum(seen) / len(seen) if seen else self.slow
        self.season = [v - mean if v == v else 0.0 for v in med]
        self.season_sum = 0.0
        self.season_ready = True
        self.season_n = []
        self.per_bin = max(1.0, self.n / nb)  # values per bin per period, as counted in the first one
        var = sum(v * v for v in self.season) / nb
        self.cov_ps = self.var_ps = var  # prior: the profile recurs (lam = 1)
        self.slow = mean
        k, s = self._season_at(self.t_last) if self.t_last is not None else (-1, 0.0)
        self.last = self.last_x - s

    def _learn_week(self, x: float, t: float | None, kw: int, wv: float, rw: float, raw: float,
                    base: float) -> None:
        """Weekly correction: what the daily profile leaves, by hour of the week (from the second day).

        The first week is kept raw (mean per bin, as the first day of the profile), then smoothed;
        later weeks move it as the profile moves (winsorised, held during rare episodes). It enters
        the baseline only as far as it predicts the following weeks (``mu``).
        """
        if t is None:
            return
        if not self.week:
            self.week = [math.nan] * (7 * min(24, self.bins))
            self.week_n = [0] * len(self.week)
            self.week_t0 = t
            kw = self._week_at(t)[0]
        nw = len(self.week)
        if self.week_n:  # first week: mean per bin of what the daily baseline leaves
            c = self.week_n[kw] = self.week_n[kw] + 1
            old = self.week[kw]
            self.week[kw] = raw if c == 1 else old + (raw - old) / c
            if t - self.week_t0 >= 7.0 * self.period:  # type: ignore[operator]
                w = self.week
                med = [_median3(w[k - 1], w[k], w[(k + 1) % nw]) for k in range(nw)]
                seen = [v for v in med if v == v]
                mean = sum(seen) / len(seen) if seen else 0.0
                self.week = [v - mean if v == v else 0.0 for v in med]
                self.week_sum = 0.0
                self.week_n = []
            return
        per = self.per_bin * self.bins * 7 / nw  # values per weekly bin per week
        e = self.season_gamma / per * rw
        self.week[kw] += e
        self.week_sum += e
        # how much of it recurs week to week (0 at first: it must earn its place)
        al = 1.0 / (per * nw)
        r0 = x - base
        self.cov_pw += al * (r0 * wv - self.cov_pw)
        self.var_pw += al * (wv * wv - self.var_pw)
        mu = self.cov_pw / self.var_pw if self.var_pw > 0.0 else 0.0
        self.mu = 0.0 if mu < 0.0 else (1.0 if mu > 1.0 else mu)

    def _learn_level(self, x: float, t: float | None, seasonal: bool) -> None:
        """Fold one (past) value into the baseline: level, profile, weekly correction."""
        n = self.n
        k, s = self._season_at(t)
        kw, wv = self._week_at(t)
        d = x - self.lam * s - self.mu * wv
        a = self.slow_alpha if self.slow_alpha * n >= 1.0 else 1.0 / n
        slow = self.slow
        r = d - slow
        rp = r + (self.lam - 1.0) * s  # the profile's own residual: x - slow - s - mu w
        rw = r + (self.mu - 1.0) * wv  # the weekly correction's: x - slow - lam s - w
        raw_w = rw + wv
        if self.n_mature >= _SETTLE:  # winsorised: an episode moves the baseline slowly
            c = self.clip * self.u[_LEVEL]
            r = -c if r < -c else (c if r > c else r)
            rp = -c if rp < -c else (c if rp > c else rp)
            rw = -c if rw < -c else (c if rw > c else rw)
            raw_w = -c if raw_w < -c else (c if raw_w > c else raw_w)
        self.slow = slow + a * r
        if not seasonal or k < 0:
            return
        nb = self.bins
        g = self.season_gamma / self.per_bin
        if g * n < nb:
            g = nb / n
        e = g * rp
        self.season[k] += e
        self.season_sum += e
        # how much of the profile recurs: regression of x - slow on it (1: all, 0: it is noise)
        al = 1.0 / (self.per_bin * nb)
        r0 = x - slow
        self.cov_ps += al * (r0 * s - self.cov_ps)
        self.var_ps += al * (s * s - self.var_ps)
        lam = self.cov_ps / self.var_ps if self.var_ps > 0.0 else 1.0
        self.lam = 0.0 if lam < 0.0 else (1.0 if lam > 1.0 else lam)
        self._learn_week(x, t, kw, wv, rw, raw_w, slow + self.lam * s)

    def _learn(self, x: float, t: float | None, feats: tuple, notable: bool, rare: bool) -> None:
        """Fold one value into the state."""
        n = self.n
        z, k, d, _, sh, sf, step, s, self.fshift, self.vol_fast, kw, wv = feats
        self.vol_slow += 0.005 * (z[_SPIKE] - self.vol_slow)
        if (t is not None and not self.bins and self.period and self.t_last is not None
                and t > self.t_last):
            # one bin per sampling interval (capped); too coarse to resolve a period: no profile
            nb = min(self.max_bins, round(self.period / (t - self.t_last)))
            if nb >= 4:
                self.bins = nb
                self.season = [math.nan] * nb  # nan: bin not seen yet in the first period
                self.season_n = [0] * nb
                k = self._season_at(t)[0]
        # surprise calibrators: log-domain quantile tracking + mean excess + up-crossing histogram
        q = self.tail_q
        # surprises of a model still learning its first season say little about what is normal:
        # the calibration restarts once the model is mature
        mature = n >= _SETTLE and (not self.bins or t is None or t - self.t_first >= self.period)
        if mature:
            if self.n_mature == 0:
                self.u = [0.0] * _NCAL
                self.b = [0.0] * _NCAL
            self.n_mature += 1
        m = self.n_mature if mature else n
        rate = self.tail_rate
        if m * rate < 2.0:  # early on: bigger steps, like a running mean
            rate = 2.0 / m
        up, down = math.exp(rate * q), math.exp(-rate * (1.0 - q))
        er = max(self.tail_rate, 1.0 / m)
        u, b, hist, above, w = self.u, self.b, self.hist, self.above, self.w
        for i in range(_NCAL):
            zi = z[i]
            ui = u[i]
            if ui <= _TINY:
                if zi > 0.0:
                    u[i] = zi
                continue
            if zi > ui:
                b[i] += er * ((zi - ui) - b[i])
                u[i] = ui * up
                j = int(2.0 * math.log2(zi / ui))
                if j >= _NB:
                    j = _NB - 1
                if mature and j > above[i]:  # count each level once per episode
                    h = hist[i]
                    for jj in range(above[i] + 1, j + 1):
                        h[jj] += w
                above[i] = j
            else:
                above[i] = -1
                u[i] = ui * down if ui * down > _TINY else _TINY
        if mature:  # the histogram and its total count the same values
            self.tot += w
        w /= 1.0 - 1.0 / self.horizon
        if w > 1e12:  # renormalise the lazily decayed counts
            for h in hist:
                for jj in range(_NB):
                    h[jj] /= w
            self.tot /= w
            w = 1.0
        self.w = w
        # cluster rate: short and long EWMAs of event starts
        ev = 1.0 if notable and not self.cl_prev else 0.0
        self.cl_short += self.cluster_alpha * (ev - self.cl_short)
        if n >= self.warmup:
            self.cl_long += (ev - self.cl_long) / self.horizon
        self.cl_prev = notable
        # baseline: not learned from a rare episode until it lasts (then it is the new normal)
        start_profile = False
        if k >= 0 and not self.season_ready:
            # first period: the mean of each bin's values; they become the profile once it is complete
            season = self.season
            c = self.season_n[k] = self.season_n[k] + 1
            season[k] = x if c == 1 else season[k] + (x - season[k]) / c
            start_profile = t is not None and t - self.t_first >= self.period  # type: ignore[operator]
            self._learn_level(x, t, False)
        else:
            if rare and self.n_mature >= _SETTLE:
                self.held += 1
            else:
                self.held = 0
            if not 0 < self.held <= self.hold:
                self._learn_level(x, t, True)
        self.shift = sh
        self.step_fast = sf
        # starts from 0 on purpose: "flat" stays silent until the usual step size is known
        self.step_slow += 0.005 * (step - self.step_slow)
        self.last = d
        self.last_x = x
        self.t_last = t
        self.n = n + 1
        if start_profile:
            self._start_profile()
