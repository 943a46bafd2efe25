"""Online demand forecaster for one (store, sku) series, fed with closed hourly or daily buckets.

``DemandForecaster`` is a River forecaster (``river.time_series.base.Forecaster``): ``learn_one(y, x)``
learns the total demand ``y`` of one closed bucket, and ``forecast(horizon)`` returns the expected demand
(the mean, as plain floats) of the next ``horizon`` buckets. Quantiles, the median and the prediction
interval come from ``forecast_quantiles``. The time of the bucket travels in ``x`` as ``x = {"t": start}``
(a datetime, a date or epoch seconds); without ``"t"`` a call learns the bucket after the last one, as
River's own forecasters do. Other keys of ``x`` are ignored.

The model is a seasonal exponential-smoothing model built for small shops' intermittent demand:

- a level (with an optional damped trend) of de-seasonalised demand, updated per bucket with a step
  weighted by the bucket's seasonal index, so closed or near-empty slots (night hours, Sundays) barely
  move it, and with the one-step error clipped so a promotion spike does not drag it up for weeks;
- a multiplicative seasonal profile kept as per-slot exponentially weighted *means of demand* (no ratios,
  so zeros are harmless), normalised to mean 1: day-of-week for daily buckets; for hourly buckets the full
  hour-of-week profile shrunk towards day-of-week x hour-of-day, which has 7 to 24 times more data per slot;
- quantiles per horizon from online quantile tracking of the normalised h-step residuals
  ``(y - mu) / sqrt(mu + 0.1 mu^2)``, so the interval keeps roughly its nominal coverage as the series
  changes.

Forecasts are never negative. Missing buckets between two ``learn_one`` calls are learned as zero sales;
a bucket at or before the last learned one is ignored, so replaying after a crash never double-counts.
State is a few hundred floats in plain attributes; a pickle records the model's state version and River's
version, and a pickle from another version loads as a fresh forecaster with the same parameters (with a
warning), never an error.

>>> from datetime import date, timedelta
>>> f = DemandForecaster(freq="D")
>>> start = date(2024, 1, 1)  # a Monday
>>> for i in range(8 * 7):
...     f.learn_one([2, 2, 2, 2, 6, 9, 0][i % 7], {"t": start + timedelta(days=i)})
>>> [round(y) for y in f.forecast(7)]
[2, 2, 2, 2, 6, 9, 0]
>>> f.starts(1)[0].date()
datetime.date(2024, 2, 26)
>>> lo, median, hi = f.forecast_quantiles(1)[0]
>>> lo <= 2 <= hi
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
STATE_VERSION = 2

_log = logging.getLogger(__name__)

Freq = Literal["h", "D"]

_EPOCH = datetime(1970, 1, 1)
_BUCKET_SECONDS = {"h": 3600, "D": 86400}
_PERIOD = {"h": 168, "D": 7}
_DEFAULT_MAX_HORIZON = {"h": 48, "D": 28}
# Horizons whose residual quantiles are tracked; a horizon in between uses the next tracked one.
_HORIZON_GRID = {"D": (1, 2, 3, 4, 5, 6, 7, 10, 14, 21, 28), "h": (1, 2, 3, 4, 6, 8, 12, 18, 24, 36, 48)}
# 1970-01-01 was a Thursday: day index 0 is weekday 3 (Monday = 0).
_EPOCH_WEEKDAY = 3
# Variance of counts grows like mu + DISPERSION * mu^2 (negative-binomial-like), floored at MU_FLOOR.
_DISPERSION = 0.1
_MU_FLOOR = 0.1


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


def _noise_scale(mu: float) -> float:
    """Normaliser of residuals: about the standard deviation of counts with mean ``mu``."""
    mu = max(mu, _MU_FLOOR)
    return math.sqrt(mu + _DISPERSION * mu * mu)


class DemandForecaster(Forecaster):
    """Seasonal exponential smoothing of demand per closed bucket, with per-horizon quantiles.

    Parameters
    ----------
    freq
        Bucket length: ``"D"`` (daily, weekly season of 7) or ``"h"`` (hourly, weekly season of 168).
    alpha
        Level step.
    beta
        Trend step (0 = no trend).
    phi
        Trend damping.
    gamma
        Seasonal step per visit of a slot.
    coverage
        Coverage of the prediction interval (its ends are the quantiles ``(1 -+ coverage) / 2``).
    max_horizon
        Furthest horizon with its own residual quantiles (further ones reuse it); default 28 daily, 48 hourly.
    clip
        One-step error (in noise scales) beyond which demand counts as an outlier for the level and profile.

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
        alpha: float = 0.05,
        beta: float = 0.0,
        phi: float = 0.9,
        gamma: float = 0.1,
        coverage: float = 0.8,
        max_horizon: int | None = None,
        clip: float = 3.0,
    ) -> None:
        if freq not in _PERIOD:
            raise ValueError(f"freq must be 'h' or 'D', not {freq!r}")
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be between 0 and 1, not {coverage!r}")
        if max_horizon is not None and max_horizon < 1:
            raise ValueError(f"max_horizon must be at least 1, not {max_horizon!r}")
        self.freq: Freq = freq
        self.alpha = alpha
        self.beta = beta
        self.phi = phi
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
        self.level = 0.0
        self.trend = 0.0
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
        # Origins of the last max_horizon buckets: (level, trend) after learning each, in a ring.
        self._origin_level = [math.nan] * self._h_max
        self._origin_trend = [0.0] * self._h_max
        # Tracked horizons, and for each horizon 1..max_horizon the position of the one it uses.
        grid = [h for h in _HORIZON_GRID[self.freq] if h < self._h_max] + [self._h_max]
        self._grid = grid
        self._grid_of = [next(i for i, g in enumerate(grid) if g >= h) for h in range(1, self._h_max + 1)]
        # Per tracked horizon: quantiles of the normalised residuals (interval ends and median) and the
        # mean absolute residual, which sets their step size.
        z = _normal_quantile(0.5 + self.coverage / 2)
        self._q_lo = [-z] * len(grid)
        self._q_hi = [z] * len(grid)
        self._q_mid = [0.0] * len(grid)
        self._z_abs = [0.8] * len(grid)
        self._tz: tzinfo | None = None

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        """Parameter sets River's generic checks build the estimator with."""
        yield {}
        yield {"freq": "h", "beta": 0.05, "max_horizon": 12}

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
            return full
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

    def _learn_index(self, index: int, y: float) -> None:
        slot = self._slot(index)
        s = self.season(slot)
        base = max(self.level + self.phi * self.trend, 0.0)
        mu = base * s
        if self.n > 0:
            self._track_residuals(index, y, s)
        # Clip the error for the level and profile so one promotion does not lift the next weeks.
        y_fit = y
        if self.n >= self.period:
            # 1.25 x mean absolute deviation is about one standard deviation.
            bound = self.clip * self._z_abs[0] * 1.25 * _noise_scale(mu)
            y_fit = min(max(y, mu - bound), mu + bound)
        err = y_fit - mu
        a = max(self.alpha, 1.0 / (self.n + 1))
        level = base + a * err * s / max(self._msq, 1e-6)
        level = max(level, 0.0)
        if self.beta > 0.0 and self.n > 0:
            self.trend = self.phi * self.trend + self.beta * (level - base)
        self.level = level
        self._learn_season(slot, y_fit)
        self.n += 1
        self.last = index
        if self.n % self.period == 0 or self.n <= 24:
            self._refresh()
        ring = index % self._h_max
        self._origin_level[ring] = self.level
        self._origin_trend[ring] = self.trend

    def _track_residuals(self, index: int, y: float, s: float) -> None:
        """Update each tracked horizon's residual quantiles with its forecast made for ``index``."""
        lo_tau = (1.0 - self.coverage) / 2
        hi_tau = 1.0 - lo_tau
        for i, h in enumerate(self._grid):
            if h > self.n:
                break
            ring = (index - h) % self._h_max
            level = self._origin_level[ring]
            if level != level:  # NaN: no origin there yet
                continue
            # The profile moved at most one visit per slot since then: use today's index for this slot.
            mu = max(level + self.trend_sum(h, self._origin_trend[ring]), 0.0) * s
            z = (y - mu) / _noise_scale(mu)
            self._z_abs[i] += 0.02 * (abs(z) - self._z_abs[i])
            step = 0.05 * self._z_abs[i]
            self._q_lo[i] += step * (lo_tau - (z <= self._q_lo[i]))
            self._q_hi[i] += step * (hi_tau - (z <= self._q_hi[i]))
            self._q_mid[i] += step * (0.5 - (z <= self._q_mid[i]))

    def trend_sum(self, h: int, trend: float | None = None) -> float:
        """Damped trend added ``h`` buckets ahead: ``trend * (phi + ... + phi^h)``."""
        b = self.trend if trend is None else trend
        if b == 0.0:
            return 0.0
        p = self.phi
        return b * (p * (1 - p**h) / (1 - p) if p != 1.0 else float(h))

    # ------------------------------------------------------------------ forecasting

    def _mu(self, h: int) -> float:
        """Expected demand ``h`` buckets after the last learned one."""
        return max(self.level + self.trend_sum(h), 0.0) * self.season(self._slot(self.last + h))

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """Expected demand (the mean) of each of the ``horizon`` buckets after the last learned one.

        Means add up over buckets (medians do not): sum them for demand over a lead time. ``xs`` is ignored
        (the buckets' times follow from the last learned one). Zeros before any data.
        """
        if self.last is None:
            return [0.0] * horizon
        return [self._mu(h) for h in range(1, horizon + 1)]

    def forecast_quantiles(
        self, horizon: int, qs: Sequence[float] | None = None, xs: list[dict] | None = None
    ) -> list[tuple[float, ...]]:
        """Quantiles ``qs`` of demand for each of the next ``horizon`` buckets, one tuple per bucket.

        ``qs`` defaults to the interval's ends and the median, ``((1 - coverage) / 2, 0.5, (1 + coverage) / 2)``;
        levels between the tracked ones are interpolated. Quantiles are never negative and never cross.
        """
        lo_tau = (1.0 - self.coverage) / 2
        levels = (lo_tau, 0.5, 1.0 - lo_tau)
        taus = levels if qs is None else tuple(float(q) for q in qs)
        if any(not 0.0 < q < 1.0 for q in taus):
            raise ValueError(f"quantile levels must be between 0 and 1, not {list(taus)}")
        out: list[tuple[float, ...]] = []
        for h in range(1, horizon + 1):
            mu = self._mu(h) if self.last is not None else 0.0
            i = self._grid_of[min(h, self._h_max) - 1]
            scale = _noise_scale(mu)
            zs = (self._q_lo[i], self._q_mid[i], self._q_hi[i])
            values = []
            for q in taus:
                z = _interpolate(q, levels, zs)
                values.append(max(mu + z * scale, 0.0))
            # Quantile crossing can happen while the trackers settle: sort them.
            order = sorted(range(len(taus)), key=taus.__getitem__)
            ys = sorted(values)
            res = [0.0] * len(taus)
            for rank, j in enumerate(order):
                res[j] = ys[rank]
            out.append(tuple(res))
        return out

    # ------------------------------------------------------------------ cold start

    @classmethod
    def from_prior(cls, prior: DemandForecaster, level: float | None = None) -> DemandForecaster:
        """A forecaster for a new series: ``prior.clone()`` with ``prior``'s seasonal profile and quantiles.

        ``prior`` is typically the store's forecaster (all skus summed); ``level`` is the new sku's expected
        demand per bucket (default: the prior's). It then adapts with its own data as usual.

        >>> store = DemandForecaster()
        >>> for i in range(28):
        ...     store.learn_one([10, 10, 10, 10, 20, 30, 10][(i + 3) % 7], {"t": float(i * 86400)})
        >>> new = DemandForecaster.from_prior(store, level=1.0)
        >>> new.learn_one(1.0, {"t": float(28 * 86400)})
        >>> round(new.forecast(2)[1], 2)  # a Saturday
        2.1
        """
        new = prior.clone()
        scale = 1.0 if level is None or prior.level <= 0 else level / prior.level
        new._m = [m * scale for m in prior._m]
        new._m_dow = [m * scale for m in prior._m_dow]
        new._m_hod = [m * scale for m in prior._m_hod]
        # Count the prior as one visit per slot: the new series' own data soon outweighs it.
        new._visits = [min(v, 1) for v in prior._visits]
        new._n_dow = [min(v, 1) for v in prior._n_dow]
        new._n_hod = [min(v, 1) for v in prior._n_hod]
        new._refresh()
        new._q_lo = list(prior._q_lo)
        new._q_hi = list(prior._q_hi)
        new._q_mid = list(prior._q_mid)
        new._z_abs = list(prior._z_abs)
        new.level = prior.level * scale
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


_PARAMS = ("freq", "alpha", "beta", "phi", "gamma", "coverage", "max_horizon", "clip")


def _interpolate(q: float, levels: Sequence[float], values: Sequence[float]) -> float:
    """Piecewise-linear value at level ``q`` through ``(levels, values)``, flat beyond the ends."""
    if q <= levels[0]:
        return values[0]
    for (l0, v0), (l1, v1) in zip(zip(levels, values, strict=True), zip(levels[1:], values[1:], strict=True),
                                  strict=False):
        if q <= l1:
            return v0 + (v1 - v0) * (q - l0) / (l1 - l0)
    return values[-1]


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

