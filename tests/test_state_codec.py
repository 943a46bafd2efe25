"""The state tables' codec: what a device has learned in a day, compact in its changelog and restored exactly."""

from __future__ import annotations

import copyreg
import math
import pickle
import random

from faust.serializers import codecs

from models.silence import SilenceWatch
from streams.pipeline import EntityState, Output
from streams.scoring import FROZEN, Scoring, ScoringConfig
from streams.state_codec import STATE_CODEC, Frozen, freeze, register
from tests.events import T0

KIB = 1024


def _day(scoring: Scoring, state: EntityState, start: int, n: int, rng: random.Random) -> list[str]:
    """``n`` five-minute readings of a fridge-like device; the lines written (scores and explanations)."""
    lines: list[str] = []
    for i in range(start, start + n):
        t = T0 + 300.0 * i
        day = math.sin(2 * math.pi * i / 288)
        out = Output()
        scoring.on_value("s1/d1", state, t, {"temperature": 4 + day + rng.gauss(0, 0.2),
                                                "humidity": 60 + 5 * day + rng.gauss(0, 1),
                                                "power_w": 120 + 30 * day + rng.gauss(0, 5)}, out)
        state.last_ts = t
        lines += out.lines
    return lines


def test_a_days_state_is_compact_and_restores_to_the_same_scores() -> None:
    register()
    scoring, state = Scoring("iot", ScoringConfig(warmup=60)), EntityState(partition=3)
    _day(scoring, state, 0, 300, random.Random(1))  # a day and an hour: the profile is formed
    blob = codecs.dumps(STATE_CODEC, state)
    series = len(state.models["series"])
    assert series == 3
    # The budget: at most 3 KiB serialised per series once a day's profile is learned; Faust's
    # base64 pickle of the same state is several times that.
    assert len(blob) / series <= 3 * KIB
    assert len(codecs.dumps("pickle", state)) > 3 * len(blob)

    restored = codecs.loads(STATE_CODEC, blob)
    ahead = _day(scoring, state, 300, 100, random.Random(2))
    again = _day(Scoring("iot", ScoringConfig(warmup=60)), restored, 300, 100, random.Random(2))
    assert len(ahead) >= 3 and ahead == again  # the restored state scores exactly as the one that never stopped


def test_a_changelog_written_by_an_older_release_still_restores() -> None:
    register()
    old = codecs.dumps("pickle", EntityState(partition=1, offset=41))  # Faust's base64 pickle
    assert codecs.loads(STATE_CODEC, old) == EntityState(partition=1, offset=41)


class _AsPickledBefore:
    """Pickles as ``cls`` with an instance dict did: what changelogs from before the slots hold."""

    def __init__(self, cls: type, fields: dict) -> None:
        self.cls, self.fields = cls, fields

    def __reduce__(self) -> tuple:
        return copyreg._reconstructor, (self.cls, object, None), self.fields  # (BUILD with the dict, as then)


def test_state_pickled_before_the_slots_restores() -> None:
    watch = SilenceWatch(factor=4.0)
    for t in range(0, 3000, 300):
        watch.observe(float(t))
    old_watch = _AsPickledBefore(SilenceWatch, {name: getattr(watch, name) for name in SilenceWatch.__slots__})
    # txns and windows absent: fields an older release did not have come back at their defaults
    old = pickle.dumps(_AsPickledBefore(EntityState, {"partition": 2, "offset": 7, "last_ts": 1.5,
                                                      "models": {"silence": old_watch}}))
    state = pickle.loads(old)
    assert (state.partition, state.offset, state.last_ts, state.windows, state.txns) == (2, 7, 1.5, None, None)
    restored = state.models["silence"]
    assert (restored.factor, restored.gaps, restored.cadence, restored.last) == (4.0, 9, watch.cadence, 2700.0)
    again = pickle.loads(pickle.dumps(state))  # and pickled again in this release's form
    assert (again.offset, again.txns, again.models["silence"].cadence) == (7, None, watch.cadence)
    assert not hasattr(state, "__dict__") and not hasattr(restored, "__dict__")


def test_an_idle_device_waits_frozen_and_scores_as_if_it_never_was() -> None:
    rng_a, rng_b = random.Random(5), random.Random(5)
    hot = Scoring("iot", ScoringConfig(warmup=60, freeze_idle_s=0.0))
    cold = Scoring("iot", ScoringConfig(warmup=60, freeze_idle_s=60.0))
    a, b = EntityState(partition=0), EntityState(partition=0)
    lines_a: list[str] = []
    lines_b: list[str] = []
    frozen_seen = 0
    for day_part in range(0, 400, 20):  # readings every 5 min, a tick 2 min after each batch's last
        lines_a += _day(hot, a, day_part, 20, rng_a)
        lines_b += _day(cold, b, day_part, 20, rng_b)
        for scoring, state in ((hot, a), (cold, b)):
            out = Output()
            scoring.on_tick("s1/d1", state, state.last_ts + 120.0, out)
        frozen_seen += FROZEN in b.models
        assert FROZEN not in a.models and "temperature" in a.models["series"]
    assert frozen_seen == 20  # every idle spell froze it, and every next reading thawed it
    assert len(lines_a) > 100 and lines_a == lines_b
    # a device that usually waits longer than the idle time between readings is frozen right after one
    _day(cold, b, 400, 1, rng_b)
    assert FROZEN not in b.models
    cold.on_tick("s1/d1", b, b.last_ts + 1.0, Output())
    assert FROZEN in b.models
    # the frozen series take a small part of what their objects do
    frozen = b.models[FROZEN]
    assert "series" not in b.models and len(frozen) < len(pickle.dumps(a.models["series"])) / 3
    # compressed against the typical device's series, they take less than on their own (the changelog's form)
    assert len(frozen) < 0.8 * len(freeze(a.models["series"]))


def test_a_series_keeps_its_line_head_awake_only() -> None:
    """The anomaly-score head a series keeps to write its points is neither frozen nor changelogged."""
    scoring = Scoring("iot", ScoringConfig(warmup=60, freeze_idle_s=60.0))
    state = EntityState(partition=0)
    lines = _day(scoring, state, 0, 100, random.Random(3))
    heads = {m: sm.score_head for m, sm in state.models["series"].items()}
    assert heads["power_w"] == "anomaly_score,entity=s1/d1,metric=power_w,source=iot"
    assert sum(ln.startswith(heads["power_w"] + " ") for ln in lines) > 50
    assert b"anomaly_score" not in pickle.dumps(state)
    scoring.on_tick("s1/d1", state, state.last_ts + 120.0, Output())
    assert not any(sm.score_head for sm in state.models[FROZEN].thaw().values())
    woken = _day(scoring, state, 100, 1, random.Random(4))
    assert state.models["series"]["power_w"].score_head == heads["power_w"]  # made again on waking
    assert any(ln.startswith(heads["power_w"] + " ") for ln in woken)


def test_a_frozen_device_changelogs_in_the_plain_form_and_restores_to_the_same_scores() -> None:
    """The template idle series are compressed against is the process's: a changelog holds what any worker reads."""
    register()
    scoring = Scoring("iot", ScoringConfig(warmup=60, freeze_idle_s=60.0))
    state = EntityState(partition=0)
    _day(scoring, state, 0, 300, random.Random(7))
    scoring.on_tick("s1/d1", state, state.last_ts + 600.0, Output())
    assert isinstance(state.models[FROZEN], Frozen)
    restored = codecs.loads(STATE_CODEC, codecs.dumps(STATE_CODEC, state))
    assert type(restored.models[FROZEN]) is bytes  # freeze()'s form: no template needed to read it
    ahead = _day(scoring, state, 300, 50, random.Random(8))
    again = _day(Scoring("iot", ScoringConfig(warmup=60, freeze_idle_s=60.0)), restored, 300, 50, random.Random(8))
    assert len(ahead) >= 3 and ahead == again
