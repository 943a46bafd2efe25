"""Memory per tracked entity: RSS and changelog bytes of IoT device state, against the number of devices.

Each measurement runs in a fresh interpreter (``python -m bench.memory --devices N ...`` prints one JSON
line), so the RSS it reports is that of this state alone. The simulator's events are made first, packed
into one buffer (a worker gets its events as bytes from Kafka, and runs no simulator: the simulator's own
per-device state, made again at each reading, would sit between the devices' objects and keep pages of
freed ones resident), the simulator dropped and the heap trimmed; the RSS is taken, then every device's
readings go through ``SourcePipeline("iot")`` with the scoring observer in batches of 2,000, as in the
worker, and the RSS is taken again after a garbage collection.

What one more device costs is the slope between two fleets (:func:`marginal`: ``devices`` and twice as
many, each in its own interpreter): a single fleet's RSS per device also carries what the first batch
allocates once for any number of devices (the interpreter's caches, the freezer's Zstandard tables;
~2 MiB), which a fleet of 200 would read as 10 KiB a device. Both are reported.

A device's detectors keep a time-of-day profile of up to 288 bins per metric, filled as the day goes
by, so the state of a device that has reported for a day is larger than after a few readings: the
``full day`` measurement feeds a day and an hour at a five-minute interval (every bin filled, and the
profile formed by the first value after the day: from then on it is kept in single precision).
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import subprocess
import sys
import time
from array import array
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

DAY = 86_400.0
TICK_S = 10.0  # event time between ticks of the fed pipeline


class PackedEvents:
    """Events as one buffer of keys and values and their end offsets: a few objects, whatever their number.

    >>> packed = PackedEvents([("iot", b"a/1", b'{"x":1}'), ("iot", b"b/2", b'{"x":22}')])
    >>> list(packed)
    [(b'a/1', b'{"x":1}'), (b'b/2', b'{"x":22}')]
    """

    def __init__(self, events: Iterable[tuple[str, bytes, bytes]]) -> None:
        buf = bytearray()
        ends = array("q")
        for _, key, value in events:
            buf += key
            ends.append(len(buf))
            buf += value
            ends.append(len(buf))
        self._buf = bytes(buf)
        self._ends = ends

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        buf, ends = self._buf, self._ends
        start = 0
        for i in range(0, len(ends), 2):
            key_end, end = ends[i], ends[i + 1]
            yield buf[start:key_end], buf[key_end:end]
            start = end


def measure(devices: int, readings: int, interval_s: float, seed: int = 42, sample: int = 500) -> dict:
    """Feed ``readings`` per device (``interval_s`` apart) of ``devices`` devices; RSS and pickled bytes."""
    import psutil
    from faust.serializers import codecs

    from bench.workload import ALWAYS_OPEN, PRELOAD_START, event_time, raw_events
    from opsmon.simulator import Mix, Simulator
    from streams.heap import TRIM_EVERY_S, collect_less, trim_heap
    from streams.pipeline import Record, SourcePipeline
    from streams.scoring import Scoring, ScoringConfig, series_of
    from streams.state_codec import STATE_CODEC
    from streams.state_codec import register as register_state_codec

    per_site = min(devices, 100)
    sim = Simulator(seed=seed, sites=devices // per_site, devices_per_site=per_site, stores=1, web_sites=1,
                    mix=Mix(iot=1.0, pos=0.0, web=0.0), rate=devices / interval_s, hours=ALWAYS_OPEN)
    start = PRELOAD_START
    events = PackedEvents(raw_events(sim, start, start + readings * interval_s))
    del sim
    pipeline = SourcePipeline("iot", {}, observers=[Scoring("iot", ScoringConfig())])
    proc = psutil.Process()
    gc.collect()
    collect_less()  # the worker's memory policy: its collections, and its heap trims (on event time here)
    trim_heap()  # (what making the events freed would otherwise take the first devices' state for free)
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    batch: list[Record] = []
    n = 0
    now = start + readings * interval_s + 1  # the wall clock: event time is the stream's own
    ticked = trimmed = start
    # As in the worker: batches of what arrives (at most 2,000), and a tick as event time moves on (every
    # TICK_S), at which devices idle for OPSMON_STATE_IDLE_SECONDS are frozen (streams.scoring._freeze).
    for key, value in events:
        batch.append(Record(0, n, key, value))
        n += 1
        ts = event_time(value)
        if len(batch) == 2000 or ts - ticked >= TICK_S:
            pipeline.process(batch, now)
            batch = []
            if ts - ticked >= TICK_S:
                pipeline.tick(now)
                ticked = ts
            if ts - trimmed >= TRIM_EVERY_S:
                trim_heap()
                trimmed = ts
    if batch:
        pipeline.process(batch, now)
    pipeline.tick(now + 1.0)  # the worker's next tick, a second later
    del batch
    elapsed = time.perf_counter() - t0
    gc.collect()
    rss1 = proc.memory_info().rss  # up to a minute after the last trim, as the worker's RSS may be
    states = pipeline.states
    names = list(states)[:: max(1, len(states) // sample)][:sample]
    pickled = sum(len(pickle.dumps(states[e], protocol=pickle.HIGHEST_PROTOCOL)) for e in names) / len(names)
    register_state_codec()
    changelog = sum(len(codecs.dumps(STATE_CODEC, states[e])) for e in names) / len(names)
    series = sum(len(series_of(states[e])) for e in names) / len(names)  # a device's metrics (thawed to count)
    return {"devices": len(states), "readings": n, "readings_per_device": round(n / max(1, len(states)), 1),
            "interval_s": interval_s, "seconds": round(elapsed, 2),
            "rss_delta_mib": round((rss1 - rss0) / 2**20, 2), "rss_delta_bytes": rss1 - rss0,
            "rss_bytes_per_entity": round((rss1 - rss0) / max(1, len(states)), 1),
            "pickle_bytes_per_entity": round(pickled, 1), "changelog_bytes_per_entity": round(changelog, 1),
            "changelog_bytes_per_series": round(changelog / max(series, 1.0), 1)}


def measure_in_subprocess(devices: int, readings: int, interval_s: float, timeout_s: float = 300.0) -> dict:
    """:func:`measure` in a fresh interpreter (clean RSS); its JSON result."""
    out = subprocess.run([sys.executable, "-m", "bench.memory", "--devices", str(devices), "--readings",
                          str(readings), "--interval", str(interval_s)], capture_output=True, text=True,
                         timeout=timeout_s, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement for {devices} devices failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def marginal(devices: int, readings: int, interval_s: float) -> dict:
    """What one more device costs: RSS between a fleet of ``devices`` and one twice as large, per device.

    The two fleets run side by side, each in its own interpreter (RSS is per process). Returns the larger
    fleet's measurement with ``marginal_bytes_per_entity`` (the slope) and ``fixed_bytes`` (what the fleets
    share whatever their size: the intercept).
    """
    sizes = (devices, 2 * devices)
    with ThreadPoolExecutor(len(sizes)) as pool:
        small, large = pool.map(lambda n: measure_in_subprocess(n, readings, interval_s), sizes)
    rss = [f["rss_delta_bytes"] for f in (small, large)]
    slope = (rss[1] - rss[0]) / max(1, large["devices"] - small["devices"])
    return {**large, "marginal_bytes_per_entity": round(slope, 1),
            "fixed_bytes": round(rss[0] - slope * small["devices"]), "fleets": [small, large]}


def main() -> None:
    """Command line of the subprocess: one measurement, one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--readings", type=int, default=5)
    ap.add_argument("--interval", type=float, default=10.0)
    args = ap.parse_args()
    print(json.dumps(measure(args.devices, args.readings, args.interval)))


if __name__ == "__main__":
    main()
