"""Anomalies become alerts at a real Alertmanager, which notifies a webhook served by the test."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from deploy.stack import Stack
from opsmon.cli import app as cli
from opsmon.settings import Settings
from sinks.alerts import AlertmanagerSink
from streams.publisher import Publisher
from streams.schemas import AlertEvent
from tests.events import iot, raw
from tests.integration.harness import WebhookReceiver, WorkerProcess
from tests.tsdb import eventually

STEP = 300.0  # a reading every five minutes; detectors learn a full day before they may alert


@pytest.fixture
def alert_settings(pipeline_settings: Settings) -> Settings:
    # Re-send firing alerts often, so an Alertmanager that restarts learns them again quickly.
    return pipeline_settings.model_copy(update={"alert_resend_seconds": 5.0})


def _normal(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [4.0 + 0.5 * math.sin(2 * math.pi * i * STEP / 86400) + rng.gauss(0, 0.1) for i in range(n)]


def _publish(settings: Settings, entity: str, t0: float, values: list[float]) -> float:
    """Publish readings of one device's temperature from ``t0``; returns the time of the last."""
    site, device = entity.split("/")
    with Publisher(settings) as pub:
        for i, x in enumerate(values):
            pub.send_raw("iot", entity, raw(iot(t0 + i * STEP, site, device, temperature=x)))
    return t0 + (len(values) - 1) * STEP


def _processed(worker: WorkerProcess, n: int) -> Callable[[], bool]:
    return lambda: (worker.stats() or {}).get("iot", {}).get("events", 0) >= n


def _of(hook: WebhookReceiver, entity: str, status: str) -> set[str]:
    return {a["annotations"]["alert_id"] for a in hook.alerts(status) if a["labels"]["entity"] == entity}


def test_an_anomaly_is_one_alert_then_resolved_and_a_false_positive_silences_the_repeat(
        alert_settings: Settings, worker_factory: Callable[..., WorkerProcess], webhook: WebhookReceiver) -> None:
    s = alert_settings
    entity = "alert-site/freezer-1"
    t0 = float(int(time.time()) // 3600 * 3600 - 6 * 86400)
    worker = worker_factory(s)
    last = _publish(s, entity, t0, _normal(600, seed=1))
    assert eventually(_processed(worker, 600), bool, timeout=60)
    sent = time.time()
    _publish(s, entity, last + STEP, [15.0])
    fired = eventually(lambda: _of(webhook, entity, "firing"), bool, timeout=60)
    latency = webhook.arrivals[0] - sent
    assert len(fired) == 1, f"exactly one alert: {fired}"
    alert = next(a for a in webhook.alerts("firing") if a["labels"]["entity"] == entity)
    assert alert["labels"]["metric"] == "temperature" and alert["labels"]["severity"] in ("warning", "critical")
    assert "temperature of alert-site/freezer-1 is 15" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook"] and alert["annotations"]["dashboard"].startswith(s.grafana_url)
    print(f"\nevent-to-webhook latency: {latency:.2f} s")

    _publish(s, entity, last + 2 * STEP, _normal(30, seed=2))
    resolved = eventually(lambda: _of(webhook, entity, "resolved"), bool, timeout=60)
    assert resolved == fired, "the same alert resolved"

    (alert_id,) = fired
    url = f"http://127.0.0.1:{s.worker_web_port}/opsmon/feedback"
    token = {"Authorization": "Bearer test-feedback-token"}
    assert httpx.post(url, json={"alert_id": alert_id, "kind": "false_positive"}).status_code == 401
    assert httpx.post(url, json={"alert_id": alert_id, "kind": "false_positive"},
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    unknown = httpx.post(url, json={"alert_id": "iot:nowhere/x:temperature:1", "kind": "ack"}, headers=token)
    assert unknown.status_code == 404 and "unknown alert id" in unknown.json()["error"]
    assert httpx.post(url, content=b"x" * 10_000, headers=token).status_code == 413
    assert httpx.post(url, json={"alert_id": alert_id, "kind": "maybe"}, headers=token).status_code == 400
    # What on-call staff type: the CLI posts to the same endpoint with the token from the environment.
    env = s.to_env()
    refused = CliRunner().invoke(cli, ["alerts", "ack", "iot:nowhere/x:temperature:1"], env=env)
    assert refused.exit_code == 1 and "unknown alert id" in refused.output
    # Acknowledged first (the detector takes the incident out of what it has learned), then found wrong.
    acked = CliRunner().invoke(cli, ["alerts", "ack", alert_id, "--user", "sam"], env=env)
    assert acked.exit_code == 0 and f"ack recorded for {alert_id}" in acked.output, acked.output
    marked = CliRunner().invoke(cli, ["alerts", "false-positive", alert_id, "--user", "sam"], env=env)
    assert marked.exit_code == 0 and f"false positive recorded for {alert_id}" in marked.output, marked.output
    applied = eventually(lambda: (worker.stats() or {}).get("alerts", {}).get("feedback_applied", 0) == 2 and
                         worker.stats()["alerts"], bool, timeout=30)
    assert applied["feedback_to_models"] == 2, applied  # both found the model they were about

    # The same pattern a day later: no new alert.
    again = last + 300 * STEP
    end = _publish(s, entity, again, _normal(100, seed=3) + [15.0] + _normal(10, seed=4))
    assert eventually(_processed(worker, 600 + 1 + 30 + 111), bool, timeout=60)
    time.sleep(8)  # longer than Alertmanager's group_wait
    paged = _of(webhook, entity, "firing")
    assert {i for i in paged if ":temperature:" in i} == fired, "no second alert after the false positive"
    # the day without readings was an outage of the freezer: reported when it came back
    assert [i for i in paged if ":reporting:" in i], paged
    assert end > again


def test_alertmanager_down_delays_delivery_but_loses_and_duplicates_nothing(
        stack: Stack, alert_settings: Settings, worker_factory: Callable[..., WorkerProcess],
        webhook: WebhookReceiver) -> None:
    s = alert_settings
    entity = "am-down-site/freezer-2"
    t0 = float(int(time.time()) // 3600 * 3600 - 6 * 86400)
    worker = worker_factory(s)
    last = _publish(s, entity, t0, _normal(600, seed=5))
    assert eventually(_processed(worker, 600), bool, timeout=60)
    stack.stop("alertmanager")
    try:
        _publish(s, entity, last + STEP, [15.0])
        assert eventually(_processed(worker, 601), bool, timeout=60)
        time.sleep(5)
        assert _of(webhook, entity, "firing") == set()
    finally:
        stack.start("alertmanager")
    fired = eventually(lambda: _of(webhook, entity, "firing"), bool, timeout=90)
    assert len(fired) == 1
    listed = CliRunner().invoke(cli, ["alerts", "list", "--json"], env=s.to_env())
    assert listed.exit_code == 0, listed.output
    assert next(iter(fired)) in {json.loads(ln)["id"] for ln in listed.output.splitlines()}
    time.sleep(12)  # re-sends of the firing alert must not page again
    notifications = [a for a in webhook.alerts("firing") if a["labels"]["entity"] == entity]
    assert len({a["annotations"]["alert_id"] for a in notifications}) == 1
    assert len(notifications) == 1, f"delivered once, not {len(notifications)} times"


def test_a_silence_mutes_an_entity_during_planned_work(
        stack: Stack, alert_settings: Settings, worker_factory: Callable[..., WorkerProcess],
        webhook: WebhookReceiver) -> None:
    s = alert_settings
    entity = "maint-site/oven-1"
    out = CliRunner().invoke(cli, ["alerts", "silence", entity, "--for", "2h", "--comment", "oven service"],
                             env=s.to_env())
    assert out.exit_code == 0 and f"silenced {entity} for 2h" in out.output, out.output
    t0 = float(int(time.time()) // 3600 * 3600 - 6 * 86400)
    worker = worker_factory(s)
    last = _publish(s, entity, t0, _normal(600, seed=8))
    _publish(s, entity, last + STEP, [15.0])
    assert eventually(_processed(worker, 601), bool, timeout=90)
    am = f"http://127.0.0.1:{stack.status()['alertmanager'].port}/api/v2/alerts"

    def silenced() -> list[dict]:
        return [a for a in httpx.get(am, params={"silenced": "true"}).json() if a["labels"]["entity"] == entity]

    muted = eventually(silenced, bool, timeout=30)
    assert muted and muted[0]["status"]["state"] == "suppressed" and muted[0]["status"]["silencedBy"]
    time.sleep(5)  # longer than group_wait: a notification would have gone out by now
    assert _of(webhook, entity, "firing") == set(), "no page for a silenced entity"


def test_info_alerts_stay_on_the_boards_until_they_escalate_and_then_page(
        stack: Stack, stack_settings: Settings, webhook: WebhookReceiver) -> None:
    entity = "route-site/chiller-1"
    start = time.time() - 120
    first = AlertEvent(id=f"iot:{entity}:temperature:{start:.0f}", status="firing", severity="info", source="iot",
                       entity=entity, group="route-site", metric="temperature", kind="shift", score=0.55,
                       observed=6.0, expected=4.0, lower=3.0, upper=5.0, explanation="", runbook="", dashboard="",
                       starts_at=start, incident=f"route-site@{start:.0f}")
    am = f"http://127.0.0.1:{stack.status()['alertmanager'].port}"

    def listed() -> dict[str, str]:
        """Severity -> state of this entity's alerts in Alertmanager's own list."""
        return {a["labels"]["severity"]: a["status"]["state"] for a in httpx.get(f"{am}/api/v2/alerts").json()
                if a["labels"]["entity"] == entity}

    async def send(ev: AlertEvent) -> None:
        sink = AlertmanagerSink(am)
        await sink.send([ev], now=time.time())
        await sink.close()

    asyncio.run(send(first))
    assert eventually(listed, bool, timeout=10) == {"info": "active"}, "Alertmanager lists the info alert"
    time.sleep(5)  # longer than group_wait: a notification would have gone out by now
    assert _of(webhook, entity, "firing") == set(), "an info alert pages no one"
    grown = msgspec.structs.replace(first, severity="warning", score=0.7, escalated_from="info",
                                    escalated_at=time.time())
    asyncio.run(send(grown))
    paged = eventually(lambda: [a for a in webhook.alerts("firing") if a["labels"]["entity"] == entity], bool,
                       timeout=30)
    assert [a["labels"]["severity"] for a in paged] == ["warning"]
    assert eventually(listed, lambda v: v == {"warning": "active"}, timeout=10) == {"warning": "active"}, \
        "its former self is resolved, not left firing until it times out"


def test_a_limit_written_to_the_limits_file_pages_without_a_restart(
        alert_settings: Settings, worker_factory: Callable[..., WorkerProcess], webhook: WebhookReceiver,
        tmp_path: Path) -> None:
    # The business sets a fridge's food-safety bound while the worker runs: the next reading beyond it pages.
    path = tmp_path / "limits.json"
    path.write_text("{}")
    s = alert_settings.model_copy(update={"limits_file": path, "limits_poll_seconds": 1.0})
    entity = "limit-site/fridge-1"
    t0 = float(int(time.time()) // 3600 * 3600 - 86400)
    worker = worker_factory(s)
    last = _publish(s, entity, t0, [5.0 + 0.1 * (i % 3) for i in range(20)])
    assert eventually(_processed(worker, 20), bool, timeout=60)
    assert _of(webhook, entity, "firing") == set()

    path.write_text(json.dumps({"iot:limit-site/fridge-*:temperature": "> 4.5"}))
    assert eventually(lambda: (worker.stats() or {}).get("limits", {}).get("reloads") == 1, bool, timeout=30)
    _publish(s, entity, last + STEP, [5.2])
    fired = eventually(lambda: _of(webhook, entity, "firing"), bool, timeout=60)
    assert len(fired) == 1 and ":temperature:" in next(iter(fired))
    alert = next(a for a in webhook.alerts("firing") if a["labels"]["entity"] == entity)
    assert "beyond the limit the business set (> 4.5)" in alert["annotations"]["description"]

    # a broken edit is reported, and the rules in force stay
    path.write_text('{"iot:limit-site/fridge-*:temperature": "> 4.5",')
    error = eventually(lambda: (worker.stats() or {}).get("limits", {}).get("error"), bool, timeout=30)
    assert f"limits file {path}: not JSON" in error
    assert worker.stats()["limits"]["rules"] == 1
