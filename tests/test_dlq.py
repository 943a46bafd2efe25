"""Bad input as properties (decode and the batch pipeline never fail, counts add up, replay changes nothing),
and the pure dead-letter functions behind ``opsmon dlq inspect|replay``."""

from __future__ import annotations

import copy
import pickle
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.calendar import Calendars
from streams.demand import Demand
from streams.dlq import (
    KIND,
    PRODUCER,
    REASON,
    REPLAY_OF,
    REPLAY_ROOT,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    DeadRecord,
    LedgerEntry,
    copy_headers,
    group_by_producer,
    group_by_reason,
    plan_replay,
    preview,
    reason_pattern,
    target_partition,
)
from streams.pipeline import Record, SourcePipeline, WindowConfig
from streams.schemas import SOURCES, InvalidEvent, decode
from streams.scoring import Scoring, ScoringConfig
from tests.badinput import bad_event, mixed_batch, valid_event
from tests.events import T0

NOW = T0 + 3600
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])
MANY = settings(PROPS, max_examples=400)


# ------------------------------------------------------------------------------------------ properties

@MANY
@given(st.sampled_from(SOURCES).flatmap(lambda s: st.tuples(st.just(s), st.one_of(
    bad_event(s, T0, "p"), valid_event(s, T0, "p").map(lambda e: ("valid", None, e))))))
def test_decode_raises_nothing_but_invalid_event(case: tuple) -> None:
    import orjson

    source, (what, _key, value) = case
    raw = orjson.dumps(value) if isinstance(value, dict) else value
    try:
        ev = decode(source, raw, NOW)
    except InvalidEvent as exc:
        assert exc.kind in {"json", "schema", "version", "value", "time", "size"}, (what, exc)
        assert str(exc).startswith(exc.kind + ": ") and "\n" not in str(exc)
    else:
        assert what != "valid" or ev is not None


def _pipelines() -> dict[str, SourcePipeline]:
    """Pipelines as the worker builds them: with the scoring and demand observers."""
    cals = Calendars.parse({})
    out = {}
    for source in SOURCES:
        observers: list = [Scoring(source, ScoringConfig(), cals.is_open, cals.pattern_time)]
        aux: dict = {}
        if source == "pos":
            observers.append(Demand(aux))
        out[source] = SourcePipeline(source, {}, WindowConfig(), observers, aux=aux)
    return out


@PROPS
@given(mixed_batch(T0, "p", max_each=10), st.integers(1, 4))
def test_pipeline_never_fails_counts_add_up_and_replay_changes_nothing(cases: list, partitions: int) -> None:
    pipelines = _pipelines()
    by_source: dict[str, list[Record]] = {s: [] for s in SOURCES}
    for c in cases:
        recs = by_source[c.source]
        # Entities keep their partition, as keyed producers do.
        part = zlib.crc32(c.key) % partitions if c.key is not None else 0
        recs.append(Record(part, sum(r.partition == part for r in recs), c.key, c.value, c.headers))
    for source, records in by_source.items():
        p = pipelines[source]
        out = p.process(records, NOW)
        out.lines += p.tick(NOW + 60).lines
        assert out.counts["events"] + out.counts["dead_lettered"] == len(records)
        assert out.counts["replayed"] == 0
        assert len(out.dead) == out.counts["dead_lettered"]
        assert all(d.kind and d.reason.startswith(d.kind) for d in out.dead)
        before = pickle.dumps((p.states, p.aux))
        first_dead = {(d.record.partition, d.record.offset) for d in out.dead}
        # A crash before the commit: the same records again. Nothing new, nothing counted twice.
        again = p.process(copy.deepcopy(records), NOW)
        assert again.counts["events"] == 0 and not again.lines and not again.alerts
        assert again.counts["replayed"] + again.counts["dead_lettered"] == len(records)
        assert {(d.record.partition, d.record.offset) for d in again.dead} <= first_dead
        assert pickle.dumps((p.states, p.aux)) == before


# ------------------------------------------------------------------------------------------ inspect

def _dead(offset: int, kind: str, reason: str, origin: int, value: bytes = b"x", key: bytes | None = b"k",
          extra: tuple = (), topic: str = "t.dlq") -> DeadRecord:
    headers = ((SOURCE_TOPIC, b"t"), (SOURCE_PARTITION, b"0"), (SOURCE_OFFSET, str(origin).encode()),
               (KIND, kind.encode()), (REASON, reason.encode()), *extra)
    return DeadRecord(topic, 0, offset, key, value, headers)


def test_preview_escapes_what_a_terminal_would_interpret_and_cuts_long_payloads() -> None:
    assert preview(b"\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert preview(b'{"a":"\xff"}') == '{"a":"\\xff"}'
    assert preview("café\r\n\u202e".encode()) == "café\\r\\n\\u202e"
    assert preview(None) == "(null)"
    long = preview(b"x" * 70_000, limit=10)
    assert long == "xxxxxxxxxx… (70000 bytes)"


def test_reason_patterns_group_what_differs_only_in_values() -> None:
    a = reason_pattern("duplicate: transaction a2 was already accepted for store e2e-a")
    b = reason_pattern("duplicate: transaction t17 was already accepted for store store-9")
    assert a == b == "duplicate: transaction # was already accepted for store #"
    assert reason_pattern("schema: Expected `str`, got `int` - at `$.site`") == \
        "schema: Expected `str`, got `int` - at `$.site`"
    assert reason_pattern("size: 70001 bytes exceeds the 65536-byte limit") == "size: # bytes exceeds the # limit"


def test_groups_by_reason_and_by_producer_count_and_sample_the_newest() -> None:
    recs = [_dead(0, "json", "json: JSON is malformed: invalid character (byte 1)", 10, b"{bad"),
            _dead(1, "json", "json: JSON is malformed: invalid character (byte 7)", 11, b"{worse",
                  extra=((PRODUCER, b"gw-1"),)),
            _dead(2, "value", "value: status 999 is not an HTTP status", 12, key=b"shop"),
            _dead(3, "json", "json: Input data was truncated", 13, key=None,
                  extra=((REPLAY_OF, b"t:0:2"),))]
    by_reason = group_by_reason(recs, {"t.dlq": "web"})
    assert [(g.source, g.key, g.count, g.failed_replays) for g in by_reason] == [
        ("web", ("json", "json: JSON is malformed: invalid character (byte #)"), 2, 0),
        ("web", ("json", "json: Input data was truncated"), 1, 1),
        ("web", ("value", "value: status # is not an HTTP status"), 1, 0)]
    assert by_reason[0].sample_payload == "{worse" and by_reason[0].sample_reason.endswith("(byte 7)")
    by_producer = group_by_producer(recs)
    assert {g.key[0]: (g.count, dict(g.kinds)) for g in by_producer} == {
        "k": (1, {"json": 1}), "gw-1": (1, {"json": 1}), "shop": (1, {"value": 1}), "(no key)": (1, {"json": 1})}


# ------------------------------------------------------------------------------------------ replay

def test_plan_replays_each_origin_once_and_skips_what_the_ledger_has_done() -> None:
    recs = [_dead(0, "json", "j", 5), _dead(1, "json", "j", 5),  # one origin dead-lettered twice (a redo)
            _dead(2, "late", "l", 6), _dead(3, "json", "j", 7)]
    ledger = {"t:0:7": LedgerEntry("done", "t", 0, 40), "t:0:5": LedgerEntry("pending", "t", 0, 30)}
    plan = plan_replay(recs, ledger)
    assert [r.offset for r in plan.send] == [0, 2]  # pending counts as not sent (settled before planning)
    assert plan.skipped == {"duplicate in DLQ": 1, "already replayed": 1}
    assert [r.offset for r in plan_replay(recs, ledger, kind="late").send] == [2]


def test_a_copy_that_failed_again_is_replayed_only_with_again() -> None:
    copy_failed = _dead(9, "late", "l", 40, extra=((REPLAY_OF, b"t:0:7"), (REPLAY_ROOT, b"t:0:7")))
    # Without the header too: the ledger knows t:0:40 is the copy of t:0:7.
    bare = _dead(10, "late", "l", 41)
    ledger = {"t:0:7": LedgerEntry("done", "t", 0, 40), "t:0:8": LedgerEntry("done", "t", 0, 41)}
    plan = plan_replay([copy_failed, bare], ledger)
    assert plan.send == [] and plan.skipped == {"failed again (replay with --again)": 2}
    plan = plan_replay([copy_failed, bare], ledger, again=True)
    assert [r.origin for r in plan.send] == ["t:0:40", "t:0:41"]
    again = plan_replay([copy_failed], {**ledger, "t:0:40": LedgerEntry("done", "t", 0, 50)}, again=True)
    assert again.send == [] and again.skipped == {"already replayed": 1}


def test_copy_headers_drop_the_workers_and_name_origin_and_root() -> None:
    first = _dead(0, "json", "j", 5, extra=((PRODUCER, b"gw"),))
    assert copy_headers(first) == [(PRODUCER, b"gw"), (REPLAY_OF, b"t:0:5"), (REPLAY_ROOT, b"t:0:5")]
    second = _dead(1, "json", "j", 40, extra=((PRODUCER, b"gw"), (REPLAY_OF, b"t:0:5"), (REPLAY_ROOT, b"t:0:5")))
    assert copy_headers(second) == [(PRODUCER, b"gw"), (REPLAY_OF, b"t:0:40"), (REPLAY_ROOT, b"t:0:5")]


def test_target_partition_keeps_the_original_partition_or_hashes_the_key() -> None:
    rec = _dead(0, "json", "j", 5)
    assert target_partition(rec, {0, 1, 2}) == 0
    no_origin = DeadRecord("t.dlq", 3, 0, b"store-1", b"x")
    assert target_partition(no_origin, {0, 1}) in {0, 1}
    assert target_partition(no_origin, {0, 1}) == target_partition(no_origin, {1, 0})
    assert no_origin.origin == "t.dlq:3:0"


def test_ledger_entries_round_trip_and_reject_garbage() -> None:
    e = LedgerEntry("done", "t", 2, 17, "t.dlq:2:3", 12.5)
    assert LedgerEntry.decode(e.encode()) == e and e.copy == "t:2:17"
    for bad in (b"{", b"[]", b'{"state":"done"}'):
        try:
            LedgerEntry.decode(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["json", "late"]), st.booleans()), max_size=20),
       st.sets(st.integers(0, 5)))
def test_plan_never_sends_an_origin_twice_or_one_already_done(dead: list, done: set) -> None:
    recs = [_dead(i, k, k, o, extra=((REPLAY_OF, b"t:0:99"),) if failed else ()) for i, (o, k, failed)
            in enumerate(dead)]
    ledger = {f"t:0:{o}": LedgerEntry("done", "t", 0, 1000 + o) for o in done}
    for again in (False, True):
        plan = plan_replay(recs, ledger, again=again)
        origins = [r.origin for r in plan.send]
        assert len(origins) == len(set(origins)) and not set(origins) & set(ledger)
        assert len(plan.send) + sum(plan.skipped.values()) == len(recs)
