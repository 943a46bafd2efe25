"""The stream's scoring with River models configured per series (OPSMON_MODELS): built, calibrated, alerting."""

from __future__ import annotations

import pickle
import random

from models.alert_filter import AlertFilter
from models.anomaly import SeriesDetector
from models.calibrated import CalibratedDetector
from models.river_spec import ModelSpecs
from streams.pipeline import EntityState, Output
from streams.scoring import Scoring, ScoringConfig
from tests.events import T0

SPECS = {"iot:*:vibration": "anomaly.GaussianScorer(window_size=None, grace_period=100)", "iot:*:temperature": "opsmon"}


def _feed(scoring: Scoring, state: EntityState, n: int, start: int = 0, spike: int | None = None) -> list:
    rng, alerts = random.Random(start), []
    for i in range(start, start + n):
        out = Output()
        values = {"vibration": rng.gauss(2.0, 0.1), "temperature": rng.gauss(4.0, 0.1)}
        if i == spike:
            values["vibration"] = 9.0
        scoring.on_value("s1/m1", state, T0 + 60.0 * i, values, out)
        state.last_ts = T0 + 60.0 * i
        alerts += out.alerts
    return alerts


def test_each_metric_gets_its_configured_model_and_a_river_model_alerts_on_opsmons_scale() -> None:
    cfg = ScoringConfig(warmup=100, models=ModelSpecs.parse(SPECS))
    scoring, state = Scoring("iot", cfg), EntityState(partition=0)
    noise = [a for a in _feed(scoring, state, 600) if a.status == "firing"]
    # calibrated at one in a hundred: on noise an alert is rare (and opsmon's own detector stays quiet)
    assert len(noise) <= 3 and all(a.metric == "vibration" for a in noise)
    series = state.models["series"]
    assert isinstance(series["vibration"].detector.anomaly_detector, CalibratedDetector)
    assert isinstance(series["temperature"].detector.anomaly_detector, SeriesDetector)
    fired = [a for a in _feed(scoring, state, 10, start=600, spike=605) if a.status == "firing"]
    assert [(a.metric, a.kind) for a in fired] == [("vibration", "model")]
    assert fired[0].score >= 0.6 and "rare score from its configured model" in fired[0].explanation
    restored = pickle.loads(pickle.dumps(state))  # Faust tables pickle the state
    assert restored.models["series"]["vibration"].detector.n == series["vibration"].detector.n


def test_a_state_from_before_the_decision_had_its_home_is_wrapped_and_relearns() -> None:
    state = EntityState(partition=0)
    scoring = Scoring("iot", ScoringConfig())
    _feed(scoring, state, 50)
    old = state.models["series"]["temperature"].detector.anomaly_detector
    blob = old.__getstate__()
    blob["state_version"] -= 1  # what the previous release pickled: a bare detector in the series' model
    restored = SeriesDetector.__new__(SeriesDetector)
    restored.__setstate__(blob)
    state.models["series"]["temperature"].detector = restored
    _feed(scoring, state, 5, start=50)
    det = state.models["series"]["temperature"].detector
    assert isinstance(det, AlertFilter) and det.anomaly_detector is restored and det.n == 5


def test_a_changed_configuration_rebuilds_the_series_model() -> None:
    state = EntityState(partition=0)
    _feed(Scoring("iot", ScoringConfig(models=ModelSpecs.parse(SPECS))), state, 50)
    _feed(Scoring("iot", ScoringConfig()), state, 5, start=50)  # back to opsmon's own everywhere
    assert isinstance(state.models["series"]["vibration"].detector.anomaly_detector, SeriesDetector)
    _feed(Scoring("iot", ScoringConfig(models=ModelSpecs.parse({"iot:*:*": "gaussian"}))), state, 5, start=55)
    det = state.models["series"]["temperature"].detector
    assert isinstance(det.anomaly_detector, CalibratedDetector) and det.spec == "gaussian" and det.n == 5  # afresh
