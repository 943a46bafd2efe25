"""Rebalance: how long a change of the consumer group holds the stream up, on real workers under a steady load.

One worker consumes a steady load (``SteadyMix`` produced every 100 ms); a second worker joins, and later
leaves (SIGTERM, a clean shutdown). Every 0.25 s a sampler records which source partitions each worker
fetches (``/opsmon/stats``), how many events the workers have taken in, the group's committed offsets and
the partitions' end offsets; :func:`recovery` turns the samples after a change into the figures:

- ``rebalanced_s``: until the group's members after the change fetch every source partition between them (and
  every running worker answers: a worker's event loop blocked for 2 s says nothing);
- ``caught_up_s``: until every partition's committed offset has reached the end offset it had when the group
  was whole again: the backlog that piled up while partitions went unfetched is processed and committed
  (the committed lag is back to what a steady group has);
- ``unfetched_max_s``: the longest any partition went unfetched by every worker (faust#629 saw minutes);
- ``paused_s``: the longest stretch in which no worker took in an event.

Offsets are committed at checkpoints, so even without a change ``caught_up_s`` is up to a checkpoint
interval: the same measure at a moment without a change (``steady``) is the floor to read the others against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from bench.env import with_topics, worker_settings
from bench.pipeline import Worker, assigned_hosts, consumed_of
from bench.workload import Fleet, SteadyMix, aio_config
from opsmon.settings import Settings
from streams.topics import source_topics

SAMPLE_S = 0.25
WORKER_INDEX = 18  # web ports 31084 and 31085: clear of the other phases' workers


@dataclass(frozen=True)
class Sample:
    """What the group looked like at monotonic time ``t``."""

    t: float
    held: tuple[frozenset[str] | None, ...]  # per worker, the source partitions ("topic[p]") it fetches (None: unknown)
    consumed: int  # events taken in by all workers so far (a stopped worker's count is kept)
    committed: Mapping[str, int]  # per source partition, the group's committed offset
    ends: Mapping[str, int]  # per source partition, its end offset


def recovery(samples: Sequence[Sample], t0: float, members: int) -> dict[str, float | None]:
    """The figures of one change at ``t0`` (module docstring) with ``members`` workers after it; None for a point
    the samples do not reach.

    >>> ends = {"a[0]": 8, "a[1]": 7}
    >>> s = [Sample(0.0, (frozenset({"a[0]", "a[1]"}),), 10, {"a[0]": 5, "a[1]": 5}, ends),
    ...      Sample(1.0, (frozenset(), frozenset()), 10, {"a[0]": 5, "a[1]": 5}, ends),
    ...      Sample(2.0, (frozenset({"a[0]"}), frozenset({"a[1]"})), 14, {"a[0]": 7, "a[1]": 6}, ends),
    ...      Sample(3.0, (frozenset({"a[0]"}), frozenset({"a[1]"})), 16, {"a[0]": 8, "a[1]": 8}, ends)]
    >>> recovery(s, 0.0, members=2)
    {'rebalanced_s': 2.0, 'caught_up_s': 3.0, 'unfetched_max_s': 1.0, 'paused_s': 2.0}
    """
    after = [s for s in samples if s.t >= t0]
    parts = set(after[0].ends) if after else set()
    rebalanced = caught_up = None
    backlog: Mapping[str, int] = {}  # the end offsets when the group was whole again
    for s in after:
        holders = [h for h in s.held if h]
        if (rebalanced is None and None not in s.held and len(holders) == members
                and parts <= set().union(*holders)):
            rebalanced, backlog = s.t, s.ends
        if rebalanced is not None and all(s.committed.get(p, 0) >= end for p, end in backlog.items()):
            caught_up = s.t
            break
    window = [s for s in after if caught_up is None or s.t <= caught_up]
    unfetched = 0.0
    for part in parts:
        since: float | None = None
        for s in window:
            if None in s.held and not any(part in h for h in s.held if h):
                continue  # a worker did not answer: it may hold the partition, or not
            held = any(part in h for h in s.held if h)
            if not held and since is None:
                since = s.t
            elif held and since is not None:
                unfetched, since = max(unfetched, s.t - since), None
        if since is not None and window:  # still unfetched at the last sample
            unfetched = max(unfetched, window[-1].t - since)
    before = [s for s in samples if s.t < t0]
    last_t, last_n, paused = t0, (before[-1].consumed if before else (window[0].consumed if window else 0)), 0.0
    for s in window:
        if s.consumed > last_n:
            paused, last_t, last_n = max(paused, s.t - last_t), s.t, s.consumed
    if window and caught_up is None:  # no progress until the end counts too
        paused = max(paused, window[-1].t - last_t)
    return {"rebalanced_s": _since(rebalanced, t0), "caught_up_s": _since(caught_up, t0),
            "unfetched_max_s": round(unfetched, 2), "paused_s": round(paused, 2)}


def record(samples: Sequence[Sample], changes: Mapping[str, dict]) -> dict:
    """Samples and changes as plain JSON, times in seconds from the first sample."""
    start = samples[0].t if samples else 0.0
    return {"changes": {name: {**c, "t0": round(c["t0"] - start, 3)} for name, c in changes.items()},
            "samples": [{"t": round(s.t - start, 3), "held": [None if h is None else sorted(h) for h in s.held],
                         "consumed": s.consumed,
                         "committed": dict(s.committed), "ends": dict(s.ends)} for s in samples]}


def recorded(doc: Mapping) -> dict[str, dict[str, float | None]]:
    """The figures of every change of a recording made by ``record``."""
    samples = [Sample(s["t"], tuple(None if h is None else frozenset(h) for h in s["held"]), s["consumed"],
                      s["committed"], s["ends"]) for s in doc["samples"]]
    return {name: recovery(samples, c["t0"], c["members"]) for name, c in doc["changes"].items()}


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 2)


def _part(topic: str, partition: int) -> str:
    return f"{topic}[{partition}]"


class _InThread:
    """Runs ``_run`` in a daemon thread of its own for the length of a ``with`` block (``_stop`` ends it)."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


class Sampler(_InThread):
    """Samples the workers and the group's committed offsets every ``SAMPLE_S`` in a thread of its own."""

    def __init__(self, settings: Settings, group: str, workers: Sequence[Worker]) -> None:
        super().__init__("rebalance-sampler")
        self.settings, self.group, self.workers = settings, group, workers
        self.topics = set(source_topics(settings).values())
        self.samples: list[Sample] = []
        self._last_count = [0] * len(workers)
        self._lock = threading.Lock()

    def snapshot(self) -> list[Sample]:
        """The samples so far."""
        with self._lock:
            return list(self.samples)

    def _run(self) -> None:
        admin = KafkaAdminClient(**self.settings.kafka_client_config(), client_id="opsmon-bench-rebalance")
        consumer = KafkaConsumer(**self.settings.kafka_client_config(), client_id="opsmon-bench-rebalance")
        tps = [TopicPartition(topic, p) for topic in sorted(self.topics)
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        try:
            while not self._stop.is_set():
                t = time.monotonic()
                held = []
                for i, w in enumerate(self.workers):
                    if not w.running():  # not started yet, or gone
                        held.append(frozenset())
                        continue
                    stats = w.stats()
                    if stats is None:  # starting, or too busy to answer within 2 s: unknown
                        held.append(None)
                        continue
                    self._last_count[i] = consumed_of(stats)
                    held.append(frozenset(_part(topic, p) for topic, st in (stats.get("feed") or {}).items()
                                          if topic in self.topics for p in st.get("partitions", [])))
                offsets = admin.list_consumer_group_offsets(self.group)
                committed = {_part(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()
                             if tp.topic in self.topics}
                ends = {_part(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items()}
                with self._lock:
                    self.samples.append(Sample(t, tuple(held), sum(self._last_count), committed, ends))
                self._stop.wait(max(0.0, SAMPLE_S - (time.monotonic() - t)))
        finally:
            admin.close()
            consumer.close()


class Feeder(_InThread):
    """A steady load of the fleet's events at ``rate``/s, produced every 100 ms in a thread of its own."""

    def __init__(self, settings: Settings, fleet: Fleet, rate: float) -> None:
        super().__init__("rebalance-feeder")
        self.settings, self.rate = settings, rate
        self.mix = SteadyMix(fleet, rate, time.time() + 1.0)
        self.sent = 0
        self.error: BaseException | None = None

    def check(self) -> None:
        """Raise what stopped the producer, if anything did."""
        if self.error is not None:
            raise RuntimeError(f"the rebalance phase's producer failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except Exception as exc:  # any failure of the producer: surfaced to the main thread by check()
            self.error = exc

    async def _produce(self) -> None:
        topics = source_topics(self.settings)
        prod = AIOKafkaProducer(**aio_config(self.settings), acks="all", linger_ms=20, max_batch_size=512 * 1024,
                                client_id="opsmon-bench-rebalance")
        await prod.start()
        try:
            while not self._stop.is_set():
                for source, key, value in self.mix.until(time.time(), step=0.1):
                    await prod.send(topics[source], value=value, key=key)
                    self.sent += 1
                await asyncio.sleep(0.1)
            await prod.flush()
        finally:
            await prod.stop()


def run_rebalance(base: Settings, fleet: Fleet, rate: float, tag: str, run_dir: Path, settle_s: float = 10.0,
                  timeout_s: float = 120.0, on_progress: Callable[[int], None] | None = None) -> dict:
    """One worker under ``rate`` events/s; a second joins, then leaves; the figures of each change (and a steady one).

    ``settle_s``: the load runs this long before each change (and after the join), so each starts from a
    steady group; ``timeout_s``: the longest a change is given to catch up (its figures are None past it).
    ``on_progress`` gets the number of changes measured (of 3). A worker that dies during a change ends the
    phase: the changes measured so far are returned with ``error``, the worker's last words (and its log).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = with_topics(base, tag)
    workers = [Worker(worker_settings(settings, tag, WORKER_INDEX + i, run_dir / f"worker-{i}"),
                      run_dir / f"worker-{i}.log") for i in range(2)]
    first, second = workers
    changes: dict[str, dict] = {}
    at: dict[str, dict] = {}  # per change: when it was made and the members after it (recorded)
    error = ""
    samples: list[Sample] = []
    sent = 0
    try:
        first.start()
        first.wait_ready()
        deadline = time.monotonic() + 90
        while assigned_hosts(first) < 1:
            first.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker got no partitions within 90s:\n{first.log_tail()}")
            time.sleep(0.5)
        with Feeder(settings, fleet, rate) as feeder, Sampler(settings, tag, workers) as sampler:

            def measure(name: str, members: int, change: Callable[[], dict]) -> None:
                t0 = time.monotonic()
                extra = change()
                figures: dict[str, float | None] = {}
                while time.monotonic() - t0 < timeout_s:
                    feeder.check()
                    first.check_alive()
                    figures = recovery(sampler.snapshot(), t0, members)
                    if figures["caught_up_s"] is not None:
                        break
                    time.sleep(SAMPLE_S)
                changes[name] = {**figures, **extra, "members_after": members}
                at[name] = {"t0": t0, "members": members}
                if on_progress is not None:
                    on_progress(len(changes))

            def join() -> dict:
                second.start()  # spawned now; its figures count from here, like an operator's
                t = time.monotonic()
                second.wait_ready()
                return {"ready_s": round(time.monotonic() - t, 2)}

            def leave() -> dict:
                assert second.proc is not None
                second.proc.terminate()  # SIGTERM: revocation, a last checkpoint, leaving the group
                return {}

            try:
                time.sleep(settle_s)
                measure("steady", 1, dict)
                measure("join", 2, join)
                time.sleep(settle_s)
                measure("leave", 1, leave)
            except RuntimeError as exc:  # a worker died in a change: that is the finding, the bench goes on
                error = str(exc)
            samples = sampler.snapshot()
            sent = feeder.sent
    finally:
        for w in workers:
            w.stop()
    with contextlib.suppress(OSError):  # the recording, to read the figures again (``recorded``), not the result
        (run_dir / "samples.json").write_text(json.dumps(record(samples, at)))
    return {"rate": rate, "sent": sent, "partitions": settings.kafka_partitions * len(source_topics(settings)),
            "checkpoint_seconds": settings.checkpoint_seconds, "settle_s": settle_s, "timeout_s": timeout_s,
            **changes, **({"error": error[-2000:]} if error else {})}
