"""The pure parts of ``opsmon bench``: statistics, targets, the result document, profile categories, stamping."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from bench.latency import Stamper, replayed
from bench.metrics import flat_and_bounded, percentile, percentiles, rate_between, ratio, slope, stage_split
from bench.profile import categorise, top_functions
from bench.proxy import timestamps
from bench.rebalance import Sample, recorded, recovery
from bench.report import SCHEMA, json_safe, rebalance_rows, targets, validate
from bench.stages import records_by_source
from bench.workload import event_time
from streams.schemas import decode

INF = math.inf
DATA = Path(__file__).parent / "data"


def test_percentile_interpolates_like_numpy() -> None:
    xs = [float(x) for x in range(1, 101)]  # 1..100
    assert percentile(xs, 50) == pytest.approx(50.5)
    assert percentile(xs, 99) == pytest.approx(99.01)
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert math.isnan(percentile([], 50))


def test_unacknowledged_events_make_high_percentiles_infinite() -> None:
    lat = [0.1] * 98 + [INF, INF]  # 2% never acknowledged
    p = percentiles(lat)
    assert p["p50"] == pytest.approx(0.1)
    assert p["p95"] == pytest.approx(0.1)
    assert p["p99"] == INF


def test_rates_ratios_and_slopes() -> None:
    assert rate_between((100.0, 5_000), (110.0, 25_000)) == 2_000.0
    assert rate_between((1.0, 0), (1.0, 10)) == 0.0
    assert ratio(2_000.0, 400_000.0) == pytest.approx(0.005)
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
    assert slope([0, 1, 2, 3], [10, 8, 6, 4]) == pytest.approx(-2.0)
    assert slope([1], [1]) == 0.0


def test_stage_split_puts_the_unexplained_time_in_the_rest() -> None:
    rows = stage_split({"decode": 5.0, "scoring": 45.0}, total_us=200.0)
    assert [r["stage"] for r in rows] == ["decode", "scoring", "Faust + aiokafka + asyncio (rest)"]
    assert rows[-1]["us_per_event"] == 150.0
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    # With the worker's CPU time, the rest splits into CPU outside the stages and time off the CPU.
    rows = stage_split({"decode": 5.0, "scoring": 45.0}, total_us=200.0, cpu_us=120.0)
    assert [(r["stage"], r["us_per_event"]) for r in rows][-2:] == [
        ("Faust + aiokafka + asyncio (rest), on CPU", 70.0), ("waiting (not on CPU)", 80.0)]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    # Without the worker's figure, shares are of the measured stages alone and there is no rest row.
    rows = stage_split({"a": 1.0, "b": 3.0}, total_us=None)
    assert [r["share"] for r in rows] == [0.25, 0.75]


def test_soak_verdict_sees_growth_in_memory_and_lag() -> None:
    ts = [float(t) for t in range(0, 200, 10)]
    flat = flat_and_bounded(ts, [300.0] * len(ts), [100] * len(ts), rate=1_000.0)
    assert flat["memory_flat"] and flat["lag_bounded"]
    leaking = flat_and_bounded(ts, [300.0 + 2 * t for t in ts], [100] * len(ts), rate=1_000.0)
    assert not leaking["memory_flat"]
    assert leaking["rss_slope_per_min"] == pytest.approx(120.0)
    falling_behind = flat_and_bounded(ts, [300.0] * len(ts), [int(50 * t) for t in ts], rate=1_000.0)
    assert not falling_behind["lag_bounded"]


def _result(**over: object) -> dict:
    result = {
        "schema": SCHEMA, "run": {"tag": "bench-x", "events": 10}, "preload": {"events": 10},
        "ceiling": {"events_per_s": 400_000.0},
        "pipeline": {"1": {"events_per_s": 2_000.0, "events_per_s_per_worker": 2_000.0, "seconds": 5.0,
                           "cpu_us_per_event": 40.0, "service_cpu_seconds": {"kafka": 0.3}},
                     "2": {"events_per_s": 3_700.0, "events_per_s_per_worker": 1_850.0}},
        "ratios": {"pipeline_to_ceiling": 0.005, "speedup_2_workers": 1.85},
        "latency": {"target_rate": {"rate_target": 10_000.0, "latency_s": {"p50": 9.0, "p95": None, "p99": None}}},
        "stages": None, "profile": None, "memory": {"per_entity_bytes": 1_500.0}, "soak": None, "targets": [],
        "rebalance": {"rate": 5_000.0, "checkpoint_seconds": 5.0, "timeout_s": 60.0, **{
            change: {"rebalanced_s": 0.0 if change == "steady" else 6.0, "caught_up_s": 5.5, "unfetched_max_s": 0.0,
                     "paused_s": 0.5} for change in ("steady", "join", "leave")}},
    }
    result.update(over)
    return result


def test_targets_mark_met_missed_and_not_measured() -> None:
    rows = {r["name"]: r for r in targets(_result())}
    assert rows["events/s, 1 worker, all stages"]["met"] is False
    assert rows["pipeline / ceiling"]["met"] is False  # 0.005 < 0.10
    assert rows["2 workers / 1 worker"]["value"] == 1.85 and rows["2 workers / 1 worker"]["met"] is None  # no target
    assert rows["memory per IoT device (a full day)"]["met"] is True  # 1,500 bytes <= 8 KiB
    assert rows["CPU per event in the worker"]["met"] is True  # 40 µs <= 50 µs
    assert rows["Kafka broker CPU per event"]["value"] == pytest.approx(30.0)  # 0.3 s over 2,000/s x 5 s
    assert rows["Kafka broker CPU per event"]["met"] is False
    p99 = rows["p99 latency at 10,000/s offered"]
    assert p99["value"] == INF and p99["met"] is False  # not drained counts as missed, not as unknown
    assert rows["p99 latency at half capacity"]["met"] is None
    rows = {r["name"]: r for r in targets(_result(ratios={}, latency={}))}
    assert rows["2 workers / 1 worker"]["met"] is None
    assert rows["p99 latency at 10,000/s offered"]["met"] is None


def test_the_result_document_is_strict_json_with_every_part() -> None:
    result = _result()
    result["targets"] = targets(result)
    assert validate(result) != []  # the infinite p99 in targets is not strict JSON ...
    safe = json_safe(result)
    assert validate(safe) == []  # ... and json_safe makes it null
    assert json.loads(json.dumps(safe))["targets"][4]["value"] is None
    broken = json_safe(result)
    del broken["ceiling"]
    broken["schema"] = "other/9"
    problems = validate(broken)
    assert "missing ceiling" in problems
    assert any("schema" in p for p in problems)
    broken = json_safe(result)
    broken["targets"][0]["met"] = "yes"
    assert any("met is 'yes'" in p for p in validate(broken))


PARTS = ("iot[0]", "iot[1]", "web[0]", "web[1]")


def _group(t: float, *held: tuple[str, ...], consumed: int, committed: int | dict[str, int], ends: int) -> Sample:
    offsets = committed if isinstance(committed, dict) else dict.fromkeys(PARTS, committed)
    return Sample(t, tuple(frozenset(h) for h in held), consumed, offsets, dict.fromkeys(PARTS, ends))


def _timeline(until: float, step: float = 0.25, **at: object) -> list[Sample]:
    """Samples every ``step`` from -2 s to ``until`` made by ``at["group"](t)``."""
    group = at["group"]
    assert callable(group)
    return [group(-2.0 + i * step) for i in range(int((until + 2.0) / step) + 1)]


def test_rebalance_figures_of_a_worker_joining() -> None:
    def group(t: float) -> Sample:
        # Worker 0 holds everything until the rebalance at 3 s revokes it all; its last checkpoint commits 1,000,
        # the partitions' ends at the change. From 4 s each worker holds two. Nothing is taken in from 3 s to
        # 4.5 s. The ends grow by 10 a second: 1,040 when the group is whole again at 4 s, which the checkpoint
        # at 8 s (1,030) does not reach and the one at 9 s (1,050) does: caught up at 9 s, not at 4 s.
        if t < 3.0:
            held: tuple[tuple[str, ...], ...] = (PARTS, ())
        elif t < 4.0:
            held = ((), ())
        else:
            held = (PARTS[:2], PARTS[2:])
        consumed = int(100 * min(t, 3.0) + 100 * max(0.0, t - 4.5))
        committed = 1_050 if t >= 9.0 else 1_030 if t >= 8.0 else 1_000 if t >= 3.0 else 900
        return _group(t, *held, consumed=consumed, committed=committed, ends=int(1_000 + 10 * t))

    figures = recovery(_timeline(15.0, group=group), 0.0, members=2)
    assert figures == {"rebalanced_s": 4.0, "caught_up_s": 9.0, "unfetched_max_s": 1.0, "paused_s": 1.75}
    # Measured from later, the same catch-up.
    assert recovery(_timeline(15.0, group=group), 2.0, members=2)["caught_up_s"] == 7.0


def test_a_partition_left_unfetched_after_a_join_delays_the_catch_up_and_is_named_by_its_stretch() -> None:
    def group(t: float) -> Sample:
        # faust#629: after the rebalance at 1 s web[1] is fetched by nobody until 20 s.
        if t < 1.0:
            held: tuple[tuple[str, ...], ...] = (PARTS, ())
        elif t < 20.0:
            held = (PARTS[:2], PARTS[2:3])
        else:
            held = (PARTS[:2], PARTS[2:])
        committed = {p: 1_000 if t >= 5.0 else 950 for p in PARTS}
        committed["web[1]"] = 1_000 if t >= 25.0 else 950
        return _group(t, *held, consumed=int(100 * t) + 200, committed=committed, ends=1_000)

    figures = recovery(_timeline(30.0, group=group), 0.0, members=2)
    assert figures["rebalanced_s"] == 20.0 and figures["caught_up_s"] == 25.0
    assert figures["unfetched_max_s"] == 19.0
    assert figures["paused_s"] == 0.25  # the other partitions kept the events coming


def test_rebalance_figures_of_a_worker_leaving_and_of_a_change_that_never_recovers() -> None:
    def leave(t: float) -> Sample:
        held = (PARTS[:2], PARTS[2:]) if t < 2.0 else (PARTS, ())  # worker 1's two move to worker 0 at 2 s
        return _group(t, *held, consumed=int(50 * t) + 200, committed=500 if t >= 6.0 else 400, ends=500)

    assert recovery(_timeline(10.0, group=leave), 0.0, members=1) == {
        "rebalanced_s": 2.0, "caught_up_s": 6.0, "unfetched_max_s": 0.0, "paused_s": 0.25}

    def stuck(t: float) -> Sample:
        held = (PARTS[:2], PARTS[2:]) if t < 1.0 else ((), ())  # revoked from both, then nothing
        return _group(t, *held, consumed=int(50 * min(t, 1.0)) + 200, committed=400, ends=500)

    figures = recovery(_timeline(10.0, group=stuck), 0.0, members=1)
    assert figures["rebalanced_s"] is None and figures["caught_up_s"] is None
    assert figures["unfetched_max_s"] == 9.0 and figures["paused_s"] == 9.0  # to the last sample
    # Before the samples reach the change, nothing is known yet.
    assert recovery(_timeline(-1.0, group=stuck), 0.0, members=1)["caught_up_s"] is None


def test_a_worker_that_does_not_answer_is_neither_fetching_nor_not() -> None:
    def group(t: float) -> Sample:
        # The rebalance after a join settles at 2 s, but worker 0's event loop is blocked from 1 s to 4 s
        # (no answer to /opsmon/stats): the group is known to be whole only at 4 s, and no partition is known
        # to have gone unfetched.
        sample = _group(t, *((PARTS, ()) if t < 1.0 else (PARTS[:2], PARTS[2:])), consumed=int(100 * t) + 100,
                        committed=500 if t >= 5.0 else 400, ends=450)
        if 1.0 <= t < 4.0:
            sample = Sample(sample.t, (None, sample.held[1]), sample.consumed, sample.committed, sample.ends)
        return sample

    assert recovery(_timeline(8.0, group=group), 0.0, members=2) == {
        "rebalanced_s": 4.0, "caught_up_s": 5.0, "unfetched_max_s": 0.0, "paused_s": 0.25}


def test_steady_group_catches_up_at_the_next_checkpoint() -> None:
    def steady(t: float) -> Sample:
        checkpoint = 5.0 * (t // 5.0)  # offsets move at checkpoints, every 5 s, to the ends then
        return _group(t, PARTS, (), consumed=int(100 * t) + 300, committed=int(60 * checkpoint) + 240,
                      ends=int(60 * t) + 240)

    figures = recovery(_timeline(12.0, group=steady), 1.0, members=1)
    assert figures == {"rebalanced_s": 0.0, "caught_up_s": 4.0, "unfetched_max_s": 0.0, "paused_s": 0.25}


def test_rebalance_figures_read_again_from_a_recorded_quick_run() -> None:
    with gzip.open(DATA / "rebalance_quick.json.gz") as f:
        doc = json.load(f)
    figures = recorded(doc)
    for change, printed in doc["figures"].items():
        assert figures[change] == pytest.approx(printed, abs=0.011), change  # times recorded to the ms
    join, leave = figures["join"], figures["leave"]
    # What the run saw: a join and a leave each leave partitions unfetched for 18-24 s (the moved tables'
    # state restored from the changelogs) and take 30 s to all fetched, 39-41 s to caught up, against 12 s
    # for a moment without a change.
    assert 18 < join["unfetched_max_s"] < 19 and 23 < leave["unfetched_max_s"] < 24
    assert join["rebalanced_s"] < join["caught_up_s"] and leave["rebalanced_s"] < leave["caught_up_s"]
    assert figures["steady"]["unfetched_max_s"] == 0.0 and figures["steady"]["caught_up_s"] < join["caught_up_s"]


def test_the_rebalance_part_of_the_result_document() -> None:
    result = _result()
    result["targets"] = targets(result)
    result = json_safe(result)
    assert validate(result) == []
    rows = {r["name"]: r for r in result["targets"]}
    assert rows["rebalance: a worker joins, caught up"]["value"] == 5.5
    assert rows["rebalance: a worker leaves, caught up"]["met"] is None  # reported, no target
    assert [label for _, label, _ in rebalance_rows(result["rebalance"])][1:] == [
        "no change (the floor: a checkpoint)", "a 2nd worker joins (spawned; ready in 0.0 s)",
        "the 2nd worker leaves (SIGTERM)"]
    result["rebalance"]["join"]["caught_up_s"] = None  # not within the timeout: valid, and said so
    assert validate(result) == []
    assert "not within the timeout" in rebalance_rows(result["rebalance"])[2][2]
    assert {r["name"]: r for r in targets(result)}["rebalance: a worker joins, caught up"]["value"] == INF
    result["rebalance"]["leave"]["paused_s"] = "slow"
    del result["rebalance"]["steady"]
    assert validate(result) == ["rebalance.steady is missing", "rebalance.leave.paused_s is not a number of seconds"]
    assert validate({**result, "rebalance": None}) == []  # skipped (--skip-rebalance)
    # A worker that died in a change ended the phase: the changes before it, and the error.
    died = {"rate": 5_000.0, "steady": result["rebalance"]["join"], "error": "worker exited with 1:\nlog tail"}
    assert validate({**result, "rebalance": died}) == []
    assert rebalance_rows(died)[-1] == ("", "[red]a worker died[/]: worker exited with 1:", "phase ended")


def test_profile_categories_follow_the_whole_stack() -> None:
    root = "main (opsmon/__main__.py:6);run (mode/worker.py:264)"
    lines = [
        # A detector pickled for a changelog is changelog time, although its frame is in models/.
        f"{root};deliver (streams/app.py:1);Collection.send_changelog (faust/tables/base.py:279);"
        "SeriesDetector.__getstate__ (models/anomaly.py:305) 6",
        # Inside the pipeline the innermost opsmon module decides: line() called by scoring is line protocol.
        f"{root};SourcePipeline.process (streams/pipeline.py:144);_judge (streams/scoring.py:240);"
        "line (sinks/lineproto.py:34) 2",
        f"{root};SourcePipeline.process (streams/pipeline.py:144);decode (streams/schemas.py:210) 1",
        f"{root};BaseEventLoop._run_once (asyncio/base_events.py:1884);EpollSelector.select (selectors.py:468) 1",
        # The checkpoint's snapshot serialises through Faust's codec registry: still changelog time, not Faust's.
        f"{root};_checkpoint (streams/feed.py:270);snapshot (streams/app.py:268);dumps (faust/serializers/codecs.py:1);"
        "ZstdPickle._dumps (streams/state_codec.py:44) 10",
        # An idle entity's series frozen by scoring go through the same module, but are scoring's time.
        f"{root};SourcePipeline.process (streams/pipeline.py:144);_freeze (streams/scoring.py:300);"
        "SeriesFreezer.freeze (streams/state_codec.py:133) 4",
    ]
    shares = {r["category"]: r["share"] for r in categorise(lines)}
    assert shares == {"changelog: serialise (pickle)": 0.6667, "line protocol": 0.0833, "decode + validate": 0.0417,
                      "event loop (epoll wait)": 0.0417, "scoring (models)": 0.1667}
    top = top_functions(lines, n=1)[0]
    assert top["function"].startswith("ZstdPickle._dumps") and top["self"] == 0.4167


def test_stamped_events_decode_with_their_send_time() -> None:
    value = (b'{"v":1,"time":"2026-11-03T10:00:00.001Z","site":"s","device":"d",'
             b'"measurements":{"temperature":4.5}}')
    t = 1_795_000_000.123
    stamped = Stamper().stamp(value, t)
    ev = decode("iot", stamped, now=t + 1)
    assert ev.ts == pytest.approx(t, abs=0.001)
    assert event_time(stamped) == pytest.approx(t, abs=0.001)
    with pytest.raises(ValueError):
        Stamper().stamp(b'{"v":1,"site":"s"}', t)


def test_replayed_traffic_gets_unique_transaction_ids_per_cycle() -> None:
    events = [("pos", b"store-1", b'{"txn_id":"t1","store":"store-1"}'), ("iot", b"s/d", b'{"x":1}')]
    out = replayed(events, 5)
    assert [v for src, _, v in out if src == "pos"] == [
        b'{"txn_id":"t1","store":"store-1"}', b'{"txn_id":"c1-t1","store":"store-1"}',
        b'{"txn_id":"c2-t1","store":"store-1"}']
    assert len(out) == 5


def test_proxy_reads_reading_timestamps_from_gzip_and_plain_bodies() -> None:
    body = b"iot_reading,device=d,site=s t=1.5 1795000000123\nanomaly_score,entity=s/d score=0.1 1795000000123\n" \
           b"iot_reading,device=e,site=s t=2.5 1795000000456"
    assert timestamps(body) == [1795000000123, 1795000000456]
    assert timestamps(gzip.compress(body)) == [1795000000123, 1795000000456]
    assert timestamps(b"pos_window,store=a revenue=1 5") == []


def test_records_keep_one_partition_per_entity_and_consecutive_offsets() -> None:
    events = [("iot", f"s/d{i % 7}".encode(), b"{}") for i in range(100)] + [("pos", b"store-1", b"{}")] * 3
    recs = records_by_source(events, partitions=4)
    by_key: dict[bytes, set[int]] = {}
    for r in recs["iot"]:
        by_key.setdefault(r.key or b"", set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    for part in range(4):
        offsets = [r.offset for r in recs["iot"] if r.partition == part]
        assert offsets == list(range(len(offsets)))
    assert [r.offset for r in recs["pos"]] == [0, 1, 2]


def test_the_no_state_pickle_what_if_empties_state_values_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.serializers import codecs

    from bench import whatif
    from streams.state_codec import STATE_CODEC, register

    register()
    monkeypatch.setattr(codecs, "dumps", codecs.dumps)  # restored after the test: the patch replaces it
    whatif._APPLY["no-state-pickle"]()
    assert codecs.dumps(STATE_CODEC, {"series": [1.0] * 100}) == b""
    assert codecs.dumps("json", {"a": 1}) == b'{"a":1}'
    assert sorted(whatif._APPLY) == sorted(whatif.PATCHES)  # every patch has its description
