"""Injected faults: what they are, when they happen (random and explicit schedules) and the ground-truth file.

A fault belongs to one source domain (IoT fleet, stores, web shops), which knows how to build it for one
of its targets and how it changes the generated data. The planner decides *when*: random faults arrive
as a seeded Poisson process over simulated time, explicit ones come from ``kind:target:start:duration``
specs. Every fault that starts is handed to ``on_fault`` (the ground-truth writer) so detection can be
scored against it.

>>> spec = FaultSpec.parse("spike:site-0/fridge-0@temperature:2026-11-01T10:00:00:5m")
>>> spec.kind, spec.target, spec.metric, spec.start, spec.duration
('spike', 'site-0/fridge-0', 'temperature', '2026-11-01T10:00:00', 300.0)
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from opsmon.sim.clock import HOUR, WEEK, TimeSpecError, iso, parse_duration, parse_time


class FaultError(ValueError):
    """A fault spec that cannot be applied (unknown kind or target, bad time)."""


@dataclass(eq=False)
class Fault:
    """One injected fault (or, with ``is_fault`` False, a known business event such as a promotion)."""

    kind: str
    source: str  # "iot", "pos" or "web"
    entity: str  # what the pipeline scores: site/device, store or web site
    metrics: tuple[str, ...]  # the series it should show in
    start: float
    end: float
    target: str = ""  # a finer target inside the entity (a till, a SKU), or ""
    params: dict[str, float | str] = field(default_factory=dict)
    origin: str = "random"  # random | explicit | schedule
    is_fault: bool = True
    id: int = 0
    state: dict = field(default_factory=dict, repr=False)  # the domain's scratch space, not ground truth

    def active(self, t: float) -> bool:
        """True when ``t`` lies in [start, end)."""
        return self.start <= t < self.end

    def record(self) -> dict:
        """The ground-truth row."""
        return {"id": self.id, "kind": self.kind, "fault": self.is_fault, "source": self.source,
                "entity": self.entity, "target": self.target, "metrics": list(self.metrics),
                "start": iso(self.start), "end": iso(self.end), "start_ts": round(self.start, 3),
                "end_ts": round(self.end, 3), "origin": self.origin, "params": self.params}


class Domain(Protocol):
    """What the planner needs from a source generator."""

    source: str
    kinds: Mapping[str, tuple[float, float]]  # fault kind -> (min, max) duration of random ones, seconds
    scheduled: Mapping[str, float]  # non-fault kinds (promotions) -> how many per week

    def targets(self, kind: str) -> Sequence[str]: ...  # noqa: D102

    def make_fault(self, kind: str, target: str, start: float, duration: float, rng: random.Random,
                   metric: str | None, origin: str) -> Fault | None: ...  # noqa: D102

    def activate(self, fault: Fault) -> None: ...  # noqa: D102


@dataclass(frozen=True)
class FaultSpec:
    """An explicit fault: ``kind:target[@metric]:start:duration``; start is ISO, ``+2h`` or ``now-1h``."""

    kind: str
    target: str
    start: str
    duration: float
    metric: str | None = None

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Read ``kind:target[@metric]:start:duration`` (the start may itself contain colons)."""
        parts = text.strip().split(":")
        if len(parts) < 4 or not all(parts[:2]) or not parts[-1]:
            raise FaultError(f"bad fault {text!r}: expected kind:target[@metric]:start:duration, "
                             f"e.g. spike:site-0/fridge-0:+2h:5m")
        kind = parts[0].strip().lower().replace("-", "_")
        target, _, metric = parts[1].strip().partition("@")
        try:
            duration = parse_duration(parts[-1])
        except TimeSpecError as exc:
            raise FaultError(f"bad fault {text!r}: {exc}") from None
        if duration <= 0:
            raise FaultError(f"bad fault {text!r}: the duration must be positive")
        return cls(kind, target, ":".join(parts[2:-1]).strip(), duration, metric or None)

    def start_time(self, sim_start: float, tz: str) -> float:
        """Unix seconds of the start; a bare duration (``90m``) counts from the simulation start."""
        try:
            return sim_start + parse_duration(self.start)
        except TimeSpecError:
            pass
        try:
            return parse_time(self.start, ref=sim_start, tz=tz)
        except TimeSpecError as exc:
            raise FaultError(f"fault {self.kind}:{self.target}: {exc}") from None


class FaultPlanner:
    """When faults start: a seeded Poisson process of random ones plus explicit specs, released in time order."""

    def __init__(self, domains: Iterable[Domain], rng: random.Random, faults_per_hour: float = 0.0,
                 explicit: Sequence[FaultSpec] = (), tz: str = "UTC") -> None:
        self.domains = list(domains)
        self.by_kind = {k: d for d in self.domains for k in (*d.kinds, *d.scheduled)}
        self.rng = rng
        self.rate = faults_per_hour / HOUR
        self.explicit = list(explicit)
        self.tz = tz
        for spec in self.explicit:
            self._domain(spec.kind)
        self._pending: list[tuple[float, int, Fault]] = []
        self._next_random = float("inf")
        self._next_scheduled: dict[str, float] = {}
        self._busy: dict[str, float] = {}  # target -> end of its last random fault
        self._ids = 0
        self._seq = 0
        self._started = False

    def kinds(self) -> dict[str, str]:
        """Every kind this planner can inject -> its source."""
        return {k: d.source for k, d in self.by_kind.items()}

    def _domain(self, kind: str) -> Domain:
        d = self.by_kind.get(kind)
        if d is None:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(self.by_kind))}")
        return d

    def begin(self, start: float) -> None:
        """Fix the simulation start: resolve explicit specs and draw the first random arrival."""
        self._started = True
        for spec in self.explicit:
            d = self._domain(spec.kind)
            if spec.target not in d.targets(spec.kind):
                known = list(d.targets(spec.kind))
                raise FaultError(f"fault {spec.kind}: unknown target {spec.target!r}; e.g. "
                                 f"{', '.join(known[:5])}{' ...' if len(known) > 5 else ''}")
            f = d.make_fault(spec.kind, spec.target, spec.start_time(start, self.tz), spec.duration, self.rng,
                             spec.metric, "explicit")
            if f is None:
                raise FaultError(f"fault {spec.kind}:{spec.target}: not applicable")
            self._push(f)
        if self.rate > 0 and self._random_kinds():
            self._next_random = start + self.rng.expovariate(self.rate)
        for d in self.domains:
            for kind, per_week in d.scheduled.items():
                if per_week > 0:
                    self._next_scheduled[kind] = start + self.rng.expovariate(per_week / WEEK)

    def due(self, t0: float, t1: float) -> list[Fault]:
        """Faults starting before ``t1`` not released yet (call with increasing, contiguous ranges)."""
        if not self._started:
            self.begin(t0)
        while self._next_random < t1:
            t = self._next_random
            self._next_random = t + self.rng.expovariate(self.rate)
            f = self._random_fault(t)
            if f is not None:
                self._push(f)
        for kind, t in list(self._next_scheduled.items()):
            d = self.by_kind[kind]
            while t < t1:
                target = self.rng.choice(d.targets(kind))
                lo, hi = d.kinds.get(kind, (HOUR, HOUR))
                f = d.make_fault(kind, target, t, self.rng.uniform(lo, hi), self.rng, None, "schedule")
                if f is not None:
                    self._push(f)
                t += self.rng.expovariate(d.scheduled[kind] / WEEK)
            self._next_scheduled[kind] = t
        out = []
        while self._pending and self._pending[0][0] < t1:
            f = heapq.heappop(self._pending)[2]
            self._ids += 1
            f.id = self._ids  # numbered in start order, as they appear in the ground truth
            out.append(f)
        return out

    def _random_kinds(self) -> list[str]:
        return [k for d in self.domains for k in d.kinds if d.targets(k) and k not in d.scheduled]

    def _random_fault(self, t: float) -> Fault | None:
        kind = self.rng.choice(self._random_kinds())
        d = self.by_kind[kind]
        targets = d.targets(kind)
        for _ in range(5):  # prefer a target that is not already faulty
            target = self.rng.choice(targets)
            if self._busy.get(target, 0.0) <= t:
                break
        else:
            return None
        lo, hi = d.kinds[kind]
        f = d.make_fault(kind, target, t, self.rng.uniform(lo, hi), self.rng, None, "random")
        if f is not None:
            self._busy[target] = f.end
        return f

    def _push(self, f: Fault) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (f.start, self._seq, f))


class TruthWriter:
    """Appends every fault that starts to a ground-truth file: JSON lines, or CSV for a ``.csv`` name."""

    CSV_FIELDS = ("id", "kind", "fault", "source", "entity", "target", "metrics", "start", "end", "start_ts",
                  "end_ts", "origin", "params")

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._csv = self.path.suffix.lower() == ".csv"
        self._file: IO[str] = self.path.open("w", encoding="utf-8", newline="")
        self.count = 0
        if self._csv:
            self._file.write(",".join(self.CSV_FIELDS) + "\r\n")

    def __call__(self, fault: Fault) -> None:
        """Write one row and flush, so a run stopped with Ctrl-C keeps what happened."""
        rec = fault.record()
        if self._csv:
            rec["metrics"] = ";".join(rec["metrics"])
            rec["params"] = json.dumps(rec["params"], sort_keys=True)
            buf = io.StringIO()
            csv.writer(buf).writerow([rec[k] for k in self.CSV_FIELDS])
            self._file.write(buf.getvalue())
        else:
            self._file.write(json.dumps(rec, sort_keys=False) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_truth(path: Path | str) -> list[dict]:
    """Read a ground-truth file back (JSON lines or CSV) as dicts like :meth:`Fault.record`."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() != ".csv":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({**row, "id": int(row["id"]), "fault": row["fault"] == "True",
                     "metrics": [m for m in row["metrics"].split(";") if m],
                     "start_ts": float(row["start_ts"]), "end_ts": float(row["end_ts"]),
                     "params": json.loads(row["params"])})
    return rows


OnFault = Callable[[Fault], None]
