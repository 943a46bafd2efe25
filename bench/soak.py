"""Soak: a steady load for minutes on one worker; is its memory flat and its lag bounded?

Events come from the simulator in real time (simulated time = wall time, the calibrated mix of
:class:`bench.workload.SteadyMix`), produced every 100 ms. Every ``sample_s`` seconds the worker's RSS
and its lag (events produced - events the worker has consumed) are sampled; the verdict looks at the
second half of the run, after the state of every entity exists (:func:`bench.metrics.flat_and_bounded`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.env import with_topics, worker_settings
from bench.metrics import flat_and_bounded
from bench.pipeline import Worker
from bench.workload import Fleet, SteadyMix, aio_config
from opsmon.settings import Settings
from streams.topics import source_topics


async def _produce(settings: Settings, mix: SteadyMix, minutes: float, worker: Worker, sample_s: float,
                   on_progress: Callable[[float], None] | None) -> list[tuple[float, int, int]]:
    """Produce in real time; samples of (seconds since start, RSS bytes, lag)."""
    topics = source_topics(settings)
    prod = AIOKafkaProducer(**aio_config(settings), acks="all", linger_ms=20, max_batch_size=512 * 1024,
                            client_id="opsmon-bench-soak")
    await prod.start()
    samples: list[tuple[float, int, int]] = []
    sent = 0
    try:
        t0 = time.time()
        next_sample = t0 + sample_s
        while time.time() - t0 < minutes * 60:
            for source, key, value in mix.until(time.time(), step=0.1):
                await prod.send(topics[source], value=value, key=key)
                sent += 1
            now = time.time()
            if now >= next_sample:
                next_sample += sample_s
                worker.check_alive()
                consumed = await asyncio.to_thread(worker.consumed)
                samples.append((now - t0, worker.sample_rss(), max(0, sent - (consumed or 0))))
                if on_progress is not None:
                    on_progress(now - t0)
            await asyncio.sleep(0.1)
        await prod.flush()
    finally:
        await prod.stop()
    return samples


def run_soak(base: Settings, fleet: Fleet, rate: float, minutes: float, tag: str, run_dir: Path,
             sample_s: float = 5.0, on_progress: Callable[[float], None] | None = None) -> dict:
    """One worker under ``rate`` events/s for ``minutes``; RSS and lag samples and the verdict."""
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = with_topics(base, tag)
    worker = Worker(worker_settings(settings, tag, 15, run_dir / "worker"), run_dir / "worker.log")
    try:
        worker.start()
        worker.wait_ready()
        mix = SteadyMix(fleet, rate, time.time() + 1.0)
        samples = asyncio.run(_produce(settings, mix, minutes, worker, sample_s, on_progress))
    finally:
        worker.stop()
    ts = [s[0] for s in samples]
    rss = [s[1] / 2**20 for s in samples]
    lag = [s[2] for s in samples]
    verdict = flat_and_bounded(ts, rss, lag, rate) if len(samples) >= 4 else {}
    return {"minutes": minutes, "rate": rate, "samples": [[round(t, 1), round(r, 1), g] for t, r, g in
                                                          zip(ts, rss, lag, strict=True)],
            "rss_first_mib": rss[0] if rss else None, "rss_last_mib": rss[-1] if rss else None,
            "rss_slope_mib_per_min": round(verdict.get("rss_slope_per_min", 0.0), 3),
            "lag_max": int(verdict.get("lag_max", 0)), "lag_last": int(verdict.get("lag_last", 0)),
            "memory_flat": verdict.get("memory_flat"), "lag_bounded": verdict.get("lag_bounded")}
