"""Any River anomaly detector on opsmon's scale: a calibrated score per series, and the policy that decides.

``CalibratedDetector`` wraps a River anomaly detector (``anomaly.HalfSpaceTrees`` behind a scaler, ``LODA``,
``GaussianScorer``, ...). Each model scores on its own scale (a tree mass, a density, a z-score), so its raw score
is turned into opsmon's calibrated rarity: the tail probability of the raw score against the empirical tail of this
series' past raw scores (``models.surprise``: how often raw scores at least as high have *started* lately), shown
as ``L / (L + FLAG_DECADES)`` with ``L = -log10 p``, exactly as ``SeriesDetector`` shows its own. 0.5 means one in a
hundred whichever model scored, so thresholds, severities, explanations and boards keep their meaning.

It has ``SeriesDetector``'s signature (River's supervised style: the value is ``y``, its time ``x["t"]``). An
unsupervised River model sees the value as the one feature ``{"value": y}``; a supervised one
(``GaussianScorer``) gets it as ``y``.

``models.alert_filter.AlertFilter`` decides on its scores as on ``SeriesDetector``'s (threshold, events, escalation).

>>> import random
>>> from river import anomaly
>>> from models.alert_filter import AlertFilter
>>> rng = random.Random(1)
>>> det = AlertFilter(CalibratedDetector(anomaly.StandardAbsoluteDeviation()))
>>> flags = [det.process_one(rng.gauss(10, 1), 60.0 * i).is_anomaly for i in range(3000)]
>>> sum(flags) < 30  # on noise, flags open at most about once in a hundred values (p = 1/100)
True
>>> v = det.process_one(30.0, 60.0 * 3000)
>>> v.is_anomaly, v.score > 0.6
(True, True)
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Iterator
from typing import Any

from river import base

from models.anomaly import FLAG_DECADES
from models.river_state import dump_with_model, load_model
from models.surprise import SurpriseCalibrator

_log = logging.getLogger(__name__)

# Bump when the meaning or layout of the pickled state changes: an older state relearns (with a warning).
STATE_VERSION = 1
REASON = "model"  # the reason of a flag: the configured model's score is rare on this series
_LEVEL_ALPHA = 0.02  # the recent level shown as "expected" (an EWMA of the values)
# Detectors whose raw score is bounded by 1 and crowds towards it (a tree's mass, a Gaussian's two-sided tail): their
# tail is measured as -log10(1 - raw), so 0.999 and 0.99999 are two decades apart rather than indistinguishable.
BOUNDED = frozenset({"HalfSpaceTrees", "GaussianScorer"})
_CAP = 12.0  # decades of -log10(1 - raw) at most (a raw score of exactly 1)


def _default_model() -> Any:
    from river import anomaly, preprocessing

    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)


class CalibratedDetector(base.SupervisedAnomalyDetector):
    """A River anomaly detector whose raw score is calibrated online into opsmon's rarity (see the module).

    Parameters
    ----------
    model
        The River anomaly detector (or pipeline ending in one); default: a ``MinMaxScaler`` then ``HalfSpaceTrees``.
    grace
        Values learned before anything is scored: for the first quarter the raw model settles (its scores are not
        counted), for the rest the calibrator learns the tail of its raw scores.
    horizon, tail_q, tail_rate
        The calibrator's memory in values, the quantile above which the raw scores' tail is modelled, and the
        step of its tracking (``models.surprise.SurpriseCalibrator``).
    side
        ``+1``: only values above the recent level can be anomalies; ``-1``: only below; ``0``: both.
    spec
        The expression the model was built from (``models.river_spec``): a state from another river version is
        rebuilt from it rather than unpickled.
    """

    def __init__(self, model: Any = None, grace: int = 200, horizon: float = 2000.0, tail_q: float = 0.9,
                 tail_rate: float = 0.005, side: int = 0, spec: str = "") -> None:
        if side not in (-1, 0, 1):
            raise ValueError("side must be -1, 0 or 1")
        self.model = model if model is not None else _default_model()
        self.grace = grace
        self.horizon = horizon
        self.tail_q = tail_q
        self.tail_rate = tail_rate
        self.side = side
        self.spec = spec
        last = self.model
        steps = getattr(last, "steps", None)
        if isinstance(steps, dict) and steps:
            last = list(steps.values())[-1]
        self._supervised_model = isinstance(last, base.SupervisedAnomalyDetector)
        self._bounded = type(last).__name__ in BOUNDED
        self.cal = SurpriseCalibrator(1, tail_q, tail_rate, horizon)
        self.n = 0  # values learned
        self.low = math.inf  # the lowest raw score seen: raw scores are measured from it (a surprise is >= 0)
        self.level = math.nan  # recent level of the values (what the boards show as expected)

    @property
    def warmed_up(self) -> bool:
        """True once scores are calibrated."""
        return self.n >= self.grace

    def _raw(self, y: float) -> float:
        """The model's raw score of ``y``, on a scale whose tail the calibrator can resolve (see BOUNDED)."""
        raw = float(self.model.score_one({}, y) if self._supervised_model else self.model.score_one({"value": y}))
        if self._bounded:
            return -math.log10(1.0 - raw) if raw < 1.0 - 10.0 ** -_CAP else _CAP
        return raw

    def _calibrated(self, y: float, raw: float) -> float:
        if self.n < self.grace or not math.isfinite(raw):
            return 0.0
        if self.side and self.side * (y - self.level) <= 0.0:
            return 0.0  # a departure the harmless way
        z = raw - self.low
        lp = self.cal.log10ps([z if z > 0.0 else 0.0])[0]
        # at or below the usual tail_q quantile the calibrator says only "p >= 1 - tail_q": nothing to report
        return -lp / (FLAG_DECADES - lp) if lp < self.cal.lq else 0.0

    def _learn(self, y: float, raw: float) -> None:
        if math.isfinite(raw):
            if raw < self.low:
                self.low = raw
            settled = self.grace // 4
            if self.n == settled:
                self.cal.restart()  # the raw scores of a model still settling do not describe its tail
            z = raw - self.low
            self.cal.learn([z if z > 0.0 else 0.0], count=self.n >= settled)
        if self._supervised_model:
            self.model.learn_one({}, y)
        else:
            self.model.learn_one({"value": y})
        self.level = y if self.n == 0 else self.level + _LEVEL_ALPHA * (y - self.level)
        self.n += 1

    def score_one(self, x: dict, y: float) -> float:
        """Calibrated score in [0, 1] of the value ``y`` (0.5: one in a hundred), without learning it."""
        y = float(y)
        if not math.isfinite(y) or self.n < self.grace:
            return 0.0
        return self._calibrated(y, self._raw(y))

    def learn_one(self, x: dict, y: float) -> None:
        """Update the model and the calibration with the value ``y``."""
        y = float(y)
        if math.isfinite(y):
            self._learn(y, self._raw(y))

    def score_value(self, y: float, t: float | None = None, pattern_t: float | None = None) -> float:
        """``score_one`` without the dict (a late window re-scored)."""
        return self.score_one({}, y)

    def learn_value(self, y: float, t: float | None = None, pattern_t: float | None = None) -> None:
        """``learn_one`` without the dict."""
        self.learn_one({}, y)

    # ------------------------------------------------------------------ what the decision (AlertFilter) calls
    anchor = False  # every value is judged (the model has no level to restart)
    calendar = None  # no calendar of its own: the stream's ``is_open`` says when a series is shut
    settled = False  # no daily recurrences: a River model has no time-of-day profile
    recurrence_period = None
    rarity_unit = "values"

    def assess(self, y: float, t: float | None, pattern_t: float | None = None) -> tuple:
        """(score, reason, raw score, expected) of ``y``, with one call of the River model; ``absorb`` learns it."""
        raw = self._raw(y)
        score = self._calibrated(y, raw)
        return score, REASON, raw, self.level

    def absorb(self, y: float, t: float | None, assessed: tuple, threshold: float) -> tuple[float, float, float]:
        """Learn ``y`` as ``assess`` judged it; (expected, lower, upper): the recent level, no band (NaN)."""
        self._learn(y, assessed[2])
        return assessed[3], math.nan, math.nan

    def open_event(self) -> None:
        """Nothing to record: a River model keeps no history of events."""

    def close_event(self, confirmed: bool) -> None:
        """Nothing to close."""

    def unlearn_event(self) -> None:
        """No event's record is kept: a confirmation changes nothing (None)."""
        return None

    def __getstate__(self) -> dict[str, Any]:
        return dump_with_model(self.__dict__, "model", STATE_VERSION)

    def __setstate__(self, state: dict[str, Any]) -> None:
        model, versions = load_model(state, "model", STATE_VERSION, "River model")
        if model is None:
            fresh = CalibratedDetector(_rebuild(state), **{k: state[k] for k in
                                                           ("grace", "horizon", "tail_q", "tail_rate", "side", "spec")
                                                           if k in state})
            self.__dict__.update(fresh.__dict__)
            self.relearned_from = versions
            return
        state["model"] = model
        self.__dict__.update(state)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """A scaled HalfSpaceTrees (the default) and a GaussianScorer (supervised: the value as ``y``)."""
        from river import anomaly

        yield {}
        yield {"model": anomaly.GaussianScorer(), "grace": 20}


def _rebuild(state: dict[str, Any]) -> Any:
    """A fresh model for a state that cannot be trusted: from its expression, else from its pickle's settings."""
    spec = state.get("spec")
    if spec:
        from models.river_spec import DETECTOR_CLASSES, DETECTOR_PRESETS, parse_expression

        return parse_expression(DETECTOR_PRESETS.get(spec, spec), DETECTOR_CLASSES, "stored model")
    try:
        return pickle.loads(state["model"]).clone()
    except Exception:  # noqa: BLE001 - a model built by hand, unreadable now: the default rather than no worker
        _log.warning("River model without an expression cannot be rebuilt: the default model takes over")
        return _default_model()
