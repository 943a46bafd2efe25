"""A River forecaster made fit to forecast demand: quantiles learned online from its own errors.

River's ``HoltWinters`` and ``SNARIMAX`` give one number per bucket. The stream needs more of a demand
forecaster (``OPSMON_FORECASTERS``): the 80% interval it writes beside the forecast, the quantile of demand
over a lead time that a reorder point is, and the start of each forecast bucket. :class:`ErrorQuantiles`
wraps any River forecaster and learns those from what the model actually got wrong: for each horizon h it
keeps the latest errors of its h-bucket-ahead forecasts, and of its forecasts of the total over h buckets.
Demand is never negative, so neither is a forecast or a quantile.

>>> from river import time_series
>>> f = ErrorQuantiles(time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=7), max_horizon=7)
>>> for day in range(120):
...     f.learn_one([2.0, 3.0, 3.0, 4.0, 6.0, 9.0, 1.0][day % 7] + (day * 7 % 5) - 2.0, {"t": day * 86400.0})
>>> [round(x, 1) for x in f.forecast(3)]
[2.3, 4.0, 2.5]
>>> lo, median, hi = f.forecast_quantiles(1)[0]
>>> lo <= median <= hi and lo >= 0.0
True
>>> f.total_quantiles(7, (0.9,))[0] > sum(f.forecast(7))
True
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from river import time_series

from models.river_spec import FORECASTER_CLASSES, FORECASTER_PRESETS, parse_expression
from models.river_state import dump_with_model, load_model

BUCKET_SECONDS = {"D": 86400, "h": 3600}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bump when the meaning or layout of the pickled state changes: an older state relearns (with a warning).
STATE_VERSION = 1
MAX_GAP = 400  # missing buckets learned as zero demand at most (a longer gap starts over from the next bucket)


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear between order statistics)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class ErrorQuantiles(time_series.base.Forecaster):
    """Any River forecaster, with demand quantiles from its own recent errors per horizon.

    Parameters
    ----------
    forecaster
        The River forecaster (``learn_one(y)``, ``forecast(horizon)``) that makes the point forecasts.
    freq
        ``"D"`` or ``"h"``: the buckets' length, so bucket times can be given and told back.
    max_horizon
        The longest horizon whose errors are kept; longer totals are scaled from it.
    coverage
        Width of the default interval (``forecast_quantiles`` without ``qs``).
    memory
        Errors kept per horizon: the interval follows what the model got wrong lately.
    spec
        The expression or preset the forecaster was built from (``OPSMON_FORECASTERS``): a state pickled by
        another river or opsmon version is rebuilt from it and learns afresh, instead of failing to load.
    """

    def __init__(self, forecaster: Any, freq: str = "D", max_horizon: int = 14, coverage: float = 0.8,
                 memory: int = 100, spec: str = "") -> None:
        if freq not in BUCKET_SECONDS:
            raise ValueError(f"freq must be one of {', '.join(BUCKET_SECONDS)}, not {freq!r}")
        self.forecaster = forecaster
        self.freq = freq
        self.max_horizon = max_horizon
        self.coverage = coverage
        self.memory = memory
        self.spec = spec
        self.relearned_from: object = None  # versions of a pickle that had to be relearned
        self.last: int | None = None  # index of the last bucket learned
        self._made: deque[list[float]] = deque(maxlen=max_horizon)  # forecasts made after each recent bucket
        self._actuals: deque[float] = deque(maxlen=max_horizon)
        self._errors = [deque(maxlen=memory) for _ in range(max_horizon)]  # [h-1]: actual minus h-ahead forecast
        self._total_errors = [deque(maxlen=memory) for _ in range(max_horizon)]  # [h-1]: over h buckets

    @classmethod
    def _unit_test_params(cls) -> dict:
        yield {"forecaster": time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=7)}

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Learn the demand ``y`` of the bucket starting at ``x["t"]`` (buckets skipped since count as zero)."""
        t = (x or {}).get("t")
        index = (0 if self.last is None else self.last + 1) if t is None else int(float(t) // self._length)
        if self.last is not None and index <= self.last:
            return  # a bucket learned already (a replay): nothing new
        if self.last is not None and 0 < index - self.last - 1 <= MAX_GAP:
            for _ in range(index - self.last - 1):
                self._learn_bucket(0.0)
        self._learn_bucket(float(y))
        self.last = index

    def _learn_bucket(self, y: float) -> None:
        self._actuals.append(y)
        actuals = list(self._actuals)
        # ``_made[-h]`` was made h buckets ago: its h-th value was about this bucket, its first h about the last h
        for h, preds in enumerate(reversed(self._made), start=1):
            self._errors[h - 1].append(y - preds[h - 1])
            self._total_errors[h - 1].append(sum(actuals[-h:]) - sum(preds[:h]))
        self.forecaster.learn_one(y)
        self._made.append(self._points(self.max_horizon))

    @property
    def _length(self) -> int:
        return BUCKET_SECONDS[self.freq]

    def _points(self, horizon: int) -> list[float]:
        """The wrapped model's forecasts; the recent mean while it cannot forecast yet (HoltWinters' first season)."""
        try:
            points = [float(v) for v in self.forecaster.forecast(horizon)]
        except (IndexError, ValueError, ZeroDivisionError):
            points = []
        if len(points) != horizon or not all(math.isfinite(v) for v in points):
            mean = sum(self._actuals) / len(self._actuals) if self._actuals else 0.0
            points = [mean] * horizon
        return points

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """Expected demand of each of the next ``horizon`` buckets (never below zero)."""
        if self.last is None:
            return [0.0] * horizon
        return [max(0.0, v) for v in self._points(horizon)]

    def _levels(self, qs: Sequence[float] | None) -> tuple[float, ...]:
        if qs is None:
            lo = (1.0 - self.coverage) / 2
            return (lo, 0.5, 1.0 - lo)
        return tuple(float(q) for q in qs)

    def forecast_quantiles(self, horizon: int, qs: Sequence[float] | None = None,
                           xs: list[dict] | None = None) -> list[tuple[float, ...]]:
        """Quantiles ``qs`` of each of the next ``horizon`` buckets' demand: the forecast plus its error's."""
        taus = self._levels(qs)
        means = self._points(horizon) if self.last is not None else [0.0] * horizon
        out = []
        for h, mean in enumerate(means, start=1):
            errors = self._errors[min(h, self.max_horizon) - 1]
            out.append(tuple(max(0.0, mean + (_quantile(errors, q) if errors else 0.0)) for q in taus))
        return out

    def total_quantiles(self, horizon: int, qs: Sequence[float] | None = None) -> tuple[float, ...]:
        """Quantiles ``qs`` of the total demand of the next ``horizon`` buckets (e.g. over a lead time)."""
        taus = self._levels(qs)
        if horizon <= 0:
            return tuple(0.0 for _ in taus)
        total = sum(self.forecast(horizon))
        kept = min(horizon, self.max_horizon)
        errors = self._total_errors[kept - 1]
        scale = horizon / kept  # beyond the longest horizon kept, the error grows with the horizon
        return tuple(max(0.0, total + (scale * _quantile(errors, q) if errors else 0.0)) for q in taus)

    def __getstate__(self) -> dict[str, Any]:
        return dump_with_model(self.__dict__, "forecaster", STATE_VERSION)

    def __setstate__(self, state: dict[str, Any]) -> None:
        model, versions = load_model(state, "forecaster", STATE_VERSION, "River forecaster")
        if model is None:
            spec = state.get("spec", "")
            fresh = ErrorQuantiles(parse_expression(FORECASTER_PRESETS.get(spec, spec), FORECASTER_CLASSES,
                                                    "a stored forecaster"),
                                   **{k: state[k] for k in ("freq", "max_horizon", "coverage", "memory", "spec")})
            self.__dict__.update(fresh.__dict__)
            self.relearned_from = versions
            return
        state["forecaster"] = model
        self.__dict__.update(state)

    def starts(self, horizon: int) -> list[datetime]:
        """Start times of the ``horizon`` buckets that ``forecast(horizon)`` is about."""
        first = 0 if self.last is None else self.last + 1
        return [_EPOCH + timedelta(seconds=(first + h) * self._length) for h in range(horizon)]
