"""The simulator: the IoT fleet, the stores and the web shops on one simulated clock, plus their faults.

``generate(t0, t1)`` returns every event with an event time in [t0, t1) as ``(source, key, wire bytes)``,
each source in time order; calls must be contiguous and increasing (``raw_events`` does that for a
period). The output depends only on the seed, the configuration and the start, never on how the period
is cut into calls, so a realtime run and a backfill of the same period produce the same events. Every
event starts with ``{"v":1,"time":"<24-character UTC time>"``, so readers can find its time without
parsing (the benchmark does).

>>> sim = Simulator(seed=1, sites=1, devices_per_site=2, stores=1, web_sites=1, rate=50)
>>> evs = list(sim.events(t=1_793_700_000.0, n=200))  # a Tuesday, 10:40 UTC: the stores are open
>>> len(evs), sorted({type(e).__name__ for e in evs})
(200, ['IotReading', 'PosTransaction', 'WebEvent'])
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from models.business_calendar import BusinessCalendar
from opsmon.sim.clock import LocalTime
from opsmon.sim.faults import Fault, FaultPlanner, FaultSpec, OnFault
from opsmon.sim.iot import DEFAULT_SHIFTS, IotFleet
from opsmon.sim.pos import DEFAULT_HOURS, Stores
from opsmon.sim.web import WebShops
from streams.schemas import Event, decode

RawEvent = tuple[str, bytes, bytes]  # (source, key, wire JSON)


@dataclass(frozen=True)
class Mix:
    """Share of each source in the generated traffic (averaged over a week)."""

    iot: float = 0.6
    pos: float = 0.1
    web: float = 0.3


class Simulator:
    """Sites with devices, stores with tills and SKUs, web shops with sessions; all seeded.

    ``rate`` is the mean number of events per simulated second over a week, all sources together, split
    by ``mix``: IoT devices report at a steady interval, stores and shops follow their daily and weekly
    seasons (so peaks run above the mean and closed hours at zero).
    """

    def __init__(self, seed: int = 0, sites: int = 2, devices_per_site: int = 5, stores: int = 3,
                 skus: int = 200, web_sites: int = 1, mix: Mix = Mix(), *, rate: float = 200.0,
                 tills_per_store: int = 3, hours: str = DEFAULT_HOURS, shifts: str = DEFAULT_SHIFTS,
                 tz: str = "UTC", faults_per_hour: float = 0.0, faults: Sequence[FaultSpec | str] = (),
                 promotions_per_week: float = 1.0, on_fault: OnFault | None = None) -> None:
        self.seed = seed
        self.mix = mix
        self.rate = rate
        self.tz = tz
        self.hours, self.shifts = hours, shifts
        local = LocalTime(tz)
        store_hours = BusinessCalendar.parse(hours, tz)
        # One random stream per source, so e.g. more stores do not change the IoT readings.
        self.iot = IotFleet(random.Random(f"{seed}/iot"), sites, devices_per_site,
                            self._interval(sites * devices_per_site), store_hours, BusinessCalendar.parse(shifts, tz),
                            local)
        self.pos = Stores(random.Random(f"{seed}/pos"), stores, tills_per_store, skus, rate * mix.pos,
                          store_hours, local, promotions_per_week)
        self.web = WebShops(random.Random(f"{seed}/web"), web_sites, skus, rate * mix.web, local)
        self.domains = [d for d, share in ((self.iot, mix.iot), (self.pos, mix.pos), (self.web, mix.web))
                        if share > 0]
        self.planner = FaultPlanner(self.domains, random.Random(f"{seed}/faults"), faults_per_hour,
                                    [f if isinstance(f, FaultSpec) else FaultSpec.parse(f) for f in faults], tz)
        self.on_fault = on_fault
        self.truth: list[Fault] = []  # every fault (and promotion) started so far
        self.cursor: float | None = None  # the end of the last generated range

    def calendars(self) -> dict[str, str]:
        """The opening hours the simulation follows, as ``Settings.calendars``: stores and sites keep the
        store hours, machines their shifts (what an operator would configure for the same business)."""
        out = {name: self.hours for name in self.pos.stores}
        out.update({d.site: self.hours for d in self.iot.devices})
        out.update({d.entity: self.shifts for d in self.iot.devices if d.kind == "machine"})
        return out

    def limits(self) -> dict[str, str]:
        """The limits an operator of this business would set, as ``Settings.limits``: food safety for fridges and
        freezers, a machine's maximum operating temperature, the web shops' service level for page latency (their
        p95 is about 220 ms: half a second, for three minutes)."""
        kinds = {d.kind for d in self.iot.devices}
        wanted = {"fridge": ("iot:*/fridge-*:temperature", "> 8 for 10m"),
                  "freezer": ("iot:*/freezer-*:temperature", "> -12 for 10m"),
                  "machine": ("iot:*/machine-*:temperature", "> 70 for 2m critical")}
        out = dict(rule for kind, rule in wanted.items() if kind in kinds)
        if self.web.sites:
            out["web:*:latency_p95"] = "> 500 for 3m"
        return out

    def _interval(self, devices: int) -> float:
        per_s = self.rate * self.mix.iot
        return devices / per_s if per_s > 0 else math.inf

    def set_rate(self, rate: float) -> None:
        """Change the mean event rate from the current simulated time on."""
        self.rate = rate
        t = self.cursor
        self.iot.set_interval(self._interval(len(self.iot.devices)), t if t is not None else 0.0)
        self.pos.set_rate(rate * self.mix.pos, t)
        self.web.set_rate(rate * self.mix.web, t)

    def generate(self, t0: float, t1: float) -> list[RawEvent]:
        """Every event in [t0, t1): IoT, then POS, then web, each in time order."""
        if self.cursor is not None and abs(t0 - self.cursor) > 1e-6:
            raise ValueError(f"generate() must continue at {self.cursor}, not {t0}")
        if self.cursor is None:
            # Transaction ids name the run's start: a demo restarted later sends new ids, not duplicates,
            # while the same seed and start still give the same traffic.
            self.pos.run_tag = f"{int(t0):x}"
        self.cursor = t1
        for f in self.planner.due(t0, t1):
            self.by_source(f.source).activate(f)
            self.truth.append(f)
            if self.on_fault is not None:
                self.on_fault(f)
        out: list[RawEvent] = []
        if self.mix.iot > 0:
            self.iot.emit(t0, t1, out)
        if self.mix.pos > 0:
            self.pos.emit(t0, t1, out)
        if self.mix.web > 0:
            self.web.emit(t0, t1, out)
        return out

    def by_source(self, source: str) -> IotFleet | Stores | WebShops:
        """The generator of one source."""
        return {"iot": self.iot, "pos": self.pos, "web": self.web}[source]

    def step_for(self, target_events: int = 10_000) -> float:
        """Simulated seconds per ``generate`` call that make about ``target_events`` events (1 s to 5 min)."""
        return min(300.0, max(1.0, target_events / max(self.rate, 1e-9)))

    def raw_events(self, start: float, end: float, step: float | None = None) -> Iterator[RawEvent]:
        """Every event in [start, end) (continuing from the cursor if generation already began)."""
        t = start if self.cursor is None else self.cursor
        step = step or self.step_for()
        while t < end:
            t1 = min(end, t + step)
            yield from self.generate(t, t1)
            t = t1

    def events(self, t: float, n: int) -> Iterator[Event]:
        """The first ``n`` events from time ``t`` on (or from the cursor), decoded into typed events."""
        if n <= 0:
            return
        t = t if self.cursor is None else self.cursor
        step = max(0.05, min(60.0, n / max(self.rate, 1e-9) / 4))
        while True:
            for source, _, value in self.generate(t, t + step):
                yield decode(source, value, now=math.inf)
                n -= 1
                if n == 0:
                    return
            t += step
