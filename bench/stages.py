"""Time per stage of the worker's hot path, measured in this process on the preloaded events.

The worker's feed hands each fetched batch of one source partition to ``SourcePipeline.process`` (with
the scoring and demand observers) and writes the lines to InfluxDB; at each checkpoint (every
``checkpoint_seconds``) it changelogs every state changed since the last one (Faust pickles it). Here
the same code runs without Faust and Kafka, in one pass, with timers around the calls that make up each
stage:

* decode + validate: ``streams.schemas.decode``;
* scoring: the observers (``Scoring``, ``Demand``), less the lines they build;
* line protocol: ``sinks.lineproto.line``, wherever it is called;
* fold + aggregate: the rest of ``process`` (state lookup, de-duplication, windows);
* changelog serialise: Faust's ``pickle`` codec on each state changed since the last checkpoint, once per
  checkpoint (a checkpoint every ``checkpoint_events`` events: the worker's rate times the interval, shared
  between the sources by their share of the events);
* sink write: the produced lines through ``InfluxWriter`` to the real InfluxDB, awaited batch by batch.

The timers cost about 0.1 µs per call. What is left of the worker's wall time per event is Faust and
Kafka: fetching, the stream machinery, producing changelogs, committing (:func:`bench.metrics.stage_split`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from faust.serializers import codecs

import streams.demand
import streams.pipeline
import streams.scoring
import streams.sources
from bench.workload import RawEvent
from opsmon.settings import Settings
from sinks.influx import InfluxWriter
from streams.demand import Demand
from streams.heap import collect_less
from streams.pipeline import Record, SourcePipeline, WindowConfig
from streams.scoring import Scoring, ScoringConfig
from streams.state_codec import STATE_CODEC
from streams.state_codec import register as register_state_codec

STAGES = ("decode + validate", "fold + aggregate", "scoring (models)", "line protocol", "changelog serialise",
          "sink write (InfluxDB)")


def records_by_source(events: list[RawEvent], partitions: int) -> dict[str, list[Record]]:
    """The events as Kafka would hand them over: per source, partitioned by key like the producer, with offsets."""
    partitioner = DefaultPartitioner()
    parts = list(range(partitions))
    part_of: dict[bytes, int] = {}
    offsets: dict[tuple[str, int], int] = {}
    out: dict[str, list[Record]] = {"iot": [], "pos": [], "web": []}
    for source, key, value in events:
        p = part_of.get(key)
        if p is None:
            p = part_of[key] = partitioner(key, parts, parts)
        off = offsets.get((source, p), 0)
        offsets[(source, p)] = off + 1
        out[source].append(Record(p, off, key, value))
    return out


def _pipeline(source: str, settings: Settings) -> SourcePipeline:
    """A pipeline built as the worker builds it (``streams.app.create_app``), its state in plain dicts."""
    cfg = WindowConfig(size=settings.window_seconds, grace=settings.grace_seconds,
                       late_retention=settings.late_retention_seconds, idle_close=settings.idle_close_seconds)
    scoring_cfg = ScoringConfig(threshold=settings.score_threshold, grafana_url=settings.grafana_url,
                                window_size=settings.window_seconds, window_grace=settings.grace_seconds)
    obs: list = [Scoring(source, scoring_cfg)]
    aux: dict | None = None
    if source == "pos":
        aux = {}
        obs.append(Demand(aux))
    return SourcePipeline(source, {}, cfg, obs, aux=aux)


class _Timers:
    """Accumulated seconds of the instrumented calls; ``depth`` > 0 while inside an observer."""

    def __init__(self) -> None:
        self.decode = self.observers = self.lines = self.lines_in_observers = 0.0
        self.depth = 0

    def timed_decode(self, f: Callable) -> Callable:
        """``f`` (decode) with its time added to ``decode``."""
        def decode_timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                self.decode += time.perf_counter() - t
        return decode_timed

    def timed_line(self, f: Callable) -> Callable:
        """``f`` (line) with its time added to ``lines`` (and ``lines_in_observers`` within an observer)."""
        def line_timed(*a: Any) -> str:
            t = time.perf_counter()
            out = f(*a)
            dt = time.perf_counter() - t
            self.lines += dt
            if self.depth:
                self.lines_in_observers += dt
            return out
        return line_timed

    def timed_observer(self, obs: Any) -> Any:
        """An observer whose ``on_value`` time is added to ``observers``."""
        timers = self

        class Timed:
            def on_value(self, *a: Any, **k: Any) -> None:
                timers.depth += 1
                t = time.perf_counter()
                try:
                    obs.on_value(*a, **k)
                finally:
                    timers.observers += time.perf_counter() - t
                    timers.depth -= 1

            def on_tick(self, *a: Any, **k: Any) -> None:
                obs.on_tick(*a, **k)

        return Timed()


@contextmanager
def _instrumented(timers: _Timers) -> Iterator[None]:
    """Timers around ``decode`` and ``line`` in the modules of the hot path, restored afterwards."""
    patched = [(streams.pipeline, "decode", timers.timed_decode(streams.pipeline.decode))]
    patched += [(m, "line", timers.timed_line(m.line))
                for m in (streams.pipeline, streams.scoring, streams.demand, streams.sources)]
    saved = [(m, name, getattr(m, name)) for m, name, _ in patched]
    for m, name, f in patched:
        setattr(m, name, f)
    try:
        yield
    finally:
        for m, name, f in saved:
            setattr(m, name, f)


def measure_stages(events: list[RawEvent], settings: Settings, batch: int = 2000,
                   on_progress: Callable[[int], None] | None = None, checkpoint_events: int = 0) -> dict:
    """Microseconds per event of each stage (see the module docstring), on ``events``.

    ``checkpoint_events``: events between two checkpoints (0: a checkpoint after every batch).
    """
    recs = records_by_source(events, settings.kafka_partitions)
    n = sum(len(r) for r in recs.values())
    collect_less()  # the worker's garbage-collection policy (this process ends with the bench)
    now = time.time()
    timers = _Timers()
    processing = changelog = 0.0
    states = size = done = 0
    line_batches: list[list[str]] = []
    with _instrumented(timers):
        for source, records in recs.items():
            p = _pipeline(source, settings)
            p.observers = [timers.timed_observer(o) for o in p.observers]
            register_state_codec()
            every = checkpoint_events * len(records) / n
            changed: set[str] = set()
            aux_changed: set[str] = set()
            since = 0
            for i in range(0, len(records), batch):
                chunk = records[i:i + batch]
                t0 = time.perf_counter()
                out = p.process(chunk, now)
                processing += time.perf_counter() - t0
                changed |= out.changed
                aux_changed |= out.aux_changed.keys()
                since += len(chunk)
                line_batches.append(out.lines)
                if since >= every or i + batch >= len(records):  # a checkpoint: what the worker changelogs
                    t1 = time.perf_counter()
                    for entity in changed:
                        size += len(codecs.dumps(STATE_CODEC, p.states[entity]))
                    for key in aux_changed:
                        size += len(codecs.dumps(STATE_CODEC, p.aux[key]))
                    changelog += time.perf_counter() - t1
                    states += len(changed) + len(aux_changed)
                    changed, aux_changed, since = set(), set(), 0
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done)
    t_sink, lines = asyncio.run(_sink(settings, line_batches))
    us = 1e6 / n
    lines_outside = timers.lines - timers.lines_in_observers
    stages = {
        "decode + validate": timers.decode * us,
        "fold + aggregate": (processing - timers.decode - timers.observers - lines_outside) * us,
        "scoring (models)": (timers.observers - timers.lines_in_observers) * us,
        "line protocol": timers.lines * us,
        "changelog serialise": changelog * us,
        "sink write (InfluxDB)": t_sink * us,
    }
    return {"events": n, "by_source": {s: len(r) for s, r in recs.items()}, "batch": batch,
            "checkpoint_events": checkpoint_events,
            "stages_us": {k: round(v, 2) for k, v in stages.items()},
            "lines_per_event": round(lines / n, 3),
            "changelog_states_per_event": round(states / n, 3),
            "changelog_bytes_per_event": round(size / n, 1),
            "changelog_bytes_per_state": round(size / states, 1) if states else 0}


async def _sink(settings: Settings, batches: list[list[str]]) -> tuple[float, int]:
    """Seconds to write every batch through the worker's writer, one awaited write per batch as the agents do."""
    writer = InfluxWriter(settings.influx_url, settings.influx_token.get_secret_value(), settings.influx_org,
                          settings.influx_bucket, max_batch_lines=settings.influx_batch_lines,
                          gzip=settings.influx_gzip)
    try:
        t0 = time.perf_counter()
        for lines in batches:
            await writer.write(lines)
        return time.perf_counter() - t0, sum(len(b) for b in batches)
    finally:
        await writer.close()
