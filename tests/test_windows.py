"""Window aggregates compute exactly what the boards show."""

from __future__ import annotations

import pickle

from streams.schemas import decode
from streams.windows import LATENCY_RESERVOIR, EntityWindows, PosAggregate, WebAggregate
from tests.events import T0, pos, raw, web


def test_pos_aggregate_sales_refunds_voids_and_skus() -> None:
    agg = PosAggregate()
    for e in (pos(T0, "1", lines=(("A", 2, 1.5), ("B", 1, 4.0))), pos(T0, "2", lines=(("A", 1, 1.5),)),
              pos(T0, "3", kind="refund", lines=(("B", 1, 4.0),)), pos(T0, "4", kind="void")):
        agg.add(decode("pos", raw(e), T0))
    f = agg.fields()
    assert f == {"revenue": 4.5, "transactions": 2.0, "items": 4.0, "avg_basket": 4.25, "refunds": 1.0,
                 "refund_amount": 4.0, "voids": 1.0}
    assert agg.skus == {"A": [3.0, 4.5], "B": [0.0, 0.0]}


def test_web_aggregate_funnel_errors_and_latency_quantiles() -> None:
    agg = WebAggregate()
    events = [web(T0, "a", latency_ms=10), web(T0, "a", "add_to_cart", latency_ms=20),
              web(T0, "a", "purchase", latency_ms=30), web(T0, "b", latency_ms=40),
              web(T0, "b", "error", status=500, latency_ms=1000)]
    for e in events:
        agg.add(decode("web", raw(e), T0))
    f = agg.fields()
    assert f["events"] == 5 and f["sessions"] == 2 and f["purchases"] == 1 and f["conversion"] == 0.5
    assert f["errors"] == 1 and f["error_rate"] == 0.2
    assert f["latency_p50"] == 30.0
    assert f["latency_p95"] == 808.0  # 40 + 0.8 * (1000 - 40)


def test_latency_memory_is_bounded() -> None:
    agg = WebAggregate()
    ev = decode("web", raw(web(T0, "a", latency_ms=5)), T0)
    for _ in range(LATENCY_RESERVOIR * 3):
        agg.add(ev)
    assert len(agg.latencies) == LATENCY_RESERVOIR and agg.events == LATENCY_RESERVOIR * 3


def test_windows_close_on_watermark_and_expire_after_retention() -> None:
    w = EntityWindows()
    w.for_time(T0 + 5, 60, WebAggregate)
    w.for_time(T0 + 65, 60, WebAggregate)
    assert list(w.due(T0 + 69, 60, grace=10, flush_all=False)) == []
    assert list(w.due(T0 + 70, 60, grace=10, flush_all=False)) == [int(T0)]
    assert list(w.due(T0 + 70, 60, grace=10, flush_all=True)) == [int(T0), int(T0) + 60]
    w.dirty.clear()
    assert w.expire(T0 + 60 + 100, 60, retention=100) == 1
    assert list(w.windows) == [int(T0) + 60]


def test_aggregates_pickle_round_trip() -> None:
    agg = WebAggregate()
    agg.add(decode("web", raw(web(T0, "a")), T0))
    again = pickle.loads(pickle.dumps(agg))
    assert again.fields() == agg.fields() and again.sessions == {"a"}
