"""Demand forecasting in the stream: daily per (store, SKU) and hourly per store, updated per closed bucket.

An observer of the POS pipeline. Final POS windows add their units per SKU to the current day's and hour's
buckets (in the store's state); when a window of a later bucket arrives, the closed bucket is learned,
and the forecast for the next buckets (with an interval) and the actual that arrived are written to the
``forecast`` measurement (``predicted`` is the expected demand, ``median``, ``lower`` and ``upper`` the
forecaster's quantiles). Forecasters per SKU live in an auxiliary table keyed ``store/sku``, changelogged
only when their bucket closes (not per batch). SKUs without sales that day learn a zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.error_quantiles import ErrorQuantiles
from models.forecast import DemandForecaster
from models.river_spec import OPSMON, ModelSpecs
from models.stock import StockTracker
from sinks.lineproto import line
from streams.pipeline import EntityState, Output
from streams.schemas import StockEvent

DAY = 86_400
HOUR = 3_600
TOTAL = "_total"
UNITS = "units"  # the metric name of demand series in OPSMON_FORECASTERS patterns


@dataclass
class StockState:
    """Stock of one (store, SKU), with the last stock-topic offset applied (replays are skipped)."""

    partition: int
    tracker: StockTracker = field(default_factory=StockTracker)
    offset: int = -1


def stock_key(store: str, sku: str) -> str:
    """Auxiliary-table key of a (store, SKU)'s stock."""
    return f"{store}/{sku}@stock"


def apply_stock(aux: dict, ev: StockEvent, partition: int, offset: int) -> str | None:
    """Fold a stock count or delivery in; returns the key to changelog (None for a replayed event)."""
    key = stock_key(ev.store, ev.sku)
    st = aux.get(key)
    if st is None:
        st = aux[key] = StockState(partition)
    if offset <= st.offset and partition == st.partition:
        return None
    if ev.kind == "count":
        st.tracker.set_level(ev.ts, ev.qty)
    else:
        st.tracker.add_delivery(ev.ts, ev.qty)
    st.offset = offset
    return key


class Demand:
    """Keeps per-SKU daily and per-store hourly forecasters current as POS windows close."""

    def __init__(self, aux: dict | None = None, day_horizon: int = 7, hour_horizon: int = 24,
                 lead_time_days: float = 2.0, service_level: float = 0.9,
                 forecasters: ModelSpecs | None = None) -> None:
        self.aux = aux  # set by the pipeline owner to the auxiliary state mapping
        # OPSMON_FORECASTERS: a River forecaster per ``pos:<store>/<sku>:units`` pattern (hourly store totals:
        # ``<store>/_total``), its quantiles learned from its own errors; opsmon's own where none matches.
        self.forecasters = forecasters
        self.day_horizon = day_horizon
        self.hour_horizon = hour_horizon
        self.lead_time_days = lead_time_days
        self.service_level = service_level

    def on_value(self, entity: str, state: EntityState, ts: float, values: dict[str, float], out: Output) -> None:
        """A final POS window: fold its units into the open buckets, closing the buckets it has moved past."""
        m = state.models
        if ts <= m.get("demand_seen", -1.0):
            return  # a corrected window: the bucket totals take each window once
        m["demand_seen"] = ts
        agg = state.windows.windows.get(int(ts)) if state.windows is not None else None
        units = {sku: qty for sku, (qty, _) in agg.skus.items()} if agg is not None else {}
        if self.aux is not None:
            for sku, q in units.items():
                st = self.aux.get(stock_key(entity, sku))
                if st is not None:
                    st.tracker.record_sale(ts, q)
                    out.aux_changed[stock_key(entity, sku)] = st.partition
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
        size = DAY if kind == "day" else HOUR
        for sku in skus:
            key = f"{store}/{sku}@{kind}"
            f = self.aux.get(key) if self.aux is not None else None
            if f is None:
                f = self._new_forecaster(f"{store}/{sku}", freq, max(horizon, 1))
            actual = units.get(sku, 0.0)
            f.learn_one(actual, {"t": float(start)})
            tags = {"store": store, "sku": sku, "bucket": kind}
            out.lines.append(line("forecast", tags, {"actual": round(actual, 6)}, start * 1000))
            # predicted is the expected demand (the point forecast); lower/upper the interval around it.
            means = f.forecast(horizon)
            bands = f.forecast_quantiles(horizon)
            for h, (mean, (lo, median, hi)) in enumerate(zip(means, bands, strict=True), start=1):
                fields = {"predicted": round(mean, 4), "median": round(median, 4), "lower": round(lo, 4),
                          "upper": round(hi, 4)}
                out.lines.append(line("forecast", tags, fields, (start + h * size) * 1000))
            if self.aux is not None:
                self.aux[key] = f
                out.aux_changed[key] = state.partition
                if kind == "day":
                    self._stock_risk(store, sku, f, start + DAY, out)
        out.counts["forecasts"] += len(skus)

    def _new_forecaster(self, series: str, freq: str, horizon: int) -> DemandForecaster | ErrorQuantiles:
        """A fresh forecaster for ``store/sku``: the configured River one if a pattern names it, else opsmon's."""
        spec = self.forecasters.matching("pos", series, UNITS) if self.forecasters else None
        if spec is None or spec.preset == OPSMON:
            return DemandForecaster(freq=freq, max_horizon=horizon)  # type: ignore[arg-type]
        return ErrorQuantiles(spec.make(), freq=freq, max_horizon=horizon, spec=spec.text)

    def on_stock(self, store: str, sku: str, at: float, out: Output) -> None:
        """A count or delivery changed what is on hand: its stock-out risk at once, once the SKU has a day forecast
        (not only at the next day's close: a count that arrives after it would show nothing for a day)."""
        f = self.aux.get(f"{store}/{sku}@day") if self.aux is not None else None
        if f is not None:
            self._stock_risk(store, sku, f, at, out)

    def _stock_risk(self, store: str, sku: str, f: DemandForecaster | ErrorQuantiles, now: float, out: Output) -> None:
        """Days until the SKU runs out at the forecast demand, and whether that is within the lead time."""
        st = self.aux.get(stock_key(store, sku)) if self.aux is not None else None
        if st is None or not st.tracker.known:
            return
        days = st.tracker.days_to_stockout(now, f)
        # At risk: stock below what covers the lead time's demand service_level of the time (the same
        # quantiles as the forecast's interval), not only below its expected demand.
        reorder = st.tracker.reorder_point(f, self.lead_time_days, self.service_level)
        at_risk = st.tracker.level < reorder
        out.lines.append(line("stock_risk", {"store": store, "sku": sku}, {
            "stock": round(st.tracker.level, 6), "days_to_stockout": round(days, 3) if math.isfinite(days) else 999.0,
            "reorder_point": round(reorder, 4), "at_risk": 1.0 if at_risk else 0.0}, int(now * 1000)))
        out.counts["stock_at_risk"] += int(at_risk)
