"""Online demand forecaster for one (store, sku) series, fed with closed hourly or daily buckets.

``DemandForecaster`` is a River forecaster (``river.time_series.base.Forecaster``): ``learn_one(y, x)``
learns the total demand ``y`` of one closed bucket, and ``forecast(horizon)`` returns the expected demand
(the mean, as plain floats) of the next ``horizon`` buckets. Quantiles (the median, the interval's ends,
any level) come from ``forecast_quantiles``, and quantiles of the total over several buckets (a lead time)
from ``total_quantiles``. The time of the bucket travels in ``x`` as ``x = {"t": start}`` (a datetime, a
date or epoch seconds); without ``"t"`` a call learns the bucket after the last one, as River's own
forecasters do. Other keys of ``x`` are ignored.

How it works, for demand that may be intermittent (most days without a sale):

- a multiplicative seasonal profile kept as per-slot exponentially weighted *means of demand* (no ratios,
  so zeros are harmless), normalised to mean 1: day-of-week for daily buckets; for hourly buckets the full
  hour-of-week profile shrunk towards day-of-week x hour-of-day, which has 7 to 24 times more data per slot;
- a small bank of levels of de-seasonalised demand, one per smoothing rate in ``alphas`` (the slowest for
  sparse, stable items; the fastest for series whose level drifts). A level is an exponentially weighted mean
  of demand *including its zeros*, so it is TSB's expected demand (probability of a sale x its size)
  without splitting it in two. Each level's h-step forecasts are scored online, per horizon, by their
  discounted squared error, and the mean forecast at horizon h weighs the levels by the inverse of it:
  the series picks its own smoothing, per horizon, as it goes (no batch fitting);
- a short-term persistence term: the last one-step deviation from that forecast, decayed by its lag-1
  autocorrelation (learned online, 0 to 0.9) per bucket ahead. Weather, a promotion's days or a
  stock-out last more than a day; for an item whose surprises do not last it learns about 0;
- the distribution of demand in a bucket is a negative binomial with that mean and a dispersion ``k``
  learned per horizon from the h-step errors (variance ``mu + k mu^2``): Poisson-like for a slow seller,
  whose low quantiles are then exactly 0 when a day without a sale is likely, and proportional to the
  mean for a busy series, where the error of the level dominates. Quantiles of a lead time's total add
  the means and treat the level's error as shared by all its buckets.

The point forecast is the mean (best for squared errors and the one to add over buckets). Forecasts are
never negative. Missing buckets between two ``learn_one`` calls are learned as zero sales; a bucket at or
before the last learned one is ignored, so replaying after a crash never double-counts. State is a few
hundred floats in plain attributes; a pickle records the model's state version and River's version, and a
pickle from another version loads as a fresh forecaster with the same parameters (with a warning).

>>> from datetime import date, timedelta
>>> f = DemandForecaster(freq="D")
>>> start = date(2024, 1, 1)  # a Monday
>>> for i in range(8 * 7):
...     f.learn_one([20, 20, 20, 20, 60, 90, 0][i % 7], {"t": start + timedelta(days=i)})
>>> [round(y) for y in f.forecast(7)]  # the weekday profile is shrunk a little towards a flat week
[18, 19, 19, 19, 55, 82, 1]
>>> f.starts(1)[0].date()
datetime.date(2024, 2, 26)
>>> lo, median, hi = f.forecast_quantiles(1)[0]
>>> lo <= 20 <= hi
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal

import river
from river.time_series.base import Forecaster

__all__ = ["STATE_VERSION", "DemandForecaster", "Freq", "bucket_index", "bucket_seconds", "season_length"]

# Bump when the pickled attributes change meaning; a stored state with another version is re-learned.
STATE_VERSION = 3

_log = logging.getLogger(__name__)

Freq = Literal["h", "D"]

_EPOCH = datetime(1970, 1, 1)
_BUCKET_SECONDS = {"h": 3600, "D": 86400}
_PERIOD = {"h": 168, "D": 7}
_DEFAULT_MAX_HORIZON = {"h": 48, "D": 28}
# Horizons whose errors are tracked; a horizon in between uses the next tracked one.
_HORIZON_GRID = {"D": (1, 2, 3, 5, 7, 10, 14, 21, 28), "h": (1, 2, 4, 8, 12, 24, 36, 48)}
# 1970-01-01 was a Thursday: day index 0 is weekday 3 (Monday = 0).
_EPOCH_WEEKDAY = 3
# Memory of the error statistics that weigh the levels and set the dispersion: about 1 / (1 - 0.97) = 33
# origins, so a series settles in about a month of daily buckets and follows a change within two.
_ERR_DISCOUNT = 0.97
# A weekday's index rests on about (mean demand x weeks of memory) units; with fewer than this many it is
# shrunk half-way to a flat week (Poisson noise of the index, 1 / units, equals a typical weekly swing of 0.1).
_SHRINK_UNITS = 10.0
# The level's step uses the de-seasonalised error (y / s - level), as multiplicative Holt-Winters does; the
# index is floored so a closed or nearly empty slot (a Sunday, a night hour) cannot swing the level.
_MIN_SEASON_FOR_LEVEL = 0.2
# Memory of the deviations' autocorrelation, a stable property of a series: about 100 buckets.
_AR_DISCOUNT = 0.99
_K_PRIOR = 0.1  # dispersion before any error has been seen (and its weight, in buckets)
_K_PRIOR_WEIGHT = 10.0


def bucket_index(t: datetime | date | float, freq: Freq) -> int:
    """Index of the bucket holding ``t``: wall-clock time for datetimes and dates, UTC for epoch seconds.

    >>> bucket_index(datetime(1970, 1, 2, 5), "h"), bucket_index(date(1970, 1, 8), "D")
    (29, 7)
    """
    if isinstance(t, datetime):
        seconds = (t.replace(tzinfo=None) - _EPOCH).total_seconds()
    elif isinstance(t, date):
        seconds = (t - _EPOCH.date()).days * 86400.0
    else:
        seconds = float(t)
    return math.floor(seconds / _BUCKET_SECONDS[freq])


def bucket_seconds(freq: Freq) -> int:
    """Length of one bucket of ``freq`` in seconds."""
    return _BUCKET_SECONDS[freq]


def season_length(freq: Freq) -> int:
    """Buckets in one week, the longest seasonality modelled (7 daily, 168 hourly)."""
    return _PERIOD[freq]



class DemandForecaster(Forecaster):
    """Seasonal demand forecaster: a bank of exponentially smoothed levels weighed per horizon, NB quantiles.

    Parameters
    ----------
    freq
        Bucket length: ``"D"`` (daily, weekly season of 7) or ``"h"`` (hourly, weekly season of 168).
    alphas
        Smoothing rates of the bank of levels, from slow to fast. The levels follow drift only: what lasts a
        few buckets (a promotion, the weather) is the persistence term's.
    gamma
        Seasonal step per visit of a slot.
    coverage
        Coverage of the default prediction interval (its ends are the quantiles ``(1 -+ coverage) / 2``).
    max_horizon
        Furthest horizon with its own error statistics (further ones reuse it); default 28 daily, 48 hourly.
    clip
        Quantile of the predicted distribution beyond which demand is clipped for the levels and the profile
        (a promotion should neither lift the next weeks nor reshape the week).

    Examples
    --------

    >>> f = DemandForecaster(freq="h")
    >>> for i in range(24 * 14):
    ...     f.learn_one(5.0 if 9 <= i % 24 < 18 else 0.0, {"t": float(i * 3600)})
    >>> [round(y, 1) for y in f.forecast(24)][8:11]
    [0.0, 5.0, 5.0]

    """

    def __init__(
        self,
        freq: Freq = "D",
        alphas: tuple[float, ...] = (0.02, 0.05, 0.1),
        gamma: float = 0.05,
        coverage: float = 0.8,
        max_horizon: int | None = None,
        clip: float = 0.999,
    ) -> None:
        if freq not in _PERIOD:
            raise ValueError(f"freq must be 'h' or 'D', not {freq!r}")
        if not alphas or any(not 0.0 < a <= 1.0 for a in alphas):
            raise ValueError(f"alphas must be rates in (0, 1], not {alphas!r}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], not {gamma!r}")
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be between 0 and 1, not {coverage!r}")
        if max_horizon is not None and max_horizon < 1:
            raise ValueError(f"max_horizon must be at least 1, not {max_horizon!r}")
        if not 0.5 < clip < 1.0:
            raise ValueError(f"clip is a quantile level between 0.5 and 1, not {clip!r}")
        self.freq: Freq = freq
        self.alphas = tuple(alphas)
        self.gamma = gamma
        self.coverage = coverage
        self.max_horizon = max_horizon
        self.clip = clip
        self._reset()

    def _reset(self) -> None:
        """Fresh learned state for the current parameters."""
        self.relearned_from: object = None  # state version of a pickle that had to be re-learned
        self.period = _PERIOD[self.freq]
        self._h_max = self.max_horizon or _DEFAULT_MAX_HORIZON[self.freq]
        self.n = 0  # buckets learned
        self.last: int | None = None  # index of the last learned bucket (buckets since the epoch)
        k = len(self.alphas)
        self.levels = [0.0] * k
        # Seasonal profile: per-slot EWMA of demand and the number of visits (capped) per slot.
        self._m = [0.0] * self.period
        self._visits = [0] * self.period
        # Hourly only: day-of-week (7) and hour-of-day (24) EWMAs for the shrunk hour-of-week profile.
        hourly = self.freq == "h"
        self._m_dow = [0.0] * 7 if hourly else []
        self._m_hod = [0.0] * 24 if hourly else []
        self._n_dow = [0] * 7 if hourly else []
        self._n_hod = [0] * 24 if hourly else []
        self._day_sum = 0.0  # demand so far in the current day (hourly only)
        # Running sums of the profiles (refreshed once per season) and the mean square of the indices.
        self._m_sum = 0.0
        self._n_visited = 0
        self._dow_sum = 0.0
        self._hod_sum = 0.0
        self._msq = 1.0
        self._prior_units = 0.0  # units behind a profile inherited from a prior forecaster
        # The levels after each of the last max_horizon buckets, in a ring: the origins of h-step forecasts.
        self._origins = [math.nan] * (self._h_max * k)
        # Tracked horizons, and for each horizon 1..max_horizon the position of the one it uses.
        grid = [h for h in _HORIZON_GRID[self.freq] if h < self._h_max] + [self._h_max]
        self._grid = grid
        self._grid_of = [next(i for i, g in enumerate(grid) if g >= h) for h in range(1, self._h_max + 1)]
        # Per tracked horizon: discounted squared error of each level (flat, horizon-major), and for the
        # dispersion the discounted sums of squared error, mean and squared mean of the combined forecast.
        self._sq_err = [0.0] * (len(grid) * k)
        self._e2 = [0.0] * len(grid)
        self._mu1 = [0.0] * len(grid)
        self._mu2 = [0.0] * len(grid)
        # Short-term persistence of the one-step deviation (weather, a promotion's days, a stock-out):
        # the last deviation, its slot's index, and discounted sums for its lag-1 regression coefficient.
        self._dev = 0.0
        self._dev_season = 1.0
        self._ar_num = 0.0
        self._ar_den = 0.0
        self._tz: tzinfo | None = None

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        """Parameter sets River's generic checks build the estimator with."""
        yield {}
        yield {"freq": "h", "alphas": (0.1, 0.3), "max_horizon": 12}

    # ------------------------------------------------------------------ time

    def _index(self, x: dict | None) -> int:
        """Bucket index of ``x["t"]`` (the bucket after the last one without it); remembers the time zone."""
        t = x.get("t") if x else None
        if t is None:
            return 0 if self.last is None else self.last + 1
        if isinstance(t, datetime):
            self._tz = t.tzinfo
        elif isinstance(t, date):
            pass
        elif isinstance(t, int | float):
            self._tz = UTC
        else:
            raise TypeError(f"x['t'] must be a datetime, a date or epoch seconds, not {type(t).__name__}")
        return bucket_index(t, self.freq)

    def _start(self, index: int) -> datetime:
        """Start of bucket ``index`` as a datetime in the caller's time zone (naive if it gave naive)."""
        start = _EPOCH + timedelta(seconds=index * _BUCKET_SECONDS[self.freq])
        return start.replace(tzinfo=self._tz)

    def starts(self, horizon: int) -> list[datetime]:
        """Start times of the ``horizon`` buckets that ``forecast(horizon)`` is about."""
        first = 0 if self.last is None else self.last + 1
        return [self._start(first + h) for h in range(horizon)]

    def _slot(self, index: int) -> int:
        if self.freq == "D":
            return (index + _EPOCH_WEEKDAY) % 7
        return ((index // 24 + _EPOCH_WEEKDAY) % 7) * 24 + index % 24

    # ------------------------------------------------------------------ seasonality

    def season(self, slot: int) -> float:
        """Multiplicative seasonal index of ``slot`` (mean 1 over a season; 1 before any data)."""
        if not self._visits[slot] or self._m_sum <= 1e-12:
            return 1.0
        mean = self._m_sum / self._n_visited
        full = self._m[slot] / mean
        if self.freq == "D":
            # Shrink towards a flat week by how many units the slot's mean rests on: for a slow seller
            # the weekday means are mostly noise.
            # A profile inherited from a prior (``from_prior``) rests on the prior's units, not this series'.
            units = mean * min(self._visits[slot], 1.0 / self.gamma) + self._prior_units
            w = units / (units + _SHRINK_UNITS)
            return w * full + (1.0 - w)
        hod = self._m_hod[slot % 24] * 24 / self._hod_sum
        # Before a whole day has closed there is no day-of-week profile yet.
        dow = self._m_dow[slot // 24] * 7 / self._dow_sum if self._n_dow[slot // 24] else 1.0
        factored = dow * hod
        # Trust the hour-of-week slot more as hourly volume grows (about 1 unit an hour = half weight).
        w = mean / (mean + 1.0)
        return w * full + (1.0 - w) * factored

    @property
    def seasonal_profile(self) -> list[float]:
        """Seasonal indices of all slots (Monday first; hourly: Monday 00:00 first)."""
        return [self.season(s) for s in range(self.period)]

    def _learn_season(self, slot: int, y: float) -> None:
        # Average while a slot is young, then forget at rate gamma: a good profile after one season.
        v = self._visits[slot]
        g = max(self.gamma, 1.0 / (v + 1))
        delta = g * (y - self._m[slot])
        self._m[slot] += delta
        self._m_sum += delta
        if not v:
            self._n_visited += 1
        self._visits[slot] = min(v + 1, 1_000_000)
        if self.freq == "h":
            d, h = divmod(slot, 24)
            # Hour of day: seen 7 times a week, so forget 7 times slower for the same memory in weeks.
            gh = max(self.gamma / 7, 1.0 / (self._n_hod[h] + 1))
            self._n_hod[h] = min(self._n_hod[h] + 1, 1_000_000)
            dh = gh * (y - self._m_hod[h])
            self._m_hod[h] += dh
            self._hod_sum += dh
            # Day of week: learn each whole day's mean once, when its last hour closes; an hourly EWMA
            # would swing with the time of day.
            self._day_sum += y
            if h == 23:
                gd = max(self.gamma, 1.0 / (self._n_dow[d] + 1))
                self._n_dow[d] = min(self._n_dow[d] + 1, 1_000_000)
                dd = gd * (self._day_sum / 24 - self._m_dow[d])
                self._m_dow[d] += dd
                self._dow_sum += dd
                self._day_sum = 0.0

    def _refresh(self) -> None:
        """Recompute the running sums (against float drift) and the mean square of the profile."""
        self._m_sum = sum(m for m, v in zip(self._m, self._visits, strict=True) if v)
        self._n_visited = sum(1 for v in self._visits if v)
        self._dow_sum = sum(self._m_dow)
        self._hod_sum = sum(self._m_hod)
        prof = self.seasonal_profile
        self._msq = sum(x * x for x in prof) / len(prof)

    # ------------------------------------------------------------------ learning

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Learn the total demand ``y`` of the bucket starting at ``x["t"]`` (missing buckets count as zero)."""
        index = self._index(x)
        y = float(y)
        if not math.isfinite(y):
            raise ValueError(f"demand must be a finite number, not {y!r}")
        if self.last is not None:
            if index <= self.last:
                return  # late or replayed bucket: already learned
            # Zero-fill the gap, but at most two seasons: past that the old state is stale anyway.
            first = self.last + 1
            if index - first > 2 * self.period:
                first = index - 2 * self.period
                self._day_sum = 0.0
            for missing in range(first, index):
                self._learn_index(missing, 0.0)
        self._learn_index(index, max(y, 0.0))

    def _weights(self, g: int) -> list[float]:
        """Weights of the levels at tracked horizon ``g``: inverse discounted squared error, summing to 1."""
        k = len(self.alphas)
        errs = self._sq_err[g * k:(g + 1) * k]
        best = min(errs)
        if best <= 0.0:  # nothing scored yet, or a perfect level: equal weights among the best
            tops = [1.0 if e <= best else 0.0 for e in errs]
            total = sum(tops)
            return [w / total for w in tops]
        inv = [best / e for e in errs]
        total = sum(inv)
        return [w / total for w in inv]

    def _dispersion(self, g: int) -> float:
        """NB dispersion ``k`` at tracked horizon ``g``: excess of the squared error over Poisson, per mu^2."""
        excess = self._e2[g] - self._mu1[g] + _K_PRIOR * _K_PRIOR_WEIGHT
        return max(excess / (self._mu2[g] + _K_PRIOR_WEIGHT), 1e-4)

    def _learn_index(self, index: int, y: float) -> None:
        slot = self._slot(index)
        s = self.season(slot)
        k = len(self.alphas)
        if self.n > 0:
            self._track_errors(index, y, s)
        # Clip a spike (a promotion, a bulk order) for the levels and the profile: it should neither lift
        # the next weeks nor reshape the week. The bound is a far quantile of the predicted distribution
        # (at least one unit), not a number of standard deviations: a slow seller's sales are skewed, and
        # clipping its ordinary sale of a few units would bias its mean down.
        mu = sum(w * lv for w, lv in zip(self._weights(0), self.levels, strict=True)) * s
        if self.n >= self.period:
            dev = y - mu
            self._ar_num = _AR_DISCOUNT * self._ar_num + dev * self._dev
            self._ar_den = _AR_DISCOUNT * self._ar_den + self._dev * self._dev
            self._dev = dev
            self._dev_season = s
        y_fit = y
        if self.n >= self.period:
            var = mu + self._dispersion(0) * mu * mu
            y_fit = min(y, max(_nb_quantiles(mu, var, (self.clip,))[0], 1.0))
        # A level steps by its rate while young at least 1/(n+1): a running mean until the rate takes over.
        gain = 1.0 / max(s, _MIN_SEASON_FOR_LEVEL)
        floor = 1.0 / (self.n + 1)
        for j, a in enumerate(self.alphas):
            lv = self.levels[j]
            self.levels[j] = max(lv + max(a, floor) * (y_fit - lv * s) * gain, 0.0)
        self._learn_season(slot, y_fit)
        self.n += 1
        self.last = index
        if self.n % self.period == 0 or self.n <= 24:
            self._refresh()
        ring = (index % self._h_max) * k
        self._origins[ring:ring + k] = self.levels

    def _track_errors(self, index: int, y: float, s: float) -> None:
        """Score each level's forecast made h buckets ago for ``index``, per tracked horizon."""
        k = len(self.alphas)
        d = _ERR_DISCOUNT
        for g, h in enumerate(self._grid):
            if h > self.n:
                break
            ring = ((index - h) % self._h_max) * k
            origin = self._origins[ring:ring + k]
            if origin[0] != origin[0]:  # NaN: no origin there yet
                continue
            # The profile moved at most one visit per slot since then: use today's index for this slot.
            base = g * k
            mu = 0.0
            for j, (w, lv) in enumerate(zip(self._weights(g), origin, strict=True)):
                e = y - lv * s
                self._sq_err[base + j] = d * self._sq_err[base + j] + e * e
                mu += w * lv * s
            e = y - mu
            self._e2[g] = d * self._e2[g] + e * e
            self._mu1[g] = d * self._mu1[g] + mu
            self._mu2[g] = d * self._mu2[g] + mu * mu

    # ------------------------------------------------------------------ forecasting

    def _mean(self, h: int) -> float:
        """Expected demand ``h`` buckets after the last learned one."""
        g = self._grid_of[min(h, self._h_max) - 1]
        base = sum(w * lv for w, lv in zip(self._weights(g), self.levels, strict=True))
        if self.last is None:
            return 0.0
        s = self.season(self._slot(self.last + h))
        phi = self.persistence
        if phi <= 0.0:
            return base * s
        # The last deviation decays by phi a bucket, scaled to the target slot's share of the week.
        carry = phi**h * self._dev * min(s / max(self._dev_season, _MIN_SEASON_FOR_LEVEL), 5.0)
        return max(base * s + carry, 0.0)

    @property
    def persistence(self) -> float:
        """Lag-1 autocorrelation of the one-step deviations (0 to 0.9): how much of today's surprise lasts."""
        if self._ar_den <= 0.0:
            return 0.0
        return min(max(self._ar_num / self._ar_den, 0.0), 0.9)

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """Expected demand (the mean) of each of the ``horizon`` buckets after the last learned one.

        Means add up over buckets (medians do not): sum them for demand over a lead time. ``xs`` is ignored
        (the buckets' times follow from the last learned one). Zeros before any data.
        """
        if self.last is None:
            return [0.0] * horizon
        return [self._mean(h) for h in range(1, horizon + 1)]

    def _levels(self, qs: Sequence[float] | None) -> tuple[float, ...]:
        if qs is None:
            lo = (1.0 - self.coverage) / 2
            return (lo, 0.5, 1.0 - lo)
        taus = tuple(float(q) for q in qs)
        if any(not 0.0 < q < 1.0 for q in taus):
            raise ValueError(f"quantile levels must be between 0 and 1, not {list(taus)}")
        return taus

    def forecast_quantiles(
        self, horizon: int, qs: Sequence[float] | None = None, xs: list[dict] | None = None
    ) -> list[tuple[float, ...]]:
        """Quantiles ``qs`` of demand in each of the next ``horizon`` buckets, one tuple per bucket.

        ``qs`` defaults to the interval's ends and the median, ``((1 - coverage) / 2, 0.5, (1 + coverage) / 2)``.
        Quantiles are whole units for small counts and 0 when a bucket without a sale is likely enough.
        """
        taus = self._levels(qs)
        out = []
        for h in range(1, horizon + 1):
            mu = self._mean(h) if self.last is not None else 0.0
            k = self._dispersion(self._grid_of[min(h, self._h_max) - 1])
            out.append(_nb_quantiles(mu, mu + k * mu * mu, taus))
        return out

    def total_quantiles(self, horizon: int, qs: Sequence[float] | None = None) -> tuple[float, ...]:
        """Quantiles ``qs`` of the total demand of the next ``horizon`` buckets (e.g. over a lead time).

        The mean is the sum of the means. The variance adds the buckets' Poisson parts and treats the excess
        (mostly the error of the level) as shared by all buckets, so it grows like the square of the horizon.
        """
        taus = self._levels(qs)
        if self.last is None or horizon < 1:
            return tuple(0.0 for _ in taus)
        total = shared = 0.0
        for h in range(1, horizon + 1):
            mu = self._mean(h)
            total += mu
            shared += math.sqrt(self._dispersion(self._grid_of[min(h, self._h_max) - 1])) * mu
        return _nb_quantiles(total, total + shared * shared, taus)

    # ------------------------------------------------------------------ cold start

    @classmethod
    def from_prior(cls, prior: DemandForecaster, level: float | None = None) -> DemandForecaster:
        """A forecaster for a new series: ``prior.clone()`` with ``prior``'s seasonal profile and dispersion.

        ``prior`` is typically the store's forecaster (all skus summed); ``level`` is the new sku's expected
        demand per bucket (default: the prior's). It then adapts with its own data as usual.

        >>> store = DemandForecaster()
        >>> for i in range(28):
        ...     store.learn_one([10, 10, 10, 10, 20, 30, 10][(i + 3) % 7], {"t": float(i * 86400)})
        >>> new = DemandForecaster.from_prior(store, level=1.0)
        >>> new.learn_one(1.0, {"t": float(28 * 86400)})
        >>> round(new.forecast(2)[1], 2)  # a Saturday
        1.99
        """
        new = prior.clone()
        prior_level = sum(prior.levels) / len(prior.levels)
        scale = 1.0 if level is None or prior_level <= 0 else level / prior_level
        new._m = [m * scale for m in prior._m]
        new._m_dow = [m * scale for m in prior._m_dow]
        new._m_hod = [m * scale for m in prior._m_hod]
        # Count the prior as one visit per slot: the new series' own data soon outweighs it.
        new._visits = [min(v, 1) for v in prior._visits]
        new._n_dow = [min(v, 1) for v in prior._n_dow]
        new._n_hod = [min(v, 1) for v in prior._n_hod]
        if prior._n_visited:
            prior_mean = prior._m_sum / prior._n_visited
            weeks = min(sum(prior._visits) / prior._n_visited, 1.0 / prior.gamma)
            new._prior_units = prior_mean * weeks + prior._prior_units
        new._refresh()
        new.levels = [prior_level * scale] * len(new.alphas)
        # The prior level weighs like one season of data in the new series' early running mean.
        new.n = min(prior.n, new.period)
        new._tz = prior._tz
        return new

    # ------------------------------------------------------------------ state

    def __getstate__(self) -> dict[str, Any]:
        return {"state_version": STATE_VERSION, "river_version": river.__version__, **self.__dict__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("state_version", None)
        river_version = state.pop("river_version", None)
        if version != STATE_VERSION or river_version != river.__version__:
            # What another release learned may mean something else here: learn afresh with the same
            # parameters rather than stop a worker that restores its tables after an upgrade.
            _log.warning("forecaster state version %s (river %s), this code reads %s (river %s): learning restarts",
                         version, river_version, STATE_VERSION, river.__version__)
            params = {k: state[k] for k in _PARAMS if k in state}
            try:
                fresh = DemandForecaster(**params)
            except (TypeError, ValueError):  # parameters that no longer exist or hold
                fresh = DemandForecaster(freq=params.get("freq", "D") if params.get("freq") in _PERIOD else "D")
            state = fresh.__dict__
            state["relearned_from"] = version
        self.__dict__.update(state)


_PARAMS = ("freq", "alphas", "gamma", "coverage", "max_horizon", "clip")


def _nb_quantiles(mean: float, var: float, taus: Sequence[float]) -> tuple[float, ...]:
    """Quantiles at ``taus`` of a count with this mean and variance (negative binomial, Poisson if var <= mean).

    Exact (whole units) for small means; for large ones the gamma distribution with the same two moments
    (Wilson-Hilferty), where the count's discreteness no longer matters.
    """
    if mean <= 1e-12:
        return tuple(0.0 for _ in taus)
    var = max(var, mean)
    if mean > 40.0:
        shape = mean * mean / var
        theta = var / mean
        c = 1.0 / (9.0 * shape)
        return tuple(max(shape * theta * (1.0 - c + _normal_quantile(q) * math.sqrt(c)) ** 3, 0.0) for q in taus)
    # Walk the pmf: P(0) and the ratio P(n+1)/P(n), for NB(r, p) with mean r(1-p)/p, or Poisson.
    if var > mean * (1.0 + 1e-9):
        p = mean / var
        r = mean * p / (1.0 - p)
        pmf = math.exp(r * math.log(p))

        def ratio(n: int) -> float:
            return (n + r) / (n + 1) * (1.0 - p)
    else:
        pmf = math.exp(-mean)

        def ratio(n: int) -> float:
            return mean / (n + 1)
    order = sorted(range(len(taus)), key=taus.__getitem__)
    out = [0.0] * len(taus)
    cdf = pmf
    n = 0
    limit = int(mean + 40.0 * math.sqrt(var)) + 50
    for j in order:
        while cdf < taus[j] and n < limit:
            pmf *= ratio(n)
            n += 1
            cdf += pmf
        out[j] = float(n)
    return tuple(out)


def _normal_quantile(p: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)

