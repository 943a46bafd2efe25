"""OPSMON_MODELS in a real worker: one metric judged by a River HalfSpaceTrees pipeline, another by opsmon's detector,
both written as calibrated scores to the time-series server; a malformed expression stops the worker at start."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess
from tests.tsdb import eventually, influx_points

SITE = "e2e-models"
HST = "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)"
N = 400  # readings, one a minute: past the River model's grace (200) and opsmon's warm-up


def test_each_metric_is_scored_by_its_configured_model_on_one_scale(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings.model_copy(update={"models": {f"iot:{SITE}/*:vibration": HST,
                                                        f"iot:{SITE}/*:temperature": "opsmon"}})
    worker_factory(s)
    t0 = float(int(time.time()) // 86400 * 86400 - 2 * 86400)
    rng = random.Random(5)
    with Publisher(s) as pub:
        for i in range(N):
            reading = iot(t0 + 60.0 * i, SITE, "dev-1", vibration=round(rng.gauss(2.0, 0.2), 3),
                          temperature=round(rng.gauss(4.0, 0.1), 3))
            pub.send_raw("iot", f"{SITE}/dev-1", raw(reading))

    def scores() -> dict:
        return influx_points(s, f'{{__name__=~"anomaly_score_.*",entity="{SITE}/dev-1"}}')

    def complete(points: dict) -> bool:
        last = int((t0 + 60.0 * (N - 1)) * 1000)
        return all(("anomaly_score_score", *_labels(m), last) in points for m in ("vibration", "temperature"))

    points = eventually(scores, complete, timeout=120)
    assert complete(points), f"scores of both metrics up to the last reading: {len(points)} points"
    by_metric: dict[str, dict[str, list[float]]] = {}
    for key, value in points.items():
        metric = dict(key[1:-1])["metric"]
        by_metric.setdefault(metric, {}).setdefault(key[0].removeprefix("anomaly_score_"), []).append(value)
    for metric in ("vibration", "temperature"):
        got = by_metric[metric]
        assert len(got["score"]) == N and all(0.0 <= v <= 1.0 for v in got["score"])
        assert set(got["threshold"]) == {0.5}  # the same bar, the same meaning, whichever model scored
    # the River model's raw scores were calibrated on this series: HalfSpaceTrees' raw scores on this noise sit
    # between 0.9 and 0.997 (above the bar nearly always); calibrated, ordinary noise is below it, and only the
    # values in the tail of its own past scores read above 0
    vib = by_metric["vibration"]["score"]
    assert max(vib) > 0.0 and sum(v >= 0.5 for v in vib) <= 0.02 * N
    # ... and it was the River model: opsmon's detector draws a band (lower, upper), the River path does not
    assert "lower" in by_metric["temperature"] and "lower" not in by_metric["vibration"]


def _labels(metric: str) -> tuple:
    return tuple(sorted({"entity": f"{SITE}/dev-1", "metric": metric, "source": "iot"}.items()))


def test_a_malformed_model_expression_stops_the_worker_with_its_pattern_named(
        pipeline_settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bad = pipeline_settings.model_copy(update={"models": {"iot:*:vibration": "anomaly.HalfSpaceTrees(sead=7)"},
                                               "worker_web_port": port})
    worker = WorkerProcess(bad, tmp_path / "worker-bad-model.log")
    with pytest.raises(RuntimeError, match="worker exited with 2"):
        worker.start(ready_timeout=60)
    log = worker.log_path.read_text()
    assert "settings refused" in log and "model for 'iot:*:vibration'" in log and "sead" in log
