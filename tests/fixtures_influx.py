"""Known data in every measurement and tag of docs/data-model.md, for running the Grafana queries for real.

Three hours of one-minute points ending at ``end_ms`` (a minute boundary, exclusive), with a few
incidents placed so each alert rule fires for exactly one instance:

- IoT: two sites, two devices each, four metrics; ``plant-north/fridge-1`` temperature jumps to 12.0
  in the last 5 minutes (scored anomalous); ``plant-south/press-2`` goes silent 30 minutes before the end.
- POS: ``store-a`` steady; ``store-b`` revenue drops from 50 to 10 in the last 15 minutes (anomalous).
- Web: ``shop-eu`` steady; ``shop-us`` errors jump to 20 of 100 events in the last 10 minutes, and its p95 latency
  to 2.5 s, beyond the shops' 1.5 s limit (fridges have a limit too: 8 °C).
- Pipeline: worker ``opsmon-1``; the iot topic's event counter stops in the last 15 minutes; the web
  topic's counters restart from zero at minute 120 (a worker restart) and its lag reaches 50 000
  in the last 10 minutes.
- Alerts: two open (fridge-1 temperature, shop-us error rate), one opened and resolved (store-a revenue).
- Feedback: 6 acknowledgements, 2 false positives.

``EXPECTED`` holds the figures the tests compare query results with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from sinks.lineproto import line

MINUTES = 180
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

SITES = {"plant-north": ("fridge-1", "fridge-2"), "plant-south": ("press-1", "press-2")}
NORMAL = {  # metric -> (fridge value, press value)
    "temperature": (4.0, 40.0), "humidity": (50.0, 35.0), "vibration": (0.2, 2.0), "power": (100.0, 500.0)}
ANOMALOUS_ENTITY, ANOMALOUS_METRIC, SPIKE = "plant-north/fridge-1", "temperature", 12.0
SILENT_ENTITY = "plant-south/press-2"
STORES = ("store-a", "store-b")
SKUS = {"store-a": {"sku-1": (6, 60.0), "sku-2": (4, 40.0)}, "store-b": {"sku-1": (2, 20.0), "sku-3": (3, 30.0)}}
WEB_SITES = ("shop-eu", "shop-us")
FRIDGE_LIMIT, LATENCY_LIMIT = 8.0, 1500.0  # limits the business set (limit_above in anomaly_score)
WORKER = "opsmon-1"
TOPICS = {"iot": "iot.readings", "pos": "pos.transactions", "web": "web.events"}

# Minute index (0..179) where each incident starts.
SPIKE_FROM, SILENT_FROM, SALES_DROP_FROM, WEB_ERRORS_FROM = 175, 150, 165, 170
IOT_STALL_FROM, WEB_RESTART_AT, WEB_LAG_FROM = 165, 120, 170

EXPECTED = {
    "revenue_last_hour": 60 * 100.0 + 45 * 50.0 + 15 * 10.0,
    "transactions_last_hour": 60 * 4 + 45 * 2 + 15 * 1,
    "web_conversion_last_hour": (2 * 60 * 2) / (20 * 60 * 2),
    "web_error_rate_last_hour": (60 * 1 + 50 * 1 + 10 * 20) / (100 * 60 * 2),
    "devices_reporting_last_5m": 3,
    "open_alerts": {("iot", ANOMALOUS_ENTITY, ANOMALOUS_METRIC), ("web", "shop-us", "error_rate")},
    # shop-us: its error rate and its latency, 10 minutes each
    "anomalies": {("iot", ANOMALOUS_ENTITY): 5, ("pos", "store-b"): 15, ("web", "shop-us"): 2 * 10},
    "revenue_total": 180 * 100.0 + 165 * 50.0 + 15 * 10.0,
    "funnel": {"page views": 80 * 360, "add to cart": 6 * 360, "checkouts": 3 * 360, "purchases": 2 * 360},
    "events_per_second": {"pos.transactions": 2.0, "web.events": 100.0},
    "dead_lettered_total": 3 * (MINUTES - 2),  # the restart's first minute is lost to the counter reset
    "precision": 6 / 8,
    "firing": {
        "opsmon-iot-anomaly": [{"entity": ANOMALOUS_ENTITY, "metric": ANOMALOUS_METRIC}],
        "opsmon-sales-drop": [{"entity": "store-b"}],
        "opsmon-web-errors": [{"site": "shop-us"}],
        "opsmon-pipeline-stalled": [{"worker": WORKER, "topic": "iot.readings"}],
        "opsmon-consumer-lag": [{"topic": "web.events"}],
    },
}


@dataclass(frozen=True)
class Fixture:
    """The generated points and the time range they cover."""

    end_ms: int  # exclusive, on a minute boundary
    lines: tuple[str, ...]

    @property
    def start_ms(self) -> int:
        """The first minute's timestamp."""
        return self.end_ms - MINUTES * MINUTE_MS


def build(end_ms: int | None = None) -> Fixture:
    """The fixture ending at ``end_ms`` (default: the current minute)."""
    if end_ms is None:
        end_ms = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    start = end_ms - MINUTES * MINUTE_MS
    out: list[str] = []
    for k in range(MINUTES):
        t = start + k * MINUTE_MS
        out += _iot(k, t) + _pos(k, t) + _web(k, t) + _pipeline(k, t)
    out += _forecast(end_ms) + _stock(start) + _alerts(start) + _feedback(start)
    return Fixture(end_ms=end_ms, lines=tuple(out))


def load(base_url: str, database: str, fixture: Fixture, auth: tuple[str, str]) -> None:
    """Create ``database`` on an InfluxDB 1.x as the admin ``auth`` and write the fixture (millisecond precision)."""
    with httpx.Client(base_url=base_url, timeout=30, auth=auth, trust_env=False) as client:
        client.post("/query", data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
        for i in range(0, len(fixture.lines), 5000):
            r = client.post("/write", params={"db": database, "precision": "ms"},
                            content="\n".join(fixture.lines[i:i + 5000]).encode())
            if r.status_code != 204:
                raise RuntimeError(f"write to {base_url} failed: {r.status_code} {r.text}")


def _score(source: str, entity: str, metric: str, observed: float, expected: float, anomalous: bool,
           t: int, limit_above: float | None = None) -> str:
    limit = {} if limit_above is None else {"limit_above": limit_above}
    return line("anomaly_score", {"source": source, "entity": entity, "metric": metric},
                {"score": 0.97 if anomalous else 0.1, "threshold": 0.9, "observed": observed,
                 "expected": expected, "lower": expected * 0.8, "upper": expected * 1.2,
                 "is_anomaly": int(anomalous), **limit}, t)


def _iot(k: int, t: int) -> list[str]:
    out = []
    for site, devices in SITES.items():
        for device in devices:
            entity = f"{site}/{device}"
            if entity == SILENT_ENTITY and k >= SILENT_FROM:
                continue
            kind = 0 if device.startswith("fridge") else 1
            readings = {metric: values[kind] for metric, values in NORMAL.items()}
            spike = entity == ANOMALOUS_ENTITY and k >= SPIKE_FROM
            if spike:
                readings[ANOMALOUS_METRIC] = SPIKE
            out.append(line("iot_reading", {"site": site, "device": device}, readings, t))
            for metric, value in readings.items():
                anomalous = spike and metric == ANOMALOUS_METRIC
                limit = FRIDGE_LIMIT if kind == 0 and metric == "temperature" else None
                out.append(_score("iot", entity, metric, value, NORMAL[metric][kind], anomalous, t, limit))
    return out


def _pos(k: int, t: int) -> list[str]:
    out = []
    for store in STORES:
        dropped = store == "store-b" and k >= SALES_DROP_FROM
        revenue = 100.0 if store == "store-a" else (10.0 if dropped else 50.0)
        transactions = 4 if store == "store-a" else (1 if dropped else 2)
        refunds = 1 if store == "store-b" and k % 10 == 0 else 0
        out.append(line("pos_window", {"store": store}, {
            "revenue": revenue, "transactions": transactions, "items": transactions * 3,
            "avg_basket": revenue / transactions, "refunds": refunds, "refund_amount": 5.0 * refunds, "voids": 0},
            t))
        for sku, (quantity, sku_revenue) in SKUS[store].items():
            out.append(line("pos_sku_window", {"store": store, "sku": sku},
                            {"quantity": quantity, "revenue": sku_revenue}, t))
        expected = 100.0 if store == "store-a" else 50.0
        out.append(_score("pos", store, "revenue", revenue, expected, dropped, t))
    return out


def _web(k: int, t: int) -> list[str]:
    out = []
    for site in WEB_SITES:
        failing = site == "shop-us" and k >= WEB_ERRORS_FROM
        errors = 20 if failing else 1
        latency = 2500.0 if failing else 450.0
        out.append(line("web_window", {"site": site}, {
            "events": 100, "page_views": 80, "sessions": 20, "add_to_cart": 6, "checkouts": 3, "purchases": 2,
            "conversion": 0.1, "errors": errors, "error_rate": errors / 100, "latency_p50": 120.0,
            "latency_p95": latency}, t))
        out.append(_score("web", site, "error_rate", errors / 100, 0.01, failing, t))
        out.append(_score("web", site, "latency_p95", latency, 450.0, failing, t, LATENCY_LIMIT))
    return out


def _pipeline(k: int, t: int) -> list[str]:
    def counter(per_minute: int, since: int = 0, stop: int = MINUTES) -> int:
        return (min(k, stop - 1) - since + 1) * per_minute

    web_since = WEB_RESTART_AT if k >= WEB_RESTART_AT else 0
    # Written at flush time, a few seconds into the minute.
    ts = t + 5_000
    return [
        line("opsmon_pipeline", {"worker": WORKER, "topic": TOPICS["iot"]},
             {"events": counter(600, stop=IOT_STALL_FROM), "dead_lettered": 0, "late": 0, "lag": 0,
              "windows_written": 0}, ts),
        line("opsmon_pipeline", {"worker": WORKER, "topic": TOPICS["pos"]},
             {"events": counter(120), "dead_lettered": 0, "late": counter(2), "lag": 5,
              "windows_written": counter(2)}, ts),
        line("opsmon_pipeline", {"worker": WORKER, "topic": TOPICS["web"]},
             {"events": counter(6000, web_since), "dead_lettered": counter(3, web_since), "late": 0,
              "lag": 50_000 if k >= WEB_LAG_FROM else 100, "windows_written": counter(2, web_since)}, ts),
    ]


def _forecast(end_ms: int) -> list[str]:
    out = []
    hour0 = end_ms // HOUR_MS * HOUR_MS
    for store, sku in (("store-a", "sku-1"), ("store-b", "sku-3")):
        for h in range(-2, 3):
            bucket = hour0 + h * HOUR_MS
            fields: dict[str, float] = {"predicted": 360.0, "lower": 300.0, "upper": 420.0}
            if h < 0:
                fields["actual"] = 350.0
            out.append(line("forecast", {"store": store, "sku": sku, "bucket": "hour"}, fields, bucket))
        day = end_ms // (24 * HOUR_MS) * 24 * HOUR_MS
        out.append(line("forecast", {"store": store, "sku": sku, "bucket": "day"},
                        {"predicted": 8640.0, "lower": 7000.0, "upper": 10000.0}, day))
    return out


def _stock(start: int) -> list[str]:
    items = {("store-a", "sku-1"): (5.0, 0.5, 1), ("store-a", "sku-2"): (100.0, 20.0, 0),
             ("store-b", "sku-3"): (30.0, 3.0, 0)}
    return [line("stock_risk", {"store": store, "sku": sku},
                 {"stock": stock, "days_to_stockout": days, "at_risk": risk}, start + k * MINUTE_MS)
            for k in range(0, MINUTES, 15) for (store, sku), (stock, days, risk) in items.items()]


def _alerts(start: int) -> list[str]:
    def alert(source: str, entity: str, metric: str, severity: str, state: str, k: int, score: float,
              observed: float, expected: float) -> str:
        return line("alert", {"source": source, "entity": entity, "metric": metric, "severity": severity,
                              "state": state},
                    {"score": score, "observed": observed, "expected": expected, "open": int(state == "firing")},
                    start + k * MINUTE_MS)

    return [
        alert("iot", ANOMALOUS_ENTITY, ANOMALOUS_METRIC, "warning", "firing", SPIKE_FROM, 0.97, SPIKE, 4.0),
        alert("web", "shop-us", "error_rate", "critical", "firing", WEB_ERRORS_FROM, 0.99, 0.2, 0.01),
        alert("pos", "store-a", "revenue", "warning", "firing", 60, 0.95, 20.0, 100.0),
        alert("pos", "store-a", "revenue", "warning", "resolved", 90, 0.1, 100.0, 100.0),
    ]


def _feedback(start: int) -> list[str]:
    kinds = ["ack"] * 6 + ["false_positive"] * 2
    return [line("feedback", {"entity": ANOMALOUS_ENTITY, "metric": ANOMALOUS_METRIC, "kind": kind}, {"count": 1},
                 start + (10 + 20 * i) * MINUTE_MS) for i, kind in enumerate(kinds)]
