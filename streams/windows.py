"""Event-time tumbling windows and the per-window aggregates for POS and web events.

A window is emitted once the partition's watermark passes its end plus the grace period (or when the
partition goes idle). It is then kept for ``late_retention`` seconds: a late event updates it and it is
emitted again, overwriting the earlier point (same measurement, tags and timestamp), so late data
corrects a window instead of being dropped.

>>> w = EntityWindows()
>>> agg = w.for_time(125.0, 60, WebAggregate)
>>> w.windows.keys(), w.dirty
(dict_keys([120]), {120})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from streams.schemas import PosTransaction, WebEvent


class Aggregate(Protocol):
    """What a window aggregate offers."""

    def add(self, ev) -> None: ...  # noqa: D102

    def fields(self) -> dict[str, float]: ...  # noqa: D102


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default method).

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class PosAggregate:
    """Sales, refunds and voids of one store in one window, and units sold per SKU."""

    __slots__ = ("transactions", "sales_amount", "items", "refunds", "refund_amount", "voids", "skus")

    def __init__(self) -> None:
        self.transactions = 0
        self.sales_amount = 0.0
        self.items = 0.0
        self.refunds = 0
        self.refund_amount = 0.0
        self.voids = 0
        self.skus: dict[str, list[float]] = {}  # sku -> [net quantity, net revenue]

    def add(self, ev: PosTransaction) -> None:
        """Fold one transaction in."""
        if ev.kind == "void":
            self.voids += 1
            return
        sign = 1.0 if ev.kind == "sale" else -1.0
        if sign > 0:
            self.transactions += 1
            self.sales_amount += ev.total
        else:
            self.refunds += 1
            self.refund_amount += ev.total
        for ln in ev.lines:
            if sign > 0:
                self.items += ln.qty
            acc = self.skus.get(ln.sku)
            if acc is None:
                acc = self.skus[ln.sku] = [0.0, 0.0]
            acc[0] += sign * ln.qty
            acc[1] += sign * ln.qty * ln.unit_price

    def fields(self) -> dict[str, float]:
        """The ``pos_window`` fields."""
        return {
            "revenue": round(self.sales_amount - self.refund_amount, 6),
            "transactions": float(self.transactions),
            "items": float(self.items),
            "avg_basket": round(self.sales_amount / self.transactions, 6) if self.transactions else 0.0,
            "refunds": float(self.refunds),
            "refund_amount": round(self.refund_amount, 6),
            "voids": float(self.voids),
        }

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)


# Exact latency quantiles up to this many events per site and window; beyond it a deterministic
# reservoir sample keeps memory bounded (quantiles then approximate).
LATENCY_RESERVOIR = 8192


class WebAggregate:
    """Traffic, funnel, errors and latency of one site in one window."""

    __slots__ = ("events", "page_views", "sessions", "add_to_cart", "checkouts", "purchases", "errors",
                 "latencies", "seen")

    def __init__(self) -> None:
        self.events = 0
        self.page_views = 0
        self.sessions: set[str] = set()
        self.add_to_cart = 0
        self.checkouts = 0
        self.purchases = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.seen = 0  # latencies offered to the reservoir

    def add(self, ev: WebEvent) -> None:
        """Fold one web event in."""
        self.events += 1
        self.sessions.add(ev.session)
        t = ev.type
        if t == "page_view":
            self.page_views += 1
        elif t == "add_to_cart":
            self.add_to_cart += 1
        elif t == "checkout":
            self.checkouts += 1
        elif t == "purchase":
            self.purchases += 1
        if t == "error" or ev.status >= 500:
            self.errors += 1
        n = self.seen
        self.seen += 1
        if n < LATENCY_RESERVOIR:
            self.latencies.append(ev.latency_ms)
        else:
            j = (n * 2654435761) % (n + 1)  # deterministic stand-in for a uniform draw in [0, n]
            if j < LATENCY_RESERVOIR:
                self.latencies[j] = ev.latency_ms

    def fields(self) -> dict[str, float]:
        """The ``web_window`` fields."""
        lat = sorted(self.latencies)
        sessions = len(self.sessions)
        return {
            "events": float(self.events),
            "page_views": float(self.page_views),
            "sessions": float(sessions),
            "add_to_cart": float(self.add_to_cart),
            "checkouts": float(self.checkouts),
            "purchases": float(self.purchases),
            "conversion": round(self.purchases / sessions, 6) if sessions else 0.0,
            "errors": float(self.errors),
            "error_rate": round(self.errors / self.events, 6) if self.events else 0.0,
            "latency_p50": round(quantile(lat, 0.50), 6),
            "latency_p95": round(quantile(lat, 0.95), 6),
        }

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)


@dataclass
class EntityWindows:
    """The open and recently emitted windows of one entity, keyed by window start (Unix seconds)."""

    windows: dict[int, Aggregate] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # changed since last emitted
    emitted: set[int] = field(default_factory=set)  # written at least once (a re-emit is a correction)
    unsettled: set[int] = field(default_factory=set)  # written early (idle flush), not yet final for models

    def for_time(self, ts: float, size: int, factory: Callable[[], Aggregate]) -> Aggregate:
        """The aggregate of the window holding ``ts`` (created if new), marked dirty."""
        start = int(ts // size) * size
        agg = self.windows.get(start)
        if agg is None:
            agg = self.windows[start] = factory()
        self.dirty.add(start)
        return agg

    def due(self, watermark: float, size: int, grace: float, flush_all: bool) -> Iterator[int]:
        """Starts of dirty windows to emit now: closed by the watermark, or all when flushing."""
        for start in sorted(self.dirty):
            if flush_all or start + size + grace <= watermark:
                yield start

    def expire(self, watermark: float, size: int, retention: float) -> int:
        """Forget windows past the late-data retention; returns how many were dropped."""
        old = [s for s in self.windows if s + size + retention <= watermark and s not in self.dirty]
        for s in old:
            del self.windows[s]
            self.emitted.discard(s)
            self.unsettled.discard(s)
        return len(old)
