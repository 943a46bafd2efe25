"""From a batch of raw Kafka records to points, dead letters and state changes, with no I/O.

The worker's feed (``streams.feed``) hands each fetched batch here and writes the returned lines to the
sink; the touched entity states are changelogged at the next checkpoint, after every write before it was
acknowledged, and only then are the offsets committed. Replay after a crash is idempotent: every entity
state remembers the last offset folded into it, and points carry event timestamps, so a re-processed event
overwrites instead of double-counting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sinks.lineproto import line
from streams.schemas import Event, InvalidEvent, IotReading, decode
from streams.sources import SOURCES, SourceSpec
from streams.windows import Aggregate, EntityWindows

MAX_REMEMBERED_TXNS = 50_000


@dataclass(slots=True)
class Record:
    """One message as consumed from Kafka."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()  # the producer's; a dead letter keeps them


def message_headers(headers: object) -> tuple[tuple[str, bytes], ...]:
    """A consumed message's headers as (name, value) pairs (clients give a list, a mapping or None)."""
    if not headers:
        return ()  # most messages: no generator and tuple per record on the hot path
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    return tuple((str(k), v if isinstance(v, bytes) else b"") for k, v in pairs)  # type: ignore[union-attr]


@dataclass(slots=True)
class DeadLetter:
    """A rejected message and why."""

    record: Record
    kind: str
    reason: str


@dataclass(slots=True)  # (a worker holds one per device: no instance dict, ~0.1 KiB less each)
class EntityState:
    """Everything opsmon remembers about one device, store or site (one Faust table value)."""

    partition: int
    offset: int = -1  # last source offset folded in; older ones are replays
    last_ts: float = 0.0  # event time of the newest event
    # a windowed source's open and recent windows; None until its first event (a device's readings have none)
    windows: EntityWindows | None = None
    # recent event ids -> event time (SourceSpec.event_id); None until the first (a device's readings have none)
    txns: dict[str, float] | None = None
    models: dict[str, Any] = field(default_factory=dict)  # per-metric model state

    def __setstate__(self, state: dict[str, Any] | tuple[None, dict[str, Any]]) -> None:
        # (None, slots) as pickled now; a changelog written before the slots holds the instance's dict
        self.offset, self.last_ts, self.windows, self.txns, self.models = -1, 0.0, None, None, {}
        for name, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, name, value)


@dataclass
class Output:
    """What one batch (or one idle tick) produced."""

    lines: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # entities whose state must be changelogged
    aux_changed: dict[str, int] = field(default_factory=dict)  # auxiliary state keys -> partition
    alerts: list[Any] = field(default_factory=list)  # alert events for the alerts topic
    counts: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class WindowConfig:
    """Window size and lateness policy, in seconds."""

    size: int = 60
    grace: float = 10.0
    late_retention: float = 3600.0
    idle_close: float = 5.0


class Observer(Protocol):
    """A model joining the stream: it sees every value to score and a periodic tick per entity."""

    def on_value(self, entity: str, state: EntityState, ts: float, values: dict[str, float], out: Output) -> None:
        """A reading, or a window's fields (``ts`` = window start) once the window is final.

        A window is final once event time has passed its end plus the grace period (a window written early
        by an idle flush is handed over when it gets there). A late event re-emits a final window: the
        observer knows whether it saw that window already.
        """

    def on_tick(self, entity: str, state: EntityState, now: float, out: Output) -> None:
        """Time moved on to ``now`` (event time, advanced by idle wall-clock time)."""


class SourcePipeline:
    """Decode, validate, de-duplicate and aggregate the events of one source topic.

    ``states`` is any mutable mapping from entity to :class:`EntityState`: a dict in tests, the Faust
    table's store in the worker; ``aux`` the same for state that observers keep per sub-entity (demand per
    store and SKU). ``observers`` see every value that should be scored, which is how the models join in.
    """

    def __init__(self, source: str, states: MutableMapping[str, EntityState],
                 windows: WindowConfig = WindowConfig(), observers: list[Observer] | None = None,
                 aux: MutableMapping[str, Any] | None = None) -> None:
        self.source = source
        self.spec: SourceSpec = SOURCES[source]
        self.states = states
        self.aux: MutableMapping[str, Any] = {} if aux is None else aux
        self.cfg = windows
        self.observers = observers or []
        self.watermarks: dict[int, float] = {}  # partition -> max event time seen
        self.last_arrival: dict[int, float] = {}  # partition -> wall clock of last record
        self.idle_flushed: set[int] = set()
        self.totals: Counter = Counter()
        self._fold = self._fold_window if self.spec.windowed else self._fold_reading
        self._factory: Callable[[], Aggregate] | None = self.spec.aggregate

    # ------------------------------------------------------------------ batches
    def process(self, records: list[Record], now: float) -> Output:
        """Fold a batch of records in and return what to write, dead-letter and changelog."""
        out = Output()
        touched = {rec.partition for rec in records}
        for part in touched:
            self.last_arrival[part] = now
        self.idle_flushed -= touched
        # Per event only what differs between events: settings, tables and counters are held in locals, and
        # the counters are added to ``out.counts`` once per batch.
        states, watermarks, source, fold, dead = self.states, self.watermarks, self.source, self._fold, out.dead
        changed = out.changed
        windowed = self._factory is not None
        size, grace, late_retention = self.cfg.size, self.cfg.grace, self.cfg.late_retention
        n_events = n_replayed = n_late = n_dead = 0
        for rec in records:
            part = rec.partition
            try:
                ev = decode(source, rec.value, now)
            except InvalidEvent as exc:
                dead.append(DeadLetter(rec, exc.kind, str(exc)))
                n_dead += 1
                continue
            entity = ev.entity
            state = states.get(entity)
            if state is None:
                state = EntityState(partition=part)
                states[entity] = state
            if rec.offset <= state.offset and part == state.partition:
                n_replayed += 1  # already folded in before a restart
                continue
            ts = ev.ts  # a datetime conversion: once per event, handed to the fold
            wm = watermarks.get(part, 0.0)
            if windowed and ts + late_retention < wm - size:
                dead.append(DeadLetter(rec, "late", f"late: event time is {wm - ts:.0f}s behind the "
                                       f"stream, beyond the {late_retention:.0f}s correction period"))
                n_dead += 1
                continue
            reason = fold(entity, state, ev, ts, out)
            if reason is not None:
                dead.append(DeadLetter(rec, "duplicate", reason))
                n_dead += 1
                continue
            if ts < wm - grace:
                n_late += 1
            state.offset = rec.offset
            if ts > state.last_ts:
                state.last_ts = ts
            changed.add(entity)
            n_events += 1
            if ts > wm:
                watermarks[part] = ts
        counts = out.counts
        for key, n in (("dead_lettered", n_dead), ("replayed", n_replayed), ("late", n_late), ("events", n_events)):
            if n:
                counts[key] += n
        if windowed:
            self._emit(out, partitions=touched, flush_all=False)
        self.totals.update(counts)
        return out

    def tick(self, now: float) -> Output:
        """Emit windows of partitions idle for ``idle_close`` seconds, and let observers see time pass."""
        out = Output()
        idle = {p for p, t in self.last_arrival.items()
                if now - t >= self.cfg.idle_close and p not in self.idle_flushed}
        if idle and self._factory is not None:
            self._emit(out, partitions=idle, flush_all=True, now=now)
        self.idle_flushed |= idle
        if self.observers:
            for entity, state in list(self.states.items()):
                if state.partition not in self.watermarks:
                    continue  # not ours now, or nothing seen since the start
                event_now = self.event_now(state.partition, now)
                if state.windows is not None and state.windows.unsettled:
                    self._settle(entity, state, event_now, out)
                for obs in self.observers:
                    obs.on_tick(entity, state, event_now, out)
        self.totals.update(out.counts)
        return out

    def event_now(self, partition: int, now: float) -> float:
        """Event time on a partition: its watermark, advanced by wall-clock time since its last event."""
        return self.watermarks.get(partition, 0.0) + max(0.0, now - self.last_arrival.get(partition, now))

    # ------------------------------------------------------------------ folding, as the source's spec says
    def _fold_reading(self, entity: str, state: EntityState, ev: IotReading, ts: float, out: Output) -> None:
        """A reading (``ts``: its event time): written as it is, and every measurement handed to the observers."""
        out.lines.append(line(self.spec.measurement, self.spec.entity_tag_values(entity),
                              ev.measurements, int(round(ts * 1000))))
        for obs in self.observers:
            obs.on_value(entity, state, ts, ev.measurements, out)

    def _fold_window(self, entity: str, state: EntityState, ev: Event, ts: float, out: Output) -> str | None:
        """An event (at ``ts``) folded into its window; the reason it is a duplicate, if the spec names event ids."""
        if self.spec.event_id is not None:
            eid = self.spec.event_id(ev)
            txns = state.txns
            if txns is None:
                txns = state.txns = {}
            if eid in txns:
                return f"duplicate: transaction {eid} was already accepted for {self._tag} {entity}"
            txns[eid] = ts
            if len(txns) > MAX_REMEMBERED_TXNS:
                cutoff = sorted(txns.values())[len(txns) // 2]
                state.txns = {k: t for k, t in txns.items() if t > cutoff}
        assert self._factory is not None
        if state.windows is None:
            state.windows = EntityWindows()
        state.windows.for_time(ts, self.cfg.size, self._factory).add(ev)  # type: ignore[arg-type]
        return None

    @property
    def _tag(self) -> str:
        return self.spec.entity_tags[0]

    # ------------------------------------------------------------------ windows
    def _emit(self, out: Output, partitions: set[int], flush_all: bool, now: float | None = None) -> None:
        cfg = self.cfg
        for entity, state in self.states.items():
            windows = state.windows
            if state.partition not in partitions or windows is None or not windows.windows:
                continue
            wm = self.watermarks.get(state.partition, 0.0)
            closed_by = self.event_now(state.partition, now) if now is not None else wm
            due = list(windows.due(wm, cfg.size, cfg.grace, flush_all))
            for start in due:
                agg = windows.windows[start]
                fields = agg.fields()
                self._window_lines(entity, start, agg, fields, out)
                windows.dirty.discard(start)
                out.counts["windows_corrected" if start in windows.emitted else "windows_written"] += 1
                windows.emitted.add(start)
                if start + cfg.size + cfg.grace <= closed_by:
                    windows.unsettled.discard(start)
                    for obs in self.observers:
                        obs.on_value(entity, state, float(start), fields, out)
                else:
                    windows.unsettled.add(start)
            if windows.unsettled:
                self._settle(entity, state, closed_by, out)
            dropped = windows.expire(wm, cfg.size, cfg.late_retention)
            if due or dropped:
                out.changed.add(entity)
            if state.txns and dropped:
                horizon = wm - cfg.late_retention - cfg.size
                state.txns = {k: t for k, t in state.txns.items() if t >= horizon}

    def _settle(self, entity: str, state: EntityState, closed_by: float, out: Output) -> None:
        """Hand windows written early to the observers once event time has passed their end and grace."""
        cfg, windows = self.cfg, state.windows
        assert windows is not None  # (called only for an entity with unsettled windows)
        for start in sorted(windows.unsettled):
            if start + cfg.size + cfg.grace > closed_by or start in windows.dirty:
                continue  # still open, or changed again: it is emitted (and settled) in the usual way
            windows.unsettled.discard(start)
            fields = windows.windows[start].fields()
            for obs in self.observers:
                obs.on_value(entity, state, float(start), fields, out)
            out.changed.add(entity)

    def _window_lines(self, entity: str, start: int, agg: Aggregate, fields: dict[str, float],
                      out: Output) -> None:
        ts_ms = start * 1000
        out.lines.append(line(self.spec.measurement, self.spec.entity_tag_values(entity), fields, ts_ms))
        out.lines.extend(self.spec.detail_lines(entity, agg, ts_ms))
