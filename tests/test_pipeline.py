"""The batch pipeline: exact aggregates, dead letters, idempotent replay, late corrections."""

from __future__ import annotations

import copy
import pickle

from streams.pipeline import Record, SourcePipeline, WindowConfig
from tests.events import T0, iot, pos, raw, web

CFG = WindowConfig(size=60, grace=10, late_retention=600, idle_close=5)
NOW = T0 + 10_000


def records(events: list[dict | bytes], partition: int = 0, first_offset: int = 0) -> list[Record]:
    return [Record(partition, first_offset + i, b"k", e if isinstance(e, bytes) else raw(e))
            for i, e in enumerate(events)]


def window_lines(lines: list[str], measurement: str) -> list[str]:
    return [ln for ln in lines if ln.startswith(measurement + ",")]


def test_iot_readings_become_points_with_event_time_and_bad_ones_dead_letters() -> None:
    p = SourcePipeline("iot", {}, CFG)
    out = p.process(records([iot(T0, temperature=4.5), b"nope", iot(T0 + 1.25, device="d2", humidity=50.0)]), NOW)
    assert out.lines == [f"iot_reading,device=d1,site=s1 temperature=4.5 {int(T0 * 1000)}",
                         f"iot_reading,device=d2,site=s1 humidity=50.0 {int(T0 * 1000) + 1250}"]
    assert [(d.record.offset, d.kind) for d in out.dead] == [(1, "json")]
    assert out.counts["events"] == 2 and out.counts["dead_lettered"] == 1
    assert out.changed == {"s1/d1", "s1/d2"}
    # readings are not windowed: a device keeps no (empty) windows, ~0.9 KB of containers for each of thousands
    p.tick(NOW + 60)
    assert p.states["s1/d1"].windows is None


def test_pos_window_is_written_once_the_watermark_passes_end_plus_grace() -> None:
    p = SourcePipeline("pos", {}, CFG)
    out = p.process(records([pos(T0 + 1, "a", lines=(("A", 2, 1.5),)), pos(T0 + 30, "b", lines=(("B", 1, 4.0),))]),
                    NOW)
    assert window_lines(out.lines, "pos_window") == []
    out = p.process(records([pos(T0 + 69, "c")], first_offset=2), NOW)
    assert window_lines(out.lines, "pos_window") == []  # 69 < 60 + 10 grace
    out = p.process(records([pos(T0 + 71, "d")], first_offset=3), NOW)
    ts = int(T0 * 1000)
    assert window_lines(out.lines, "pos_window") == [
        f"pos_window,store=st1 revenue=7.0,transactions=2.0,items=3.0,avg_basket=3.5,refunds=0.0,"
        f"refund_amount=0.0,voids=0.0 {ts}"]
    assert sorted(window_lines(out.lines, "pos_sku_window")) == [
        f"pos_sku_window,sku=A,store=st1 quantity=2.0,revenue=3.0 {ts}",
        f"pos_sku_window,sku=B,store=st1 quantity=1.0,revenue=4.0 {ts}"]


def test_duplicate_transaction_ids_are_dead_lettered_not_counted() -> None:
    p = SourcePipeline("pos", {}, CFG)
    out = p.process(records([pos(T0, "same"), pos(T0 + 1, "same")]), NOW)
    assert [d.kind for d in out.dead] == ["duplicate"] and "same" in out.dead[0].reason
    out = p.tick(NOW + 100)
    assert "transactions=1.0" in window_lines(out.lines, "pos_window")[0]


def test_replay_after_a_crash_overwrites_instead_of_double_counting() -> None:
    batch1 = records([web(T0 + i, f"s{i % 3}", latency_ms=10.0 * i) for i in range(5)])
    batch2 = records([web(T0 + 5 + i, "s9", "purchase") for i in range(3)] + [web(T0 + 200, "x")], first_offset=5)
    never_stopped = SourcePipeline("web", {}, CFG)
    never_stopped.process(batch1, NOW)
    snapshot = pickle.loads(pickle.dumps(never_stopped.states))  # what the changelog held
    expected = never_stopped.process(batch2, NOW)

    # The worker died after batch 2 was partly processed; Kafka redelivers from the last commit (offset 0).
    restarted = SourcePipeline("web", snapshot, CFG)
    replay = restarted.process(batch1 + batch2, NOW)
    assert replay.counts["replayed"] == 5 and replay.counts["events"] == 4
    assert window_lines(replay.lines, "web_window") == window_lines(expected.lines, "web_window")
    line = window_lines(expected.lines, "web_window")[0]
    assert "events=8.0," in line and "sessions=4.0," in line and "purchases=3.0," in line


def test_late_event_corrects_an_emitted_window_and_too_late_is_dead_lettered() -> None:
    p = SourcePipeline("web", {}, CFG)
    p.process(records([web(T0 + 1, "a"), web(T0 + 100, "b")]), NOW)  # closes the first window
    out = p.process(records([web(T0 + 2, "late")], first_offset=2), NOW)
    assert out.counts["late"] == 1
    corrected = window_lines(out.lines, "web_window")
    assert len(corrected) == 1 and "events=2.0," in corrected[0] and corrected[0].endswith(str(int(T0 * 1000)))
    out = p.process(records([web(T0 + 1000, "c"), web(T0 + 3, "way-too-late")], first_offset=3), NOW)
    assert [d.kind for d in out.dead] == ["late"] and "beyond the 600s correction period" in out.dead[0].reason


def test_idle_partitions_flush_their_open_windows() -> None:
    p = SourcePipeline("pos", {}, CFG)
    p.process(records([pos(T0 + 1, "a")]), now=NOW)
    assert p.tick(NOW + 1).lines == []
    out = p.tick(NOW + 6)
    assert len(window_lines(out.lines, "pos_window")) == 1
    assert p.tick(NOW + 20).lines == []  # nothing new: nothing rewritten


def test_state_is_per_entity_and_survives_pickling() -> None:
    states: dict = {}
    p = SourcePipeline("pos", states, CFG)
    p.process(records([pos(T0, "1", store="x"), pos(T0, "2", store="y")], partition=3), NOW)
    assert set(states) == {"x", "y"} and states["x"].partition == 3 and states["y"].offset == 1
    clone = copy.deepcopy(pickle.loads(pickle.dumps(states)))
    assert clone["x"].windows.windows.keys() == states["x"].windows.windows.keys()
