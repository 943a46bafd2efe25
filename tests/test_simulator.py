"""The simulator: determinism, rates and mix, valid events, faults in the ground truth and in the data, modes."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from models.limits import Limits, LimitWatch
from opsmon.simulator import (
    FAULT_KINDS,
    FaultError,
    FaultSpec,
    Mix,
    Simulator,
    TruthWriter,
    parse_time,
    read_truth,
    replay,
    run,
)
from streams.schemas import IotReading, PosTransaction, WebEvent, decode
from streams.windows import quantile

MONDAY = parse_time("2026-11-02T00:00:00Z")  # stores open 08:00-20:00 UTC, machines run 06:00-22:00
SUNDAY = parse_time("2026-11-01T00:00:00Z")  # stores closed all day
HOUR = 3600.0

FAULTS = [
    "spike:site-0/fridge-0@temperature:+10h:30s",
    "level_shift:site-0/freezer-1@temperature:+3h:1h",
    "drift:site-1/hvac-2@temperature:+4h:3h",
    "stuck:site-1/fridge-0@humidity:+5h:1h",
    "dropout:site-0/hvac-2:+6h:30m",
    "overheat:site-1/machine-3:+9h:1h",
    "till_silent:store-0-till-2:+10h:2h",
    "refund_burst:store-1-till-1:+11h:20m",
    "card_failure:store-2:+14h:1h",
    "error_burst:shop-0:+12h:15m",
    "latency:shop-0:+15h:30m",
    "checkout_broken:shop-0:+19h:1h",
]


class FakeClock:
    """Wall time that moves only when the code under test sleeps."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 1e-3)


@pytest.fixture(scope="module")
def day() -> tuple[Simulator, list[tuple[str, object]]]:
    """A Monday with one explicit fault of every kind, decoded."""
    sim = Simulator(seed=7, rate=2.0, faults=FAULTS, promotions_per_week=0)
    events = [(src, decode(src, value)) for src, _, value in sim.raw_events(MONDAY, MONDAY + 24 * HOUR)]
    return sim, events


def _window(sim: Simulator, kind: str) -> tuple[float, float]:
    f = next(f for f in sim.truth if f.kind == kind)
    return f.start, f.end


def _readings(events: list, entity: str, metric: str) -> list[tuple[float, float]]:
    return [(e.ts, e.measurements[metric]) for src, e in events
            if src == "iot" and e.entity == entity and metric in e.measurements]


# ---------------------------------------------------------------------------- determinism, validity, rates
def test_same_seed_same_events_other_seed_other_events() -> None:
    a = list(Simulator(seed=1, rate=50).raw_events(MONDAY, MONDAY + 600))
    b = list(Simulator(seed=1, rate=50).raw_events(MONDAY, MONDAY + 600))
    c = list(Simulator(seed=2, rate=50).raw_events(MONDAY, MONDAY + 600))
    assert a == b
    assert a != c


def test_transaction_ids_are_new_in_a_run_started_later_and_the_same_in_a_replay() -> None:
    def txn_ids(start: float) -> list[str]:
        return [decode("pos", v).txn_id for src, _, v in Simulator(seed=1, rate=50).raw_events(start, start + 600)
                if src == "pos"]

    opening = MONDAY + 10 * HOUR
    first, replay, restarted = txn_ids(opening), txn_ids(opening), txn_ids(opening + 601)
    assert first and len(set(first)) == len(first)
    assert replay == first  # same seed, same start: the same traffic, so its ids are rightly duplicates
    assert restarted and not set(restarted) & set(first)  # a demo restarted later sends no duplicate


def test_output_does_not_depend_on_how_the_period_is_cut() -> None:
    whole = list(Simulator(seed=3, rate=30, faults_per_hour=6).raw_events(MONDAY, MONDAY + 1800, step=1800))
    pieces = list(Simulator(seed=3, rate=30, faults_per_hour=6).raw_events(MONDAY, MONDAY + 1800, step=0.37))
    by_source = lambda evs: {s: [e for e in evs if e[0] == s] for s in ("iot", "pos", "web")}  # noqa: E731
    assert by_source(whole) == by_source(pieces)


def test_every_event_decodes_and_sources_are_time_ordered(day: tuple) -> None:
    _, events = day
    assert Counter(src for src, _ in events).keys() == {"iot", "pos", "web"}
    types = {"iot": IotReading, "pos": PosTransaction, "web": WebEvent}
    for _, _, value in Simulator(seed=2, rate=20).raw_events(MONDAY + 10 * HOUR, MONDAY + 10 * HOUR + 60):
        # The benchmark reads event times at this fixed place without parsing the JSON.
        assert value.startswith(b'{"v":1,"time":"') and parse_time(value[15:39].decode()) >= MONDAY
    last: dict[str, float] = {}
    for src, e in events:
        assert isinstance(e, types[src])
        assert e.ts >= last.get(src, 0.0)
        last[src] = e.ts
        assert MONDAY <= e.ts < MONDAY + 24 * HOUR


def test_weekly_mean_rate_and_mix() -> None:
    rate, mix = 0.2, Mix(iot=0.5, pos=0.2, web=0.3)
    counts = Counter(src for src, _, _ in Simulator(seed=5, rate=rate, mix=mix, promotions_per_week=0)
                     .raw_events(MONDAY, MONDAY + 7 * 24 * HOUR))
    week = 7 * 24 * HOUR
    assert counts["iot"] == pytest.approx(rate * mix.iot * week, abs=10)  # steady intervals: exact
    assert counts["pos"] == pytest.approx(rate * mix.pos * week, rel=0.06)
    assert counts["web"] == pytest.approx(rate * mix.web * week, rel=0.06)


def test_iot_has_daily_cycles_and_several_measurements(day: tuple) -> None:
    _, events = day
    kinds = {e.device.split("-")[0]: set(e.measurements) for src, e in events if src == "iot"}
    assert kinds["fridge"] == {"temperature", "humidity", "power_w"}
    assert kinds["machine"] == {"temperature", "vibration", "power_w"}
    assert len(kinds["hvac"]) == 4
    power = _readings(events, "site-0/machine-3", "power_w")
    night = statistics.mean(v for t, v in power if t < MONDAY + 5 * HOUR)
    shift = statistics.mean(v for t, v in power if MONDAY + 7 * HOUR <= t < MONDAY + 8 * HOUR)
    assert shift > 10 * night  # the machine runs on its shift only


def test_pos_has_a_long_tail_and_no_events_while_closed() -> None:
    sim = Simulator(seed=4, rate=0.5, mix=Mix(iot=0, pos=1, web=0), skus=200)
    evs = [decode("pos", v) for _, _, v in sim.raw_events(SUNDAY, SUNDAY + 2 * 24 * HOUR)]
    assert evs
    for e in evs:
        assert e.ts >= SUNDAY + 24 * HOUR  # closed all Sunday
        hour = (e.ts - SUNDAY) % (24 * HOUR) / HOUR
        assert 8.0 <= hour < 20.0
    sold = Counter(line.sku for e in evs for line in e.lines)
    top = [n for _, n in sold.most_common()]
    assert top[0] > 20 * top[len(top) // 2]  # a few articles sell most
    assert len(sold) > 150  # but the tail is long


def test_hours_and_time_zone_are_configurable() -> None:
    # The weekly mean rate all falls into these two hours.
    sim = Simulator(seed=4, rate=0.02, mix=Mix(iot=0, pos=1, web=0), hours="sun 10:00-12:00", tz="Europe/Berlin")
    evs = [decode("pos", v) for _, _, v in sim.raw_events(SUNDAY, SUNDAY + 24 * HOUR)]
    assert evs
    assert all(SUNDAY + 9 * HOUR <= e.ts < SUNDAY + 11 * HOUR for e in evs)  # CET = UTC+1 in November


# ---------------------------------------------------------------------------- faults
def test_every_explicit_fault_is_in_the_ground_truth(day: tuple, tmp_path: Path) -> None:
    sim, _ = day
    assert {f.kind for f in sim.truth} == set(FAULT_KINDS)
    spec = FaultSpec.parse(FAULTS[0])
    spike = next(f for f in sim.truth if f.kind == "spike")
    assert (spike.entity, spike.metrics, spike.start, spike.end - spike.start) == (
        "site-0/fridge-0", ("temperature",), MONDAY + 10 * HOUR, spec.duration)
    silent = next(f for f in sim.truth if f.kind == "till_silent")
    assert (silent.source, silent.entity, silent.target) == ("pos", "store-0", "store-0-till-2")
    for name in ("truth.jsonl", "truth.csv"):
        with TruthWriter(tmp_path / name) as w:
            for f in sim.truth:
                w(f)
        rows = read_truth(tmp_path / name)
        assert [r["kind"] for r in rows] == [f.kind for f in sim.truth]
        assert rows[0].keys() >= {"kind", "source", "entity", "metrics", "start", "end", "start_ts", "end_ts"}
        assert rows[0]["metrics"] == list(sim.truth[0].metrics)


def test_spike_is_far_off_the_normal_range(day: tuple) -> None:
    sim, events = day
    t0, t1 = _window(sim, "spike")
    values = _readings(events, "site-0/fridge-0", "temperature")
    inside = [v for t, v in values if t0 <= t < t1]
    normal = [v for t, v in values if not t0 - 60 <= t < t1 + 60]
    assert inside
    lo, hi = min(normal), max(normal)
    assert all(v > hi + 2 * (hi - lo) or v < lo - 2 * (hi - lo) for v in inside)


def test_level_shift_drift_and_stuck_show_in_the_values(day: tuple) -> None:
    sim, events = day
    t0, t1 = _window(sim, "level_shift")
    values = _readings(events, "site-0/freezer-1", "temperature")
    before = statistics.mean(v for t, v in values if t0 - HOUR <= t < t0)
    during = statistics.mean(v for t, v in values if t0 <= t < t1)
    assert abs(during - before) > 3.0

    t0, t1 = _window(sim, "drift")
    values = _readings(events, "site-1/hvac-2", "temperature")
    start = statistics.mean(v for t, v in values if t0 <= t < t0 + 900)
    late = statistics.mean(v for t, v in values if t1 - 900 <= t < t1)
    assert abs(late - start) > 3.0

    t0, t1 = _window(sim, "stuck")
    values = _readings(events, "site-1/fridge-0", "humidity")
    assert len({v for t, v in values if t0 <= t < t1}) == 1
    assert len({v for t, v in values if t1 <= t < t1 + 600}) > 5


def test_dropout_silences_the_device(day: tuple) -> None:
    sim, events = day
    t0, t1 = _window(sim, "dropout")
    times = [t for t, _ in _readings(events, "site-0/hvac-2", "temperature")]
    assert not [t for t in times if t0 <= t < t1]
    assert [t for t in times if t0 - 300 <= t < t0] and [t for t in times if t1 <= t < t1 + 300]


def test_overheating_machine_heats_shakes_then_fails(day: tuple) -> None:
    sim, events = day
    f = next(f for f in sim.truth if f.kind == "overheat")
    fail = parse_time(str(f.params["failure_at"]))
    temp = _readings(events, f.entity, "temperature")
    vib = _readings(events, f.entity, "vibration")
    power = _readings(events, f.entity, "power_w")
    early = lambda xs: statistics.mean(v for t, v in xs if f.start <= t < f.start + 300)  # noqa: E731
    late = lambda xs: statistics.mean(v for t, v in xs if fail - 300 <= t < fail)  # noqa: E731
    assert late(temp) - early(temp) > 20.0
    assert late(vib) - early(vib) > 3.0
    assert all(v < 50 for t, v in power if fail + 60 <= t < f.end)  # failed: stands still


def test_till_silent_refund_burst_and_card_failure(day: tuple) -> None:
    sim, events = day
    pos = [e for src, e in events if src == "pos"]
    t0, t1 = _window(sim, "till_silent")
    till = [e.ts for e in pos if e.register == "store-0-till-2"]
    assert not [t for t in till if t0 <= t < t1]
    assert [t for t in till if t0 - 2 * HOUR <= t < t0] and [t for t in till if t1 <= t < t1 + 2 * HOUR]
    assert [e for e in pos if e.store == "store-0" and t0 <= e.ts < t1]  # the other tills still sell

    t0, t1 = _window(sim, "refund_burst")
    refunds = lambda a, b: sum(1 for e in pos if e.store == "store-1" and e.kind == "refund" and a <= e.ts < b)  # noqa: E731
    assert refunds(t0, t1) >= 10
    assert refunds(t0, t1) / (t1 - t0) > 5 * refunds(t0 - 2 * HOUR, t0) / (2 * HOUR)

    t0, t1 = _window(sim, "card_failure")
    share = lambda a, b: statistics.mean(  # noqa: E731
        e.payment == "card" for e in pos if e.store == "store-2" and e.kind == "sale" and a <= e.ts < b)
    assert share(t0, t1) < 0.2 < 0.5 < share(t0 - 3 * HOUR, t0)


def test_web_error_burst_latency_and_broken_checkout(day: tuple) -> None:
    sim, events = day
    web = [e for src, e in events if src == "web"]
    error_rate = lambda a, b: statistics.mean(e.type == "error" for e in web if a <= e.ts < b)  # noqa: E731
    t0, t1 = _window(sim, "error_burst")
    assert error_rate(t0, t1) > 0.1 > 0.02 > error_rate(t0 - 2 * HOUR, t0)

    t0, t1 = _window(sim, "latency")
    median = lambda a, b: statistics.median(e.latency_ms for e in web if a <= e.ts < b)  # noqa: E731
    assert median(t0 + (t1 - t0) / 4, t1) > 2.5 * median(t0 - HOUR, t0)

    t0, t1 = _window(sim, "checkout_broken")
    during = [e for e in web if t0 <= e.ts < t1]
    assert not [e for e in during if e.type == "purchase"]
    assert [e for e in during if e.type == "error" and e.path == "/checkout" and e.status == 500]
    assert [e for e in web if e.type == "purchase" and t0 - 2 * HOUR <= e.ts < t0]


def test_random_faults_are_seeded_and_pos_ones_fall_in_opening_hours() -> None:
    def truth(seed: int) -> list[dict]:
        sim = Simulator(seed=seed, rate=0.1, faults_per_hour=2.0)
        for _ in sim.raw_events(SUNDAY, SUNDAY + 3 * 24 * HOUR):
            pass
        return [{k: v for k, v in f.record().items() if k != "id"} for f in sim.truth]

    a = truth(11)
    assert a == truth(11) and a != truth(12)
    assert 100 < len(a) < 200  # ~2 per hour over 72 h
    assert {r["source"] for r in a} == {"iot", "pos", "web"}
    for r in a:
        if r["source"] == "pos" and r["fault"]:
            hour = (r["start_ts"] - SUNDAY) % (24 * HOUR) / HOUR
            assert r["start_ts"] >= SUNDAY + 24 * HOUR and 8.0 <= hour < 20.0
            assert r["end_ts"] <= r["start_ts"] - hour * HOUR + 20 * HOUR + 1e-6  # ends by closing time


def test_bad_fault_specs_are_rejected_with_a_clear_reason() -> None:
    with pytest.raises(FaultError, match="expected kind:target"):
        FaultSpec.parse("spike:site-0/fridge-0")
    with pytest.raises(FaultError, match="unknown fault kind 'meltdown'"):
        Simulator(faults=["meltdown:site-0/fridge-0:+1h:5m"])
    sim = Simulator(faults=["spike:site-9/fridge-0:+1h:5m"])
    with pytest.raises(FaultError, match="unknown target 'site-9/fridge-0'"):
        sim.generate(MONDAY, MONDAY + 1)
    sim = Simulator(faults=["overheat:site-0/fridge-0:+1h:5m"])
    with pytest.raises(FaultError, match="unknown target"):
        sim.generate(MONDAY, MONDAY + 1)
    sim = Simulator(faults=["spike:site-0/fridge-0@vibration:+1h:5m"])
    with pytest.raises(FaultError, match="has no measurement 'vibration'"):
        sim.generate(MONDAY, MONDAY + 1)


# ---------------------------------------------------------------------------- modes
def test_backfill_covers_the_range_and_stops() -> None:
    clock = FakeClock(MONDAY + 30 * 24 * HOUR)
    times: dict[str, list[float]] = defaultdict(list)
    progress: list[float] = []
    stats = replay(Simulator(seed=1, rate=0.5), lambda s, k, v: times[s].append(decode(s, v).ts), "backfill",
                   start=MONDAY, end=MONDAY + 24 * HOUR, clock=clock, sleep=clock.sleep,
                   on_progress=lambda t, _: progress.append(t))
    assert (stats.sim_start, stats.sim_end, stats.interrupted) == (MONDAY, MONDAY + 24 * HOUR, False)
    assert stats.events == sum(len(v) for v in times.values())
    assert min(times["iot"]) < MONDAY + 60 and max(times["iot"]) > MONDAY + 24 * HOUR - 60
    assert all(MONDAY <= t < MONDAY + 24 * HOUR for ts in times.values() for t in ts)
    assert progress == sorted(progress) and progress[-1] == MONDAY + 24 * HOUR
    assert clock.t == MONDAY + 30 * 24 * HOUR  # never slept


def test_realtime_follows_the_wall_clock() -> None:
    clock = FakeClock(MONDAY + 12 * HOUR)
    wall0 = clock.t
    late: list[float] = []

    def send(source: str, key: bytes, value: bytes) -> None:
        ts = decode(source, value).ts
        late.append(clock.t - ts)

    stats = replay(Simulator(seed=1, rate=50), send, "realtime", duration=30, clock=clock, sleep=clock.sleep)
    assert stats.sim_start == wall0 and stats.sim_end == pytest.approx(wall0 + 30, abs=0.2)
    assert stats.events == pytest.approx(50 * 30, rel=0.25)
    assert min(late) >= 0.0 and max(late) < 0.5  # never ahead of the wall clock, never far behind


def test_realtime_replay_equals_backfill_of_the_same_period() -> None:
    clock = FakeClock(MONDAY + 12 * HOUR)
    got: list = []
    replay(Simulator(seed=9, rate=40), lambda *e: got.append(e), "realtime", duration=20, clock=clock,
           sleep=clock.sleep)
    end = MONDAY + 12 * HOUR + 20.0
    want = list(Simulator(seed=9, rate=40).raw_events(MONDAY + 12 * HOUR, end))
    got_before = [e for e in got if decode(e[0], e[2]).ts < end]
    key = lambda evs: sorted(evs)  # noqa: E731  (realtime interleaves sources by tick)
    assert key(got_before) == key(want)


def test_fast_catches_up_then_follows() -> None:
    clock = FakeClock(MONDAY + 12 * HOUR)
    stats = replay(Simulator(seed=1, rate=1), lambda *e: None, "fast", start=MONDAY, duration=5, clock=clock,
                   sleep=clock.sleep)
    assert stats.sim_end == pytest.approx(clock.t, abs=0.2)  # caught up 12 h, then followed for ~5 s
    assert stats.events > 12 * HOUR * 0.5
    with pytest.raises(ValueError, match="future"):
        replay(Simulator(), lambda *e: None, "backfill", start=MONDAY, end=MONDAY + 48 * HOUR,
               clock=FakeClock(MONDAY + HOUR))


def test_legacy_run_sends_typed_events_at_the_rate() -> None:
    clock = FakeClock(MONDAY + 12 * HOUR)
    got: list = []
    n = run(Simulator(seed=1), got.append, rate=100, duration=10, clock=clock, sleep=clock.sleep)
    assert n == len(got) == pytest.approx(1000, rel=0.3)
    assert {type(e) for e in got} == {IotReading, PosTransaction, WebEvent}


def test_the_limits_the_simulated_business_would_set_hold_when_healthy_and_catch_its_faults(day: tuple) -> None:
    # The scenario configures these limits (Simulator.limits) as the business would: they must not alert on the
    # simulated business's ordinary days, or its figures would flatter nothing but the limits.
    sim, events = day
    limits = Limits.parse(sim.limits())
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for src, e in events:
        if src == "iot":
            for metric, x in e.measurements.items():
                series["iot", e.entity, metric].append((e.ts, x))
    minutes: dict[tuple[str, float], list[float]] = defaultdict(list)
    for src, e in events:
        if src == "web":
            minutes[e.site, e.ts // 60 * 60].append(e.latency_ms)
    for (site, t), lat in sorted(minutes.items()):
        series["web", site, "latency_p95"].append((t, quantile(sorted(lat), 0.95)))
    breached: set[tuple[str, str]] = set()
    for (source, entity, metric), values in series.items():
        rules, watch = limits.matching(source, entity, metric), LimitWatch()
        for t, x in values:
            if rules and watch.process_one(rules, x, t) is not None:
                fault = next((f for f in sim.truth if f.entity == entity and f.start <= t <= f.end + 600), None)
                assert fault is not None, f"{source} {entity} {metric} beyond its limit at {t}, with no fault"
                breached.add((fault.kind, entity))
    assert {"overheat", "latency"} <= {kind for kind, _ in breached}
