"""Kafka → Faust worker → VictoriaMetrics, with exact values read back, and the dead-letter path."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, pos, raw, web
from tests.integration.harness import WorkerProcess, read_topic
from tests.tsdb import eventually, influx_points

HOUR = 3600


DAY = 86400


def _t0() -> float:
    """Two days ago, on a day boundary: in the past (as replays are), with a next day that is past too."""
    return float(int(time.time()) // DAY * DAY - 2 * DAY)


def test_known_events_become_exact_aggregates_and_bad_ones_dead_letters(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings
    t0 = _t0()
    ms = int(t0 * 1000)
    good = {
        "pos": [
            pos(t0 + 1, "a1", store="e2e-a", lines=(("A", 2, 1.5), ("B", 1, 4.0))),
            pos(t0 + 2, "a2", store="e2e-a", lines=(("A", 1, 1.5),)),
            pos(t0 + 3, "a3", store="e2e-a", kind="refund", lines=(("B", 1, 4.0),)),
            {**pos(t0 + 4, "a4", store="e2e-a", kind="void"), "lines": [], "total": 0.0},
            pos(t0 + 61, "a5", store="e2e-a", lines=(("C", 3, 2.0),)),
            pos(t0 + 121, "b1", store="e2e-b", lines=(("A", 1, 1.5),)),
        ],
        "web": [web(t0 + 1, "s1", latency_ms=10), web(t0 + 2, "s1", "add_to_cart", latency_ms=20),
                web(t0 + 3, "s1", "purchase", latency_ms=30), web(t0 + 4, "s2", latency_ms=40),
                web(t0 + 5, "s2", "error", status=500, latency_ms=1000),
                web(t0 + 130, "s3", latency_ms=50)],  # moves event time past the first window: it is final
        "iot": [iot(t0 + 0.5, "e2e-site", "dev-1", temperature=4.25, humidity=51.0),
                iot(t0 + 10, "e2e-site", "dev-1", temperature=4.5), iot(t0 + 1, "e2e-site", "dev-2", vibration=0.3)],
    }
    for e in good["web"]:
        e["site"] = "e2e-shop"
    bad = {
        "iot": [b"{not json", raw({"v": 1, "site": "x"}), raw({**iot(t0), "v": 9})],
        "pos": [raw({**pos(t0, "x1", store="e2e-a"), "total": 99.0}),
                raw(pos(t0 + 62, "a2", store="e2e-a"))],  # a transaction id seen before
        "web": [raw({**web(t0, "s"), "status": 999})],
    }
    expected_kinds = {"iot": ["json", "schema", "version"], "pos": ["value", "duplicate"], "web": ["value"]}
    # A sale the next day closes day t0's demand bucket: forecasts and actuals per SKU get written.
    next_day = pos(t0 + DAY + 30, "a6", store="e2e-a", lines=(("A", 1, 1.5),))

    # a limit the business set: it alerts on the first reading beyond it, with no history at all
    worker_factory(s.model_copy(update={"limits": {"iot:e2e-site/*:temperature": "> 4.4"}}))
    with Publisher(s) as pub:
        for source, events in good.items():
            for e in events:
                key = e.get("store") or (f"{e['site']}/{e['device']}" if source == "iot" else e["site"])
                pub.send_raw(source, key, raw(e))
        for source, payloads in bad.items():
            for b in payloads:
                pub.send_raw(source, "e2e-a" if source == "pos" else "bad", b)
        pub.send_raw("pos", "e2e-a", raw(next_day))
        # ... and one a few minutes later makes that first window of the next day final without waiting.
        pub.send_raw("pos", "e2e-a", raw(pos(t0 + DAY + 150, "a7", store="e2e-a", lines=(("A", 1, 1.5),))))

    expected = {
        # pos_window, store e2e-a, first minute: 2 sales (8.5) - 1 refund (4.0); 1 void.
        **{("pos_window_" + k, ("store", "e2e-a"), ms): v for k, v in {
            "revenue": 4.5, "transactions": 2, "items": 4, "avg_basket": 4.25, "refunds": 1,
            "refund_amount": 4.0, "voids": 1}.items()},
        **{("pos_window_" + k, ("store", "e2e-a"), ms + 60_000): v for k, v in {
            "revenue": 6.0, "transactions": 1, "items": 3, "avg_basket": 6.0, "refunds": 0}.items()},
        ("pos_window_revenue", ("store", "e2e-b"), ms + 120_000): 1.5,
        ("pos_sku_window_quantity", ("sku", "A"), ("store", "e2e-a"), ms): 3.0,
        ("pos_sku_window_revenue", ("sku", "A"), ("store", "e2e-a"), ms): 4.5,
        ("pos_sku_window_quantity", ("sku", "B"), ("store", "e2e-a"), ms): 0.0,
        ("pos_sku_window_quantity", ("sku", "C"), ("store", "e2e-a"), ms + 60_000): 3.0,
        **{("web_window_" + k, ("site", "e2e-shop"), ms): v for k, v in {
            "events": 5, "page_views": 2, "sessions": 2, "add_to_cart": 1, "checkouts": 0, "purchases": 1,
            "conversion": 0.5, "errors": 1, "error_rate": 0.2, "latency_p50": 30.0, "latency_p95": 808.0}.items()},
        ("iot_reading_temperature", ("device", "dev-1"), ("site", "e2e-site"), ms + 500): 4.25,
        ("iot_reading_humidity", ("device", "dev-1"), ("site", "e2e-site"), ms + 500): 51.0,
        ("iot_reading_temperature", ("device", "dev-1"), ("site", "e2e-site"), ms + 10_000): 4.5,
        ("iot_reading_vibration", ("device", "dev-2"), ("site", "e2e-site"), ms + 1000): 0.3,
        # Day t0's units per SKU (sales minus refunds), written when the next day's sale closed the bucket.
        **{("forecast_actual", ("bucket", "day"), ("sku", sku), ("store", "e2e-a"), ms): q
           for sku, q in {"A": 3.0, "B": 0.0, "C": 3.0}.items()},
        ("forecast_actual", ("bucket", "hour"), ("sku", "_total"), ("store", "e2e-a"), ms): 6.0,
    }
    selector = '{__name__=~"(pos_window|pos_sku_window|web_window|iot_reading|forecast)_.*",' \
               'store=~"e2e-.*|",site=~"e2e-.*|"}'

    def matches(points: dict) -> bool:
        return all(points.get(k) == v for k, v in expected.items())

    points = eventually(lambda: influx_points(s, selector), matches, timeout=90)
    wrong = {k: (points.get(k), v) for k, v in expected.items() if points.get(k) != v}
    assert not wrong, f"read back != expected (got, want): {wrong}"
    # Nothing else was written for these entities: no double-counted or phantom windows.
    # Nothing else was counted: every other window of these stores is a zero window (silence is a signal:
    # with no opening hours configured, a store without sales reads as zero sales).
    pos_windows = {k for k in points if k[0] == "pos_window_revenue" and k[-1] < ms + DAY * 1000 and points[k] != 0}
    zero_windows = {k for k in points if k[0] == "pos_window_transactions" and points[k] == 0}
    assert zero_windows and all(points[("pos_window_revenue", *k[1:])] == 0 for k in zero_windows)
    assert pos_windows == {("pos_window_revenue", ("store", "e2e-a"), ms),
                           ("pos_window_revenue", ("store", "e2e-a"), ms + 60_000),
                           ("pos_window_revenue", ("store", "e2e-b"), ms + 120_000)}
    # Forecasts for the next days of each SKU, with intervals around them (a week is written; the stand-in
    # time-series server drops points too far in the future, so only those up to today are checked).
    day_ms = DAY * 1000
    for sku in ("A", "B", "C"):
        for h in (1, 2):
            key = ("bucket", "day"), ("sku", sku), ("store", "e2e-a"), ms + h * day_ms
            lo, pred, hi = (points.get((f"forecast_{f}", *key)) for f in ("lower", "predicted", "upper"))
            assert pred is not None and lo is not None and hi is not None, f"forecast {sku} day +{h}"
            assert 0.0 <= lo <= pred <= hi
    # Every reading and every final window was scored, next to the data it describes.
    scores = influx_points(s, '{__name__="anomaly_score_score",entity=~"e2e-.*"}')
    scored = {(dict(k[1:-1])["source"], dict(k[1:-1])["entity"], dict(k[1:-1])["metric"], k[-1]) for k in scores}
    assert ("iot", "e2e-site/dev-1", "temperature", ms + 500) in scored
    assert ("iot", "e2e-site/dev-1", "humidity", ms + 500) in scored
    assert ("pos", "e2e-a", "revenue", ms) in scored
    web_scored = sorted(k for k in scored if k[0] == "web")
    assert ("web", "e2e-shop", "latency_p95", ms) in scored, web_scored
    # ... but an error rate on 5 requests is too few to judge: it waits for 10 (OPSMON_RATE_MIN_TRIALS)
    assert ("web", "e2e-shop", "error_rate", ms) not in scored, web_scored
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    # The worker reports its consumer lag (the pipeline board and the lag alert rule read it): it drains to 0.
    def lag() -> dict:
        return influx_points(s, f'{{__name__="opsmon_pipeline_lag",worker="{s.app_id}"}}')

    def drained(points: dict) -> bool:
        latest: dict[str, tuple[int, float]] = {}
        for k, v in points.items():
            topic = dict(k[1:-1])["topic"]
            if k[-1] >= latest.get(topic, (0, 0.0))[0]:
                latest[topic] = (k[-1], v)
        return set(latest) == {"iot", "pos", "web"} and all(v == 0 for _, v in latest.values())

    assert drained(eventually(lag, drained, timeout=60)), "lag per source topic written and drained to 0"

    for source, payloads in bad.items():
        topic = s.dlq_topics[{"iot": s.topic_iot, "pos": s.topic_pos, "web": s.topic_web}[source]]
        records = read_topic(s, topic, expect=len(payloads))
        assert sorted(r.value for r in records) == sorted(payloads), f"{topic} holds exactly the bad messages"
        by_value = {r.value: dict(r.headers) for r in records}
        kinds = [by_value[b]["opsmon-kind"].decode() for b in payloads]
        assert kinds == expected_kinds[source]
        for b in payloads:
            h = by_value[b]
            assert h["opsmon-reason"].decode().startswith(h["opsmon-kind"].decode() + ":")
            assert h["opsmon-source-topic"].decode() == topic.removesuffix(s.dlq_suffix)
    dup = [r for r in read_topic(s, s.dlq_topics[s.topic_pos], 2) if b'"a2"' in r.value]
    assert b"already accepted" in dict(dup[0].headers)["opsmon-reason"]
    assert orjson.loads(dup[0].value)["txn_id"] == "a2"
    # The limit: one alert, for the reading beyond it, explained; the limit is written beside its scores.
    alerts = [orjson.loads(r.value) for r in read_topic(s, s.topic_alerts, expect=1)]
    assert [(a["entity"], a["metric"], a["kind"], a["status"], a["starts_at"]) for a in alerts] == [
        ("e2e-site/dev-1", "temperature", "limit", "firing", t0 + 10)]
    assert "beyond the limit the business set (> 4.4)" in alerts[0]["explanation"]
    limits = influx_points(s, '{__name__="anomaly_score_limit_above",entity=~"e2e-.*"}')
    assert {(dict(k[1:-1])["entity"], k[-1]): v for k, v in limits.items()} == {
        ("e2e-site/dev-1", ms + 500): 4.4, ("e2e-site/dev-1", ms + 10_000): 4.4}
