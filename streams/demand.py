"""Demand forecasting in the stream: daily per (store, SKU) and hourly per store, updated per closed bucket.

An observer of the POS pipeline. Final POS windows add their units per SKU to the current day's and hour's
buckets (in the store's state); when a window of a later bucket arrives, the closed bucket is learned,
and the forecast for the next buckets (with an interval) and the actual that arrived are written to the
``forecast`` measurement. Forecasters per SKU live in an auxiliary table keyed ``store/sku``, changelogged
only when their bucket closes (not per batch). SKUs without sales that day learn a zero.
"""

from __future__ import annotations

from models.forecast import DemandForecaster
from sinks.lineproto import line
from streams.pipeline import EntityState, Output

DAY = 86_400
HOUR = 3_600
TOTAL = "_total"


class Demand:
    """Keeps per-SKU daily and per-store hourly forecasters current as POS windows close."""

    def __init__(self, aux: dict | None = None, day_horizon: int = 7, hour_horizon: int = 24) -> None:
        self.aux = aux  # set by the pipeline owner to the auxiliary state mapping
        self.day_horizon = day_horizon
        self.hour_horizon = hour_horizon

    def on_value(self, entity: str, state: EntityState, ts: float, values: dict[str, float], out: Output) -> None:
        """A final POS window: fold its units into the open buckets, closing the buckets it has moved past."""
        m = state.models
        if ts <= m.get("demand_seen", -1.0):
            return  # a corrected window: the bucket totals take each window once
        m["demand_seen"] = ts
        agg = state.windows.windows.get(int(ts))
        units = {sku: qty for sku, (qty, _) in agg.skus.items()} if agg is not None else {}
        self._bucket(entity, state, "day", DAY, ts, units, out)
        self._bucket(entity, state, "hour", HOUR, ts, {TOTAL: sum(units.values())}, out)

    def on_tick(self, entity: str, state: EntityState, now: float, out: Output) -> None:
        """Nothing to do on ticks: zero windows arrive through ``on_value`` from the scoring observer."""

    def _bucket(self, entity: str, state: EntityState, kind: str, size: int, ts: float, units: dict[str, float],
                out: Output) -> None:
        m = state.models
        start = int(ts // size) * size
        key_start, key_units = f"demand_{kind}_start", f"demand_{kind}_units"
        open_start = m.get(key_start)
        if open_start is not None and start > open_start:
            self._close(entity, state, kind, open_start, m[key_units], out)
            m[key_units] = {}
        if open_start is None or start > open_start:
            m[key_start] = start
            m.setdefault(key_units, {})
        acc = m[key_units]
        for sku, q in units.items():
            acc[sku] = acc.get(sku, 0.0) + q
        if kind == "day":
            m.setdefault("skus", set()).update(units)

    def _close(self, store: str, state: EntityState, kind: str, start: int, units: dict[str, float],
               out: Output) -> None:
        """Learn a closed bucket and write its actuals and the next forecasts."""
        skus = state.models.get("skus", set()) if kind == "day" else {TOTAL}
        freq, horizon = ("D", self.day_horizon) if kind == "day" else ("h", self.hour_horizon)
        for sku in skus:
            key = f"{store}/{sku}@{kind}"
            f = self.aux.get(key) if self.aux is not None else None
            if f is None:
                f = DemandForecaster(freq=freq, max_horizon=max(horizon, 1))
            actual = units.get(sku, 0.0)
            f.learn_one(float(start), actual)
            tags = {"store": store, "sku": sku, "bucket": kind}
            out.lines.append(line("forecast", tags, {"actual": round(actual, 6)}, start * 1000))
            for fc in f.forecast(horizon):
                out.lines.append(line("forecast", tags, {"predicted": round(fc.predicted, 4), "lower": round(
                    fc.lower, 4), "upper": round(fc.upper, 4)}, int(fc.start.timestamp() * 1000)))
            if self.aux is not None:
                self.aux[key] = f
                out.aux_changed[key] = state.partition
        out.counts["forecasts"] += len(skus)
