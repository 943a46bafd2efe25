"""Stock level of one (store, sku) and when it runs out, given a ``DemandForecaster``'s expected demand.

The level comes from counts (``set_level``), deliveries (``add_delivery``) and sales (``record_sale``).
A count is the truth at its time: sales and deliveries stamped before the last count are already in it
and are ignored. ``days_to_stockout`` walks the forecaster's expected demand (``forecast()``: means
add up, medians do not) from ``now`` until it has eaten the stock; ``at_risk`` says whether that happens
within a supplier's lead time at the expected demand. ``reorder_point`` is the stock that covers the lead
time's demand with a chosen probability, from the forecaster's quantiles of the lead time's total: stock
below it is a stock-out risk even when the expected demand would not use it up.

Times are datetimes (wall-clock, as the forecaster reads them) or epoch seconds (UTC).

>>> from models.forecast import DemandForecaster
>>> f = DemandForecaster()
>>> for day in range(28):
...     f.learn_one(4.0, {"t": float(day * 86400)})
>>> s = StockTracker()
>>> s.set_level(28 * 86400.0, 30)
>>> s.record_sale(28 * 86400.0 + 3600, 2)
>>> s.level
28.0
>>> round(s.days_to_stockout(28 * 86400.0, f), 1), s.at_risk(lead_time_days=5), s.at_risk(lead_time_days=10)
(7.0, False, True)
>>> s.reorder_point(f, lead_time_days=5, service_level=0.9) > 5 * 4  # more than the mean: a margin
True
"""

from __future__ import annotations

import math
from datetime import datetime

from models.forecast import DemandForecaster, bucket_seconds

__all__ = ["StockTracker"]

_EPOCH = datetime(1970, 1, 1)


def _seconds(t: datetime | float) -> float:
    """Wall-clock seconds since the epoch, the same reading of time as ``bucket_index``."""
    if isinstance(t, datetime):
        return (t.replace(tzinfo=None) - _EPOCH).total_seconds()
    return float(t)


class StockTracker:
    """Stock on hand of one (store, sku) from counts, deliveries and sales; pure and picklable."""

    def __init__(self) -> None:
        self.level = 0.0
        self.counted_at: float | None = None  # time of the last count, seconds
        self.known = False  # no estimate before the first count
        self.days_left: float | None = None  # last estimate of days_to_stockout

    def set_level(self, t: datetime | float, quantity: float) -> None:
        """Record a stock count at ``t`` (older counts than the last one are ignored)."""
        ts = _seconds(t)
        if self.counted_at is not None and ts < self.counted_at:
            return
        self.level = float(quantity)
        self.counted_at = ts
        self.known = True

    def add_delivery(self, t: datetime | float, quantity: float) -> None:
        """Add a delivery received at ``t``."""
        if not self._before_count(t):
            self.level += float(quantity)

    def record_sale(self, t: datetime | float, quantity: float) -> None:
        """Take a sale at ``t`` off the stock (a negative quantity, a refund, puts it back)."""
        if not self._before_count(t):
            self.level -= float(quantity)

    def _before_count(self, t: datetime | float) -> bool:
        # Events older than the last count are already reflected in it.
        return self.counted_at is not None and _seconds(t) < self.counted_at

    def days_to_stockout(
        self, now: datetime | float, forecaster: DemandForecaster, max_days: float = 28.0
    ) -> float:
        """Days from ``now`` until expected demand uses up the stock (``inf`` if not within ``max_days``)."""
        stock = max(self.level, 0.0)
        if stock <= 0.0:
            self.days_left = 0.0
            return 0.0
        t_now = _seconds(now)
        length = bucket_seconds(forecaster.freq)
        last_end = t_now + max_days * 86400.0
        # Forecasts start after the last learned bucket; cover the time up to max_days after now.
        first_start = (forecaster.last + 1) * length if forecaster.last is not None else t_now
        horizon = max(0, math.ceil((last_end - first_start) / length))
        used = 0.0
        for start_at, mean in zip(forecaster.starts(horizon), forecaster.forecast(horizon), strict=True):
            start = _seconds(start_at)
            end = start + length
            if end <= t_now:
                continue
            begin = max(start, t_now)
            demand = mean * (end - begin) / length
            if used + demand >= stock and demand > 0:
                # Runs out inside this bucket: interpolate at the bucket's (uniform) demand rate.
                when = begin + (stock - used) / demand * (end - begin)
                self.days_left = min((when - t_now) / 86400.0, max_days)
                return self.days_left
            used += demand
            if end >= last_end:
                break
        self.days_left = math.inf
        return math.inf

    def reorder_point(self, forecaster: DemandForecaster, lead_time_days: float, service_level: float = 0.9) -> float:
        """Stock that covers the demand of the next ``lead_time_days`` with probability ``service_level``.

        The ``service_level`` quantile of the lead time's total demand (``DemandForecaster.total_quantiles``):
        an order placed when stock falls below it arrives before a stock-out, ``service_level`` of the time.
        """
        if not 0.0 < service_level < 1.0:
            raise ValueError(f"service_level must be between 0 and 1, not {service_level!r}")
        if lead_time_days < 0:
            raise ValueError(f"lead_time_days must not be negative, not {lead_time_days!r}")
        buckets = math.ceil(lead_time_days * 86400.0 / bucket_seconds(forecaster.freq))
        return forecaster.total_quantiles(buckets, (service_level,))[0]

    def at_risk(self, lead_time_days: float, safety_days: float = 0.0) -> bool:
        """Whether stock runs out before an order placed now (arriving in ``lead_time_days``) lands.

        Uses the last ``days_to_stockout`` estimate; False before the first count or estimate.
        """
        if not self.known or self.days_left is None:
            return False
        return self.days_left <= lead_time_days + safety_days
