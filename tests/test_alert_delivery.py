"""Routing by severity: weak (info) alerts are for the boards, the rest page; an escalated alert pages."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import pytest

from deploy import services
from opsmon.settings import Settings
from sinks.alerts import WebhookSink, alertmanager_alerts
from streams.schemas import AlertEvent
from tests.integration.harness import WebhookReceiver

T = 1_800_000_000.0


def _event(severity: str = "info", **kw: object) -> AlertEvent:
    fields: dict = dict(id=f"iot:s/d:temperature:{T:.0f}", status="firing", severity=severity, source="iot",
                        entity="s/d", group="s", metric="temperature", kind="shift", score=0.55, observed=6.0,
                        expected=4.0, lower=3.0, upper=5.0, explanation="", runbook="", dashboard="", starts_at=T)
    return AlertEvent(**{**fields, **kw})


def test_an_escalated_alert_resolves_its_former_self_at_alertmanager() -> None:
    ev = _event("critical", score=0.9, escalated_from="info", escalated_at=T + 600)
    now_alert, former = alertmanager_alerts(ev, now=T + 601, resend_s=60)
    assert now_alert["labels"]["severity"] == "critical" and now_alert["endsAt"] > now_alert["startsAt"]
    assert former["labels"] == {**now_alert["labels"], "severity": "info"}
    assert former["startsAt"] == now_alert["startsAt"]
    assert former["endsAt"].startswith("2027-01-15T08:10:00"), former["endsAt"]  # T + 600: resolved then
    assert len(alertmanager_alerts(_event(), now=T, resend_s=60)) == 1


@pytest.mark.parametrize(("page_min", "routed"), [
    ("warning", {"info": "boards-only", "warning": "webhook", "critical": "webhook"}),
    ("info", {"info": "webhook", "warning": "webhook", "critical": "webhook"}),
    ("critical", {"info": "boards-only", "warning": "boards-only", "critical": "webhook"}),
])
def test_the_local_alertmanager_pages_from_the_configured_severity(tmp_path: Path, page_min: str,
                                                                   routed: dict[str, str]) -> None:
    boards_only = Settings(page_min_severity=page_min).boards_only_severities
    spec = services.alertmanager(tmp_path, 19993, "http://127.0.0.1:19999/alerts", boards_only)
    conf = next(a.split("=", 1)[1] for a in spec.prepare() if a.startswith("--config.file="))
    for severity, receiver in routed.items():
        out = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={conf}", f"severity={severity}",
                              "source=iot"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == receiver, (severity, out.stdout)


def test_the_plain_webhook_skips_alerts_for_the_boards_only() -> None:
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    hook = WebhookReceiver(url)

    async def deliver() -> None:
        sink = WebhookSink(url, skip=Settings().boards_only_severities)
        escalated = _event("warning", score=0.7, escalated_from="info", escalated_at=T + 60)
        await sink.send([_event("info"), escalated, _event("info", status="resolved", ends_at=T + 30)], now=T)
        await sink.close()

    try:
        asyncio.run(deliver())  # each post returns once the receiver has recorded it
        assert [(b["severity"], b["escalated_from"]) for b in hook.bodies] == [("warning", "info")]
    finally:
        hook.close()
