"""A seeded generator of plausible IoT, POS and web events, and a rate-controlled loop that publishes them.

>>> sim = Simulator(seed=1, sites=1, devices_per_site=2, stores=1, web_sites=1)
>>> evs = list(sim.events(t=1_767_225_600.0, n=100))
>>> len(evs), sorted({type(e).__name__ for e in evs})
(100, ['IotReading', 'PosTransaction', 'WebEvent'])
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from streams.schemas import Event, IotReading, PosLine, PosTransaction, WebEvent

DAY = 86_400.0


@dataclass(frozen=True)
class Mix:
    """Share of each source in the generated traffic."""

    iot: float = 0.6
    pos: float = 0.1
    web: float = 0.3


class Simulator:
    """Sites with devices, stores with tills and SKUs, web shops with sessions; all seeded."""

    def __init__(self, seed: int = 0, sites: int = 2, devices_per_site: int = 5, stores: int = 3,
                 skus: int = 50, web_sites: int = 1, mix: Mix = Mix()) -> None:
        self.rng = random.Random(seed)
        self.devices = [(f"site-{s}", f"dev-{s}-{d}") for s in range(sites) for d in range(devices_per_site)]
        self.stores = [f"store-{i}" for i in range(stores)]
        self.web_sites = [f"shop-{i}" for i in range(web_sites)]
        # Long-tail popularity: Zipf-like weights, prices fixed per SKU.
        self.skus = [f"sku-{i:04d}" for i in range(skus)]
        self.sku_weights = [1.0 / (i + 1) ** 1.1 for i in range(skus)]
        self.prices = {s: round(self.rng.uniform(0.5, 40.0), 2) for s in self.skus}
        self.mix = mix
        self._txn = 0
        self._sessions: dict[str, list[str]] = {w: [] for w in self.web_sites}

    def events(self, t: float, n: int) -> Iterator[Event]:
        """``n`` events stamped at time ``t`` (Unix seconds), mixed by source."""
        for _ in range(n):
            r = self.rng.random()
            if r < self.mix.iot:
                yield self.iot(t)
            elif r < self.mix.iot + self.mix.pos:
                yield self.pos(t)
            else:
                yield self.web(t)

    def iot(self, t: float) -> IotReading:
        """A reading with a daily temperature cycle, humidity and vibration."""
        site, device = self.rng.choice(self.devices)
        phase = 2 * math.pi * ((t % DAY) / DAY)
        return IotReading(v=1, time=_dt(t), site=site, device=device, measurements={
            "temperature": round(4.0 + 1.5 * math.sin(phase) + self.rng.gauss(0, 0.2), 3),
            "humidity": round(55 + 5 * math.cos(phase) + self.rng.gauss(0, 1), 3),
            "vibration": round(abs(self.rng.gauss(0.3, 0.05)), 4),
        }, units={"temperature": "C", "humidity": "%", "vibration": "g"}, firmware="1.4.2")

    def pos(self, t: float) -> PosTransaction:
        """A sale (mostly), refund or void with 1-5 lines."""
        self._txn += 1
        store = self.rng.choice(self.stores)
        kind = self.rng.choices(["sale", "refund", "void"], weights=[0.94, 0.04, 0.02])[0]
        n_lines = 1 + min(4, int(self.rng.expovariate(0.8)))
        lines = [PosLine(sku=s, qty=float(self.rng.randint(1, 3)), unit_price=self.prices[s])
                 for s in self.rng.choices(self.skus, weights=self.sku_weights, k=n_lines)]
        total = round(sum(ln.qty * ln.unit_price for ln in lines), 2)
        return PosTransaction(v=1, time=_dt(t), store=store, register=f"{store}-till-{self.rng.randint(1, 3)}",
                              txn_id=f"{store}-{self._txn:09d}", kind=kind,
                              payment=self.rng.choices(["card", "cash", "mobile"], weights=[0.7, 0.2, 0.1])[0],
                              lines=lines, total=total)

    def web(self, t: float) -> WebEvent:
        """A step of a session through the funnel, with occasional errors."""
        site = self.rng.choice(self.web_sites)
        sessions = self._sessions[site]
        if not sessions or self.rng.random() < 0.2:
            sessions.append(f"s{self.rng.getrandbits(40):010x}")
            del sessions[:-200]
        session = self.rng.choice(sessions)
        kind = self.rng.choices(["page_view", "add_to_cart", "checkout", "purchase", "error"],
                                weights=[0.80, 0.10, 0.04, 0.03, 0.03])[0]
        status = 500 if kind == "error" else 200
        path = {"page_view": f"/p/{self.rng.choice(self.skus)}", "add_to_cart": "/cart", "checkout": "/checkout",
                "purchase": "/checkout/done", "error": "/checkout"}[kind]
        return WebEvent(v=1, time=_dt(t), site=site, session=session, type=kind, path=path, status=status,
                        latency_ms=round(self.rng.lognormvariate(4.0, 0.5), 2))


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def run(sim: Simulator, send: Callable[[Event], None], rate: float, duration: float | None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> int:
    """Publish at ``rate`` events per second for ``duration`` seconds (None: until stopped)."""
    tick = 0.1
    start = clock()
    sent = 0
    while (duration is None or clock() - start < duration) and not (stop and stop.is_set()):
        now = clock()
        due = int((now - start) * rate) - sent
        for ev in sim.events(now, max(0, due)):
            send(ev)
            sent += 1
        if on_tick:
            on_tick(sent)
        sleep(max(0.0, tick - (clock() - now)))
    return sent
