"""Simulated web shops: diurnal traffic, sessions walking a conversion funnel, and their faults.

Sessions of all shops arrive as one non-homogeneous Poisson process (quiet at night, an evening peak,
busier weekends). A session views a few pages, may add to the cart, check out and purchase, with think
times in between; each step is one event. Faults: ``error_burst`` (many requests fail), ``latency``
(responses several times slower), ``checkout_broken`` (every checkout fails, so purchases drop to zero).

>>> import random
>>> shops = WebShops(random.Random(1), sites=1, skus=20, rate=2.0)
>>> out = []
>>> shops.emit(1_793_700_000.0, 1_793_700_600.0, out)
>>> len(out) > 100, out[0][0], out[0][1]
(True, 'web', b'shop-0')
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect
from itertools import accumulate

from opsmon.sim.clock import MINUTE, WEEK, LocalTime, second_prefix
from opsmon.sim.faults import Fault, FaultError

WEEKDAY = (1.0, 0.95, 0.95, 1.0, 1.05, 1.2, 1.25)  # Monday..Sunday
MEAN_EXTRA_VIEWS = 3.5  # page views after the landing page: floor of an exponential with this mean
P_CART, P_CHECKOUT, P_PURCHASE = 0.30, 0.55, 0.85
BASE_ERROR_RATE = 0.004
# Expected events per session without errors (the landing view, more views, then the funnel).
EVENTS_PER_SESSION = (1 + 1 / (math.exp(1 / MEAN_EXTRA_VIEWS) - 1)
                      + P_CART * (1 + 1.0 + P_CHECKOUT * (1 + P_PURCHASE)))
KINDS: dict[str, tuple[float, float]] = {
    "error_burst": (300.0, 1200.0), "latency": (900.0, 3600.0), "checkout_broken": (1200.0, 5400.0),
}
REFERENCE_WEEK = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
WARMUP = 900.0  # seconds of sessions run before the start, so traffic starts in its steady state
_BROWSE, _CART, _MORE, _CHECKOUT, _PURCHASE = range(5)
_MEDIAN_MS = (90.0, 140.0, 110.0, 320.0, 450.0)  # by stage
_EVENT = ('{"v":1,"time":"%s.%03dZ","site":"%s","session":"%s","type":"%s","path":"%s","status":%d,'
          '"latency_ms":%.1f}')


def _peak(hour: float, center: float, width: float) -> float:
    d = (hour - center + 12.0) % 24.0 - 12.0  # circular distance, so midnight has no seam
    return math.exp(-((d / width) ** 2))


def daily_shape(hour: float) -> float:
    """Relative web traffic by local hour: quiet at night, a midday shoulder, an evening peak."""
    return 0.25 + 0.5 * _peak(hour, 12.5, 3.0) + 1.0 * _peak(hour, 20.5, 2.2)


class Session:
    """Where one visitor is in the funnel."""

    __slots__ = ("site", "sid", "stage", "views_left", "path")

    def __init__(self, site: int, sid: str, views: int) -> None:
        self.site, self.sid, self.stage, self.views_left, self.path = site, sid, _BROWSE, views, "/"


class WebShops:
    """All web shops; ``emit(t0, t1, out)`` appends every event in [t0, t1), in time order."""

    source = "web"
    kinds = KINDS
    scheduled: dict[str, float] = {}

    def __init__(self, rng: random.Random, sites: int, skus: int, rate: float,
                 local: LocalTime | None = None) -> None:
        self.rng = rng
        self.local = local or LocalTime("UTC")
        self.sites = [f"shop-{i}" for i in range(sites)]
        self._keys = [s.encode() for s in self.sites]
        self._site_cw = list(accumulate(rng.lognormvariate(0.0, 0.5) for _ in self.sites))
        self._products = [f"/p/sku-{i:04d}" for i in range(max(1, skus))]
        self._product_cw = list(accumulate(1.0 / (i + 1) for i in range(len(self._products))))
        self._categories = [f"/c/{c}" for c in ("fresh", "drinks", "home", "garden", "tools", "toys", "sale")]
        self._mean, self._peak = self._profile_stats()
        self.rate = rate
        self._next: float | None = None
        self._heap: list[tuple[float, int, Session]] = []
        self._seq = 0
        self._shape_minute, self._shape = -1, 0.0
        self._faults: list[list[Fault]] = [[] for _ in self.sites]
        self._active: list[Fault] = []

    # ------------------------------------------------------------------ rate
    def _profile(self, t: float) -> float:
        day, hour = self.local.weekday_hour(t)
        return WEEKDAY[day] * daily_shape(hour)

    def _profile_stats(self) -> tuple[float, float]:
        xs = [self._profile(REFERENCE_WEEK + (m + 0.5) * MINUTE) for m in range(int(WEEK // MINUTE))]
        return sum(xs) / len(xs), max(xs)

    def set_rate(self, rate: float, t: float | None = None) -> None:
        """Events per second of all shops, averaged over a week."""
        self.rate = rate
        if t is not None and self._next is not None:
            self._next = t + self._gap()

    def _gap(self) -> float:
        lmax = self.rate / EVENTS_PER_SESSION / self._mean * self._peak
        return self.rng.expovariate(lmax) if lmax > 0 else math.inf

    # ------------------------------------------------------------------ faults
    def targets(self, kind: str) -> list[str]:  # noqa: ARG002
        """Every shop can have every web fault."""
        return list(self.sites)

    def make_fault(self, kind: str, target: str, start: float, duration: float, rng: random.Random,
                   metric: str | None, origin: str) -> Fault | None:  # noqa: ARG002
        """Build a web fault for shop ``target``."""
        if target not in self.sites:
            raise FaultError(f"unknown web shop {target!r}")
        if kind == "error_burst":
            metrics: tuple[str, ...] = ("errors", "error_rate")
            params: dict[str, float | str] = {"error_rate": round(rng.uniform(0.15, 0.4), 3)}
        elif kind == "latency":
            metrics = ("latency_p50", "latency_p95")
            params = {"factor": round(rng.uniform(3.0, 8.0), 2)}
        elif kind == "checkout_broken":
            metrics = ("purchases", "conversion", "checkouts", "errors", "error_rate")
            params = {}
        else:
            raise FaultError(f"{kind!r} is not a web fault")
        return Fault(kind, "web", target, metrics, start, start + duration, params=params, origin=origin)

    def activate(self, fault: Fault) -> None:
        """Attach a fault to its shop."""
        self._faults[self.sites.index(fault.entity)].append(fault)
        self._active.append(fault)

    def _expire(self, t: float) -> None:
        for f in [f for f in self._active if f.end <= t]:
            self._active.remove(f)
            self._faults[self.sites.index(f.entity)].remove(f)

    # ------------------------------------------------------------------ generation
    def emit(self, t0: float, t1: float, out: list[tuple[str, bytes, bytes]]) -> None:
        """Append ("web", shop key, wire bytes) for every event in [t0, t1)."""
        if self._active:
            self._expire(t0)
        if not self.sites:
            return
        if self._next is None:
            # Start with visitors already on the site: run the sessions of the last minutes, unseen.
            self._next = t0 - WARMUP + self._gap()
            self.emit(t0 - WARMUP, t0, [])
        heap, rng = self._heap, self.rng
        t_arrival, peak = self._next, self._peak
        while True:
            t_step = heap[0][0] if heap else math.inf
            if t_arrival <= t_step:
                if t_arrival >= t1:
                    break
                t = t_arrival
                t_arrival += self._gap()
                minute = int(t // MINUTE)
                if minute != self._shape_minute:
                    self._shape_minute, self._shape = minute, self._profile(t)
                if rng.random() * peak >= self._shape:
                    continue
                site = bisect(self._site_cw, rng.random() * self._site_cw[-1])
                session = Session(site, f"{rng.getrandbits(48):012x}",
                                  int(rng.expovariate(1 / MEAN_EXTRA_VIEWS)) + 1)
            else:
                if t_step >= t1:
                    break
                t, _, session = heapq.heappop(heap)
            self._step(session, t, out)
        self._next = t_arrival

    def _step(self, s: Session, t: float, out: list[tuple[str, bytes, bytes]]) -> None:
        """Emit the session's event at ``t`` and schedule its next step (or let it end)."""
        rng = self.rng
        error_rate, slow, broken = BASE_ERROR_RATE, 1.0, False
        faults = self._faults[s.site]
        if faults:
            for f in faults:
                if f.start <= t < f.end:
                    if f.kind == "error_burst":
                        error_rate = float(f.params["error_rate"])
                    elif f.kind == "latency":  # ramps up over the first quarter, as saturation builds
                        ramp = min(1.0, 4.0 * (t - f.start) / (f.end - f.start))
                        slow *= 1.0 + (float(f.params["factor"]) - 1.0) * ramp
                    elif f.kind == "checkout_broken":
                        broken = True
        stage = s.stage
        if stage in (_BROWSE, _MORE):
            r = rng.random()
            if stage == _BROWSE and s.views_left > 1 and s.path == "/" and r < 0.3:
                s.path = self._categories[rng.randrange(len(self._categories))]
            elif r < 0.6 or s.path == "/":
                s.path = self._products[bisect(self._product_cw, rng.random() * self._product_cw[-1])]
            else:
                s.path = self._categories[rng.randrange(len(self._categories))]
            path, kind = s.path, "page_view"
        elif stage == _CART:
            path, kind = "/cart", "add_to_cart"
        elif stage == _CHECKOUT:
            path, kind = "/checkout", "checkout"
        else:
            path, kind = "/checkout/done", "purchase"
        latency = rng.lognormvariate(math.log(_MEDIAN_MS[stage]), 0.45) * slow
        failed = (broken and stage == _CHECKOUT) or rng.random() < error_rate
        if failed:
            kind, status = "error", (500 if broken and stage == _CHECKOUT else rng.choice((500, 502, 503)))
        else:
            status = 200
        sec = int(t)
        out.append(("web", self._keys[s.site], (_EVENT % (
            second_prefix(sec), int((t - sec) * 1000), self.sites[s.site], s.sid, kind, path, status,
            latency)).encode()))
        if failed:
            if rng.random() < 0.5:
                return  # the visitor gives up
        elif not self._advance(s):
            return
        self._seq += 1
        heapq.heappush(self._heap, (t + rng.lognormvariate(3.0, 0.8), self._seq, s))  # think ~20 s

    def _advance(self, s: Session) -> bool:
        """Move to the next funnel stage; False when the session ends."""
        rng = self.rng
        if s.stage in (_BROWSE, _MORE):
            s.views_left -= 1
            if s.views_left > 0:
                return True
            if s.stage == _BROWSE:
                if rng.random() >= P_CART:
                    return False
                s.stage = _CART
                return True
            if rng.random() >= P_CHECKOUT:
                return False
            s.stage = _CHECKOUT
            return True
        if s.stage == _CART:
            s.views_left = rng.randint(0, 2)
            if s.views_left == 0:
                if rng.random() >= P_CHECKOUT:
                    return False
                s.stage = _CHECKOUT
            else:
                s.stage = _MORE
            return True
        if s.stage == _CHECKOUT:
            if rng.random() >= P_PURCHASE:
                return False
            s.stage = _PURCHASE
            return True
        return False
