"""Simulated stores: tills, opening hours, a long-tailed SKU catalogue, seasonality, promotions, faults.

Customers of all stores arrive as one non-homogeneous Poisson process (drawn by thinning), whose rate
follows the time of day (lunch and after-work peaks) and the day of the week, and is zero while the
stores are closed; each arrival picks a store by its size and a till at random. Baskets draw SKUs by a
Zipf-like popularity. A promotion makes one SKU cheaper and more popular in every store for days; it
is written to the ground truth too, as a known event rather than a fault.

Faults: ``till_silent`` (one till sends nothing), ``refund_burst`` (a stream of refunds at one till),
``card_failure`` (card payments fail in one store: some customers pay cash, some void, most leave).

>>> import random
>>> stores = Stores(random.Random(1), stores=2, tills_per_store=2, skus=20, rate=1.0)
>>> out = []
>>> stores.emit(1_793_700_000.0, 1_793_700_600.0, out)  # a Tuesday, 10:40-10:50 UTC: open
>>> len(out) > 0, out[0][0]
(True, 'pos')
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from itertools import accumulate

from models.business_calendar import BusinessCalendar
from opsmon.sim.clock import DAY, MINUTE, WEEK, LocalTime, second_prefix
from opsmon.sim.faults import Fault, FaultError

DEFAULT_HOURS = "mon-sat 08:00-20:00"
WEEKDAY = (0.85, 0.85, 0.9, 0.95, 1.15, 1.35, 1.0)  # Monday..Sunday
KIND_WEIGHTS = (("sale", 0.965), ("refund", 0.025), ("void", 0.01))
PAYMENTS = (("card", 0.70), ("cash", 0.20), ("mobile", 0.10))
KINDS: dict[str, tuple[float, float]] = {
    "till_silent": (1800.0, 3 * 3600.0), "refund_burst": (600.0, 1800.0), "card_failure": (1200.0, 5400.0),
    "promotion": (DAY, 4 * DAY),
}
REFERENCE_WEEK = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC, to measure the weekly mean rate
_TXN = ('{"v":1,"time":"%s.%03dZ","store":"%s","register":"%s","txn_id":"%s-%s-%d","kind":"%s",'
        '"payment":"%s","lines":[%s],"total":%.2f,"discount":%.2f}')


def daily_shape(hour: float) -> float:
    """Relative customer traffic by local hour: a lunch and an after-work peak."""
    return (0.6 + 0.5 * math.exp(-(((hour - 12.5) / 1.2) ** 2))
            + 0.7 * math.exp(-(((hour - 17.5) / 1.5) ** 2)))


class Stores:
    """All stores of the chain; ``emit(t0, t1, out)`` appends every transaction in [t0, t1)."""

    source = "pos"
    kinds = KINDS
    scheduled = {"promotion": 1.0}

    def __init__(self, rng: random.Random, stores: int, tills_per_store: int, skus: int, rate: float,
                 hours: BusinessCalendar | None = None, local: LocalTime | None = None,
                 promotions_per_week: float = 1.0) -> None:
        self.rng = rng
        self.hours = hours or BusinessCalendar.parse(DEFAULT_HOURS)
        self.local = local or LocalTime("UTC")
        self.scheduled = {"promotion": promotions_per_week}
        self.stores = [f"store-{i}" for i in range(stores)]
        self.tills = [[f"{s}-till-{k + 1}" for k in range(tills_per_store)] for s in self.stores]
        self._store_cw = list(accumulate(rng.lognormvariate(0.0, 0.4) for _ in self.stores))
        # Catalogue: popularity ~ 1/rank^1.1 (a long tail), prices log-normal and ending in 9.
        self.skus = [f"sku-{i:04d}" for i in range(skus)]
        self._sku_cw = list(accumulate(1.0 / (i + 1) ** 1.1 for i in range(skus)))
        self.prices = [max(0.29, round(math.exp(rng.gauss(1.4, 0.8)), 1) - 0.01) for _ in self.skus]
        self._line_head = [f'{{"sku":"{s}","qty":' for s in self.skus]
        self._price_str = [f"{p:.2f}" for p in self.prices]
        self._kind_cw = list(accumulate(w for _, w in KIND_WEIGHTS))
        self._pay_cw = list(accumulate(w for _, w in PAYMENTS))
        self._txn = 0
        self.run_tag = "0"  # set by the simulator to the start of generation (see Simulator.generate)
        self._mean, self._peak = self._profile_stats()
        self.rate = rate
        self._next: float | None = None  # the next candidate arrival (thinning), kept across calls
        self._shape_minute, self._shape = -1, 0.0
        self._faults: list[list[Fault]] = [[] for _ in self.stores]  # per store
        self._promos: list[Fault] = []
        self._extra: list[tuple[float, int, int, str]] = []  # refund-burst transactions: (t, seq, store, till)
        self._active: list[Fault] = []

    # ------------------------------------------------------------------ rate
    def _profile_stats(self) -> tuple[float, float]:
        """Mean and peak of the (open-hours) traffic profile over a reference week, per minute."""
        total, peak = 0.0, 0.0
        for m in range(int(WEEK // MINUTE)):
            x = self._profile(REFERENCE_WEEK + (m + 0.5) * MINUTE)
            total += x
            peak = max(peak, x)
        return total / (WEEK / MINUTE), peak

    def _profile(self, t: float) -> float:
        if not self.hours.is_open(t):
            return 0.0
        day, hour = self.local.weekday_hour(t)
        return WEEKDAY[day] * daily_shape(hour)

    def set_rate(self, rate: float, t: float | None = None) -> None:
        """Transactions per second of the whole chain, averaged over a week (peaks are higher)."""
        self.rate = rate
        if t is not None and self._next is not None:
            self._next = t  # restart the arrival process: exponential gaps forget the past
            self._next += self._gap()

    def _gap(self) -> float:
        lmax = self.rate / self._mean * self._peak if self._mean > 0 else 0.0
        return self.rng.expovariate(lmax) if lmax > 0 else math.inf

    # ------------------------------------------------------------------ faults
    def targets(self, kind: str) -> list[str]:
        """Tills (till_silent, refund_burst), stores (card_failure) or SKUs (promotion)."""
        if kind in ("till_silent", "refund_burst"):
            return [t for tills in self.tills for t in tills]
        if kind == "promotion":
            return self.skus[: max(1, min(50, len(self.skus) // 4))]  # promote popular articles
        return list(self.stores)

    def _store_of(self, target: str) -> int:
        for i, (store, tills) in enumerate(zip(self.stores, self.tills, strict=True)):
            if target == store or target in tills:
                return i
        raise FaultError(f"unknown store or till {target!r}")

    def make_fault(self, kind: str, target: str, start: float, duration: float, rng: random.Random,
                   metric: str | None, origin: str) -> Fault | None:
        """Build a POS fault; random ones are moved into opening hours so they show in the data."""
        if kind not in KINDS:
            raise FaultError(f"{kind!r} is not a POS fault")
        if kind == "promotion":
            if target not in self.skus:
                raise FaultError(f"unknown SKU {target!r}")
            return Fault(kind, "pos", "*", ("items", "revenue"), start, start + duration, target=target,
                         params={"discount": round(rng.uniform(0.1, 0.3), 2), "uplift": round(rng.uniform(2, 4), 1)},
                         origin=origin, is_fault=False)
        i = self._store_of(target)
        if target == self.stores[i] and kind != "card_failure":
            target = self.tills[i][0]
        if origin == "random":
            start, end = self._open_window(start, duration)
            if end <= start:
                return None
        else:
            end = start + duration
        params: dict[str, float | str] = {}
        if kind == "till_silent":
            metrics: tuple[str, ...] = ("transactions", "revenue")
        elif kind == "refund_burst":
            metrics = ("refunds", "refund_amount")
            params["refunds_per_minute"] = round(rng.uniform(1.0, 3.0), 2)
        else:
            metrics = ("transactions", "revenue")
            params = {"to_cash": 0.25, "void": 0.3}
        return Fault(kind, "pos", self.stores[i], metrics, start, end,
                     target="" if target == self.stores[i] else target, params=params, origin=origin)

    def _open_window(self, start: float, duration: float) -> tuple[float, float]:
        """Move ``start`` into opening hours and end the window at closing time at the latest."""
        t = self._next_change(start, want_open=True)
        if t > start:
            t += self.rng.uniform(0.0, 2 * 3600.0)
            t = self._next_change(t, want_open=True)
        closes = self._next_change(t, want_open=False)
        return t, min(t + duration, closes)

    def _next_change(self, t: float, want_open: bool) -> float:
        """The first minute boundary (or ``t`` itself) at which the stores are open (closed) again."""
        if self.hours.is_open(t) == want_open:
            return t
        m = math.floor(t / MINUTE) + 1
        for _ in range(int(8 * DAY // MINUTE)):
            if self.hours.is_open(m * MINUTE) == want_open:
                return m * MINUTE
            m += 1
        return math.inf  # never open (or never closed)

    def activate(self, fault: Fault) -> None:
        """Attach a fault (or promotion) so generation sees it."""
        self._active.append(fault)
        if fault.kind == "promotion":
            fault.state["sku"] = self.skus.index(fault.target)
            self._promos.append(fault)
            return
        i = self._store_of(fault.entity)
        self._faults[i].append(fault)
        if fault.kind == "refund_burst":
            per_s = float(fault.params["refunds_per_minute"]) / MINUTE
            t = fault.start + self.rng.expovariate(per_s)
            while t < fault.end:
                self._txn += 1
                heapq.heappush(self._extra, (t, self._txn, i, fault.target))
                t += self.rng.expovariate(per_s)

    def _expire(self, t: float) -> None:
        for f in [f for f in self._active if f.end <= t]:
            self._active.remove(f)
            if f.kind == "promotion":
                self._promos.remove(f)
            else:
                self._faults[self._store_of(f.entity)].remove(f)

    # ------------------------------------------------------------------ generation
    def emit(self, t0: float, t1: float, out: list[tuple[str, bytes, bytes]]) -> None:
        """Append ("pos", store key, wire bytes) for every transaction in [t0, t1), in time order."""
        if self._active:
            self._expire(t0)
        if not self.stores:
            return
        rng = self.rng
        random_ = rng.random
        if self._next is None:
            self._next = t0 + self._gap()
        t = self._next
        peak = self._peak
        extra = self._extra
        while True:
            if extra and extra[0][0] < t1 and extra[0][0] <= t:
                te, _, i, till = heapq.heappop(extra)
                out.append(self._transaction(te, i, till, "refund"))
                continue
            if t >= t1:
                break
            minute = int(t // MINUTE)
            if minute != self._shape_minute:
                self._shape_minute, self._shape = minute, self._profile(t)
            shape = self._shape
            if shape == 0.0:  # closed: jump to the opening, then restart the (memoryless) process
                t = self._next_change(t, want_open=True) + self._gap()
                continue
            if random_() * peak < shape:
                i = bisect(self._store_cw, random_() * self._store_cw[-1])
                msg = self._customer(t, i)
                if msg is not None:
                    out.append(msg)
            t += self._gap()
        self._next = t

    def _customer(self, t: float, i: int) -> tuple[str, bytes, bytes] | None:
        """One customer at store ``i``: the till, kind and payment, as the store's faults allow."""
        rng = self.rng
        tills = self.tills[i]
        faults = self._faults[i]
        kind = KIND_WEIGHTS[bisect(self._kind_cw, rng.random() * self._kind_cw[-1])][0]
        payment = PAYMENTS[bisect(self._pay_cw, rng.random() * self._pay_cw[-1])][0]
        if faults:
            active = [f for f in faults if f.start <= t < f.end]
            silent = {f.target for f in active if f.kind == "till_silent"}
            if silent:
                tills = [x for x in tills if x not in silent] or tills
                if tills is self.tills[i]:
                    return None  # every till is down
            if payment == "card" and any(f.kind == "card_failure" for f in active):
                r = rng.random()
                if r < 0.25:
                    payment = "cash"
                elif r < 0.55:
                    kind = "void"  # the attempt is cancelled at the till
                else:
                    return None  # the customer leaves without buying
        return self._transaction(t, i, tills[rng.randrange(len(tills))], kind, payment)

    def _transaction(self, t: float, i: int, till: str, kind: str,
                     payment: str | None = None) -> tuple[str, bytes, bytes]:
        rng = self.rng
        random_ = rng.random
        if payment is None:
            payment = "card" if random_() < 0.7 else "cash"
        cw, last = self._sku_cw, self._sku_cw[-1]
        n = 1 if kind == "refund" else 1 + min(11, int(rng.expovariate(0.45)))
        parts = []
        amount = discount = 0.0
        for _ in range(n):
            j = bisect(cw, random_() * last)
            q = 1 if random_() < 0.8 else rng.randint(2, 6)
            parts.append(f"{self._line_head[j]}{q}.0,\"unit_price\":{self._price_str[j]}}}")
            amount += q * self.prices[j]
        for p in self._promos:
            if p.start <= t < p.end and kind == "sale" and random_() < 0.15 * float(p.params["uplift"]):
                j = p.state["sku"]
                q = rng.randint(1, 3)
                parts.append(f"{self._line_head[j]}{q}.0,\"unit_price\":{self._price_str[j]}}}")
                amount += q * self.prices[j]
                discount += round(q * self.prices[j] * float(p.params["discount"]), 2)
        self._txn += 1
        s = int(t)
        store = self.stores[i]
        body = _TXN % (second_prefix(s), int((t - s) * 1000), store, till, till, self.run_tag, self._txn, kind, payment,
                       ",".join(parts), round(amount - discount, 2), discount)
        return ("pos", store.encode(), body.encode())
