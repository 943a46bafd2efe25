"""A killed worker resumes with what its models had learned: its first scores after the restart equal
those of a worker that never stopped."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from opsmon.settings import Settings
from streams.publisher import Publisher
from streams.topics import create_topics
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess, committed_lag
from tests.tsdb import eventually, influx_points

STEP = 300.0
PHASE1, PHASE2 = 500, 40
DEVICES = ("d1", "d2", "d3")


def _readings(seed: int, n: int, offset: int) -> list[list[float]]:
    rng = random.Random(seed)
    rows = []
    for i in range(offset, offset + n):
        base = 4.0 + 0.5 * math.sin(2 * math.pi * i * STEP / 86400)
        rows.append([base + rng.gauss(0, 0.1) for _ in DEVICES])
    if offset:
        rows[n // 2][0] = 15.0  # a spike in phase 2, so scores also cover an anomaly
    return rows


def _publish(settings: Settings, site: str, t0: float, rows: list[list[float]], offset: int) -> None:
    with Publisher(settings) as pub:
        for i, row in enumerate(rows):
            for dev, x in zip(DEVICES, row, strict=True):
                pub.send_raw("iot", f"{site}/{dev}", raw(iot(t0 + (offset + i) * STEP, site, dev, temperature=x)))


def _scores(settings: Settings, site: str, since_ms: int) -> dict[tuple[str, int], float]:
    pts = influx_points(settings, f'{{__name__="anomaly_score_score",entity=~"{site}/.*"}}')
    return {(dict(k[1:-1])["entity"].split("/")[1], k[-1]): v for k, v in pts.items() if k[-1] >= since_ms}


def _count(worker: WorkerProcess) -> int:
    return (worker.stats() or {}).get("iot", {}).get("events", 0)


def test_scores_after_a_kill_and_restart_match_a_worker_that_never_stopped(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    ref = pipeline_settings
    # Topics of its own for the worker that gets killed: each series has exactly one writer.
    killed = ref.model_copy(update={"app_id": ref.app_id + "-k", "worker_web_port": ref.worker_web_port + 500,
                                    **{f"topic_{s}": f"{getattr(ref, f'topic_{s}')}-k"
                                       for s in ("iot", "pos", "web", "stock", "alerts", "feedback")}})
    killed.__dict__.pop("dlq_topics", None)
    create_topics(killed)
    t0 = float(int(time.time()) // 86400 * 86400 - 6 * 86400)
    phase1, phase2 = _readings(1, PHASE1, 0), _readings(2, PHASE2, PHASE1)
    n1, n2 = PHASE1 * len(DEVICES), (PHASE1 + PHASE2) * len(DEVICES)

    steady = worker_factory(ref)
    victim = worker_factory(killed)
    _publish(ref, "ref-site", t0, phase1, 0)
    _publish(killed, "kill-site", t0, phase1, 0)
    assert eventually(lambda: _count(steady), lambda n: n >= n1, timeout=120) >= n1
    assert eventually(lambda: _count(victim), lambda n: n >= n1, timeout=120) >= n1
    # Past a checkpoint (state changelogged, offsets committed), so the restart does not simply replay everything.
    assert not any(eventually(lambda: committed_lag(killed, [killed.topic_iot]), lambda lag: not any(lag.values()),
                              timeout=2 * killed.checkpoint_seconds + 10).values())
    victim.kill()
    restarted = worker_factory(killed)
    _publish(ref, "ref-site", t0, phase2, PHASE1)
    _publish(killed, "kill-site", t0, phase2, PHASE1)
    assert eventually(lambda: _count(restarted), lambda n: n >= n2 - n1, timeout=120)
    assert eventually(lambda: _count(steady), lambda n: n >= n2, timeout=120)

    since = int((t0 + PHASE1 * STEP) * 1000)
    want = len(DEVICES) * PHASE2

    def both() -> tuple[dict, dict]:
        return _scores(ref, "ref-site", since), _scores(ref, "kill-site", since)

    steady_scores, restarted_scores = eventually(both, lambda p: len(p[0]) >= want and len(p[1]) >= want, timeout=60)
    assert len(steady_scores) == want, "every phase-2 reading was scored by the steady worker"
    assert restarted_scores == steady_scores, "the restarted worker's scores equal the steady worker's"
    assert max(steady_scores.values()) >= 0.5, "the spike was scored as an anomaly (models were warm)"
