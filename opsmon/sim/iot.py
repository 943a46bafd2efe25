"""The simulated IoT fleet: sites with fridges, freezers, HVAC units and machines, and their faults.

Every device reports all its measurements every ``interval`` seconds, on a fixed phase of its own. A value
is a per-device base level, plus a daily/weekly pattern (fridge doors open while the store is open, HVAC
follows the outdoor temperature and occupancy, machines follow their shifts), plus a slow per-device drift,
plus Gaussian noise. Readings come out as wire JSON, built from a per-device template (no event objects):
the fleet generates well over 100k readings per second in one process.

>>> import random
>>> fleet = IotFleet(random.Random(1), sites=1, devices_per_site=4, interval=10.0)
>>> out = []
>>> fleet.emit(1_793_491_200.0, 1_793_491_220.0, out)
>>> len(out), out[0][0], sorted({k.decode() for _, k, _ in out})[:2]
(8, 'iot', ['site-0/freezer-1', 'site-0/fridge-0'])
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from models.business_calendar import BusinessCalendar
from opsmon.sim.clock import DAY, MINUTE, LocalTime, iso, second_prefix
from opsmon.sim.faults import Fault, FaultError

DEVICE_KINDS = ("fridge", "freezer", "hvac", "machine")
DEFAULT_SHIFTS = "mon-fri 06:00-22:00"
_CONST, _STORE, _OUTDOOR, _SHIFT = range(4)  # indices into the per-minute pattern factors


@dataclass(frozen=True)
class MetricSpec:
    """One measurement of a device kind: base range, daily amplitude and pattern, noise, typical span."""

    name: str
    unit: str
    base: tuple[float, float]
    amp: float
    pattern: int
    sd: float
    scale: float  # a typical span of normal values; fault magnitudes are multiples of it
    fmt: str = "%.2f"
    signed: bool = False  # faults may push it either way (temperatures), else only up

    @property
    def decimals(self) -> int:
        """Digits after the point on the wire."""
        return int(self.fmt[2:-1])


SPECS: dict[str, tuple[MetricSpec, ...]] = {
    "fridge": (MetricSpec("temperature", "C", (3.0, 5.0), 1.0, _STORE, 0.15, 2.0, signed=True),
               MetricSpec("humidity", "%", (60.0, 75.0), 6.0, _STORE, 1.0, 10.0, "%.1f", signed=True),
               MetricSpec("power_w", "W", (100.0, 140.0), 60.0, _STORE, 8.0, 80.0, "%.0f")),
    "freezer": (MetricSpec("temperature", "C", (-20.0, -17.0), 1.2, _STORE, 0.2, 2.5, signed=True),
                MetricSpec("power_w", "W", (220.0, 280.0), 80.0, _STORE, 12.0, 100.0, "%.0f")),
    "hvac": (MetricSpec("temperature", "C", (20.0, 22.0), 1.5, _OUTDOOR, 0.2, 3.0, signed=True),
             MetricSpec("humidity", "%", (40.0, 50.0), 8.0, _OUTDOOR, 1.5, 12.0, "%.1f", signed=True),
             MetricSpec("co2_ppm", "ppm", (420.0, 480.0), 500.0, _STORE, 25.0, 500.0, "%.0f"),
             MetricSpec("power_w", "W", (800.0, 1200.0), 2500.0, _STORE, 80.0, 2000.0, "%.0f")),
    "machine": (MetricSpec("temperature", "C", (28.0, 34.0), 22.0, _SHIFT, 0.5, 15.0, signed=True),
                MetricSpec("vibration", "mm/s", (0.3, 0.6), 2.2, _SHIFT, 0.05, 2.0, "%.3f"),
                MetricSpec("power_w", "W", (150.0, 250.0), 5000.0, _SHIFT, 40.0, 4000.0, "%.0f")),
}

# Random fault durations (seconds); a spike is stretched to cover at least one reading.
KINDS: dict[str, tuple[float, float]] = {
    "spike": (1.0, 20.0), "level_shift": (600.0, 3600.0), "drift": (3600.0, 6 * 3600.0),
    "stuck": (1200.0, 7200.0), "dropout": (300.0, 1800.0), "overheat": (1200.0, 4500.0),
}
FAILURE_AT = 0.85  # an overheating machine fails at this fraction of the fault, then stands still


class Device:
    """One device: identity, wire template, per-metric levels, and its active faults."""

    __slots__ = ("site", "name", "kind", "entity", "key", "specs", "fmt", "base", "amp", "pattern", "sd",
                 "drift", "levels", "level_minute", "faults", "last")

    def __init__(self, site: str, name: str, kind: str, rng: random.Random) -> None:
        self.site, self.name, self.kind = site, name, kind
        self.entity = f"{site}/{name}"
        self.key = self.entity.encode()
        self.specs = SPECS[kind]
        meas = ",".join(f'"{s.name}":{s.fmt}' for s in self.specs)
        units = ",".join(f'"{s.name}":"{s.unit}"' for s in self.specs).replace("%", "%%")
        firmware = f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
        self.fmt = (f'{{"v":1,"time":"%s.%03dZ","site":"{site}","device":"{name}","measurements":{{{meas}}},'
                    f'"units":{{{units}}},"firmware":"{firmware}"}}')
        self.base = [rng.uniform(*s.base) for s in self.specs]
        self.amp = [s.amp * rng.uniform(0.8, 1.2) for s in self.specs]
        self.pattern = [s.pattern for s in self.specs]
        self.sd = [s.sd for s in self.specs]
        self.drift = [rng.uniform(-0.02, 0.02) * s.scale for s in self.specs]  # per day: sensor ageing
        self.levels: list[float] = list(self.base)
        self.level_minute = -1
        self.faults: list[Fault] = []
        self.last: list[float] | None = None

    def metric_index(self, metric: str) -> int:
        """Position of ``metric`` in this device's measurements."""
        for j, s in enumerate(self.specs):
            if s.name == metric:
                return j
        raise FaultError(f"device {self.entity} ({self.kind}) has no measurement {metric!r}; it has "
                         f"{', '.join(s.name for s in self.specs)}")


class IotFleet:
    """All devices of all sites; ``emit(t0, t1, out)`` appends every reading due in [t0, t1)."""

    source = "iot"
    kinds = KINDS
    scheduled: dict[str, float] = {}

    def __init__(self, rng: random.Random, sites: int, devices_per_site: int, interval: float,
                 store_hours: BusinessCalendar | None = None, shifts: BusinessCalendar | None = None,
                 local: LocalTime | None = None) -> None:
        self.rng = rng
        self.devices = [Device(f"site-{s}", f"{DEVICE_KINDS[d % len(DEVICE_KINDS)]}-{d}",
                               DEVICE_KINDS[d % len(DEVICE_KINDS)], rng)
                        for s in range(sites) for d in range(devices_per_site)]
        rng.shuffle(self.devices)  # so the sites interleave on the wire
        self.by_entity = {d.entity: d for d in self.devices}
        self.store_hours = store_hours or BusinessCalendar.parse("mon-sat 08:00-20:00")
        self.shifts = shifts or BusinessCalendar.parse(DEFAULT_SHIFTS)
        self.local = local or LocalTime("UTC")
        n = max(1, len(self.devices))
        # Device i reports at origin + k*interval + phase[i]; phases are sorted, so the sequence
        # g = k*n + i is in time order and emitting costs nothing per silent device.
        self._slots = sorted(rng.random() for _ in range(n))
        self.interval = interval
        self._origin: float | None = None
        self._t_ref = 0.0  # drift is measured from the first reading
        self._g = 0
        self._factor_minute = -1
        self._factors = [0.0, 0.0, 0.0, 0.0]
        self._active: list[Fault] = []

    # ------------------------------------------------------------------ rate
    def set_interval(self, interval: float, t: float) -> None:
        """Report every ``interval`` seconds from ``t`` on."""
        self.interval = interval
        if self._origin is not None:
            self._origin, self._g = t, 0

    # ------------------------------------------------------------------ faults
    def targets(self, kind: str) -> list[str]:
        """Device entities a fault of ``kind`` can hit."""
        if kind == "overheat":
            return [d.entity for d in self.devices if d.kind == "machine"]
        return [d.entity for d in self.devices]

    def make_fault(self, kind: str, target: str, start: float, duration: float, rng: random.Random,
                   metric: str | None, origin: str) -> Fault | None:
        """Build a fault of ``kind`` on device ``target``, with magnitudes scaled to the metric."""
        dev = self.by_entity.get(target)
        if dev is None:
            raise FaultError(f"unknown device {target!r}")
        names = tuple(s.name for s in dev.specs)
        params: dict[str, float | str] = {}
        state: dict = {}
        if kind in ("spike", "level_shift", "drift", "stuck"):
            j = dev.metric_index(metric) if metric else rng.randrange(len(names))
            spec = dev.specs[j]
            sign = rng.choice((-1.0, 1.0)) if spec.signed else 1.0
            lo, hi = {"spike": (4.0, 7.0), "level_shift": (1.5, 3.0), "drift": (2.0, 4.0)}.get(kind, (0.0, 0.0))
            if hi:
                params["magnitude"] = round(sign * rng.uniform(lo, hi) * spec.scale, spec.decimals)
            if kind == "spike" and origin == "random":
                duration = max(duration, 1.5 * self.interval)  # so at least one reading carries it
            metrics: tuple[str, ...] = (spec.name,)
            state["j"] = j
        elif kind == "dropout":
            metrics = names
        elif kind == "overheat":
            if dev.kind != "machine":
                raise FaultError(f"overheat needs a machine, {target} is a {dev.kind}")
            metrics = ("temperature", "vibration", "power_w")
            params = {"temperature_rise": round(rng.uniform(30.0, 45.0), 1),
                      "vibration_rise": round(rng.uniform(5.0, 9.0), 2),
                      "failure_at": iso(start + FAILURE_AT * duration)}
            state["fail"] = start + FAILURE_AT * duration
        else:
            raise FaultError(f"{kind!r} is not an IoT fault")
        return Fault(kind, "iot", target, metrics, start, start + duration, params=params, origin=origin,
                     state=state)

    def activate(self, fault: Fault) -> None:
        """Attach a fault to its device (it acts on readings inside its window)."""
        self.by_entity[fault.entity].faults.append(fault)
        self._active.append(fault)

    def _expire(self, t: float) -> None:
        done = [f for f in self._active if f.end <= t]
        for f in done:
            self._active.remove(f)
            self.by_entity[f.entity].faults.remove(f)

    # ------------------------------------------------------------------ generation
    def _pattern(self, minute: int) -> list[float]:
        t = minute * MINUTE
        _, hour = self.local.weekday_hour(t)
        return [0.0, 1.0 if self.store_hours.is_open(t) else 0.0,
                0.5 + 0.5 * math.sin(2 * math.pi * (hour - 9.0) / 24.0),  # warmest at 15:00
                1.0 if self.shifts.is_open(t) else 0.0]

    def emit(self, t0: float, t1: float, out: list[tuple[str, bytes, bytes]]) -> None:
        """Append ("iot", key, wire bytes) for every reading in [t0, t1), in time order."""
        if self._origin is None:
            self._origin = self._t_ref = t0
        if self._active:
            self._expire(t0)
        devices, slots, n = self.devices, self._slots, len(self.devices)
        if not n:
            return
        interval, origin, t_ref = self.interval, self._origin, self._t_ref
        gauss = self.rng.gauss
        g = self._g
        fmin, factors = self._factor_minute, self._factors
        sec, prefix = -1, ""
        append = out.append
        while True:
            k, i = divmod(g, n)
            t = origin + (k + slots[i]) * interval
            if t >= t1:
                break
            g += 1
            dev = devices[i]
            minute = int(t // MINUTE)
            if minute != dev.level_minute:
                if minute != fmin:
                    fmin, factors = minute, self._pattern(minute)
                days = (t - t_ref) / DAY
                dev.levels = [b + a * factors[p] + d * days
                              for b, a, p, d in zip(dev.base, dev.amp, dev.pattern, dev.drift, strict=True)]
                dev.level_minute = minute
            vals = [lv + gauss(0.0, sd) for lv, sd in zip(dev.levels, dev.sd, strict=True)]
            if dev.faults and (vals := _apply_faults(dev, t, vals)) is None:
                continue
            dev.last = vals
            s = int(t)
            if s != sec:
                sec, prefix = s, second_prefix(s)
            append(("iot", dev.key, (dev.fmt % (prefix, int((t - s) * 1000), *vals)).encode()))
        self._g = g
        self._factor_minute, self._factors = fmin, factors


def _apply_faults(dev: Device, t: float, vals: list[float]) -> list[float] | None:
    """The readings as the faults active at ``t`` change them; None when the device is silent."""
    for f in dev.faults:
        if not f.start <= t < f.end:
            continue
        kind = f.kind
        if kind == "dropout":
            return None
        if kind == "overheat":
            _overheat(f, dev, t, vals)
            continue
        j = f.state["j"]
        if kind == "spike" or kind == "level_shift":
            vals[j] += f.params["magnitude"]  # type: ignore[operator]
        elif kind == "drift":
            vals[j] += f.params["magnitude"] * (t - f.start) / (f.end - f.start)  # type: ignore[operator]
        elif kind == "stuck":
            if "value" not in f.state:
                f.state["value"] = dev.last[j] if dev.last else vals[j]
            vals[j] = f.state["value"]
    return vals


def _overheat(f: Fault, dev: Device, t: float, vals: list[float]) -> None:
    """Temperature and vibration rise (quadratically) until the machine fails, then it stands still."""
    fail = f.state["fail"]
    temp, vib, power = (dev.metric_index(m) for m in ("temperature", "vibration", "power_w"))
    if t < fail:
        p = (t - f.start) / (fail - f.start)
        vals[temp] += f.params["temperature_rise"] * p * p  # type: ignore[operator]
        vals[vib] += f.params["vibration_rise"] * p * p  # type: ignore[operator]
        vals[power] *= 1.0 + 0.2 * p
        f.state["peak"] = vals[temp]
        return
    peak = f.state.get("peak", vals[temp])
    ambient = 25.0
    vals[temp] = ambient + (peak - ambient) * math.exp(-(t - fail) / 600.0) + (vals[temp] - dev.levels[temp])
    vals[vib] = abs(0.05 + (vals[vib] - dev.levels[vib]) * 0.2)
    vals[power] = abs(5.0 + (vals[power] - dev.levels[power]) * 0.05)
