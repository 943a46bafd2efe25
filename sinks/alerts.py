"""Alert delivery: Prometheus Alertmanager's v2 API and a plain JSON webhook, both retried until delivered.

Delivery never drops an alert silently: connection errors, timeouts and 5xx/429 answers are retried with
exponential back-off for as long as the receiver is down (the caller, the alerts agent, waits, so Kafka
keeps the undelivered alerts and its offsets do not move). A 4xx answer means the alert itself is wrong
and is raised as :class:`DeliveryRefused` for the caller to dead-letter.

Alertmanager semantics (v2): an alert is identified by its labels; a firing alert carries an ``endsAt``
in the near future and must be re-sent before then or Alertmanager resolves it; a resolved alert is the
same labels with ``endsAt`` at the resolve time.

With a :class:`sinks.links.LinkSigner`, every notification also carries signed one-click links (annotations
``ack_url``, ``false_positive_url`` and ``image_url``; ``links`` in the webhook's JSON) to the worker's
feedback page and the alert's chart.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from datetime import UTC, datetime

import httpx
import msgspec

from sinks.events import AlertEvent
from sinks.links import LinkSigner

log = logging.getLogger(__name__)
_LABEL_VALUE_MAX = 512


class DeliveryRefused(Exception):
    """The receiver answered 4xx: retrying the same alert will not help."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


def _label(v: str) -> str:
    # Any UTF-8 is a valid label value, but control characters and huge values make the batch fail.
    return re.sub(r"[\x00-\x1f]", " ", v)[:_LABEL_VALUE_MAX]


def to_alertmanager(ev: AlertEvent, now: float, resend_s: float, links: LinkSigner | None = None) -> dict:
    """The Alertmanager v2 representation of an alert event (with its one-click links if ``links``)."""
    ends = ev.ends_at if ev.status == "resolved" and ev.ends_at is not None else now + 3 * resend_s
    return {
        "labels": {k: _label(v) for k, v in {
            "alertname": "OpsmonAnomaly", "source": ev.source, "entity": ev.entity, "group": ev.group,
            "metric": ev.metric, "severity": ev.severity, "incident": ev.incident or ev.id}.items()},
        "annotations": {k: _label(v) for k, v in {
            "summary": f"{ev.metric} of {ev.entity}: {ev.kind}", "description": ev.explanation,
            "runbook": ev.runbook, "dashboard": ev.dashboard, "alert_id": ev.id, "score": f"{ev.score:.3f}",
            "observed": f"{ev.observed:.6g}", "expected": f"{ev.expected:.6g}",
            "first_cause": ev.first_cause, "note": ev.note}.items() if v}
        # not cut at the label length like the text above: a cut link would only say "not valid"
        | (links.links(ev.id, now) if links else {}),
        "startsAt": _iso(ev.starts_at),
        "endsAt": _iso(ends),
        "generatorURL": ev.dashboard,
    }


def alertmanager_alerts(ev: AlertEvent, now: float, resend_s: float, links: LinkSigner | None = None) -> list[dict]:
    """What Alertmanager gets for an alert event: an escalated alert also resolves its former self.

    Alertmanager knows an alert by its labels, severity among them (routes match on it), so the alert
    under its former severity would otherwise stay firing until its ``endsAt``.
    """
    alerts = [to_alertmanager(ev, now, resend_s, links)]
    if ev.escalated_from and ev.status == "firing":
        former = msgspec.structs.replace(ev, severity=ev.escalated_from, status="resolved",
                                         ends_at=ev.escalated_at, escalated_from="")
        alerts.append(to_alertmanager(former, now, resend_s))  # no links: the alert lives on above
    return alerts


class _RetryingPoster:
    """POSTs JSON until the receiver takes it."""

    def __init__(self, url: str, timeout_s: float = 10.0, max_backoff_s: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.max_backoff_s = max_backoff_s
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers or {}, trust_env=False)
        self.delivered = 0
        self.retries = 0

    async def post(self, body: object) -> None:
        backoff = 0.2
        payload = msgspec.json.encode(body)
        while True:
            try:
                resp = await self._client.post(self.url, content=payload,
                                               headers={"Content-Type": "application/json"})
                if resp.status_code < 300:
                    self.delivered += 1
                    return
                if 400 <= resp.status_code < 500 and resp.status_code != 429:
                    raise DeliveryRefused(f"{self.url} refused the alert ({resp.status_code}): {resp.text[:300]}")
                reason = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self.retries += 1
            log.warning("alert delivery to %s failed (%s), retrying in %.1fs", self.url, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def close(self) -> None:
        await self._client.aclose()


class AlertmanagerSink(_RetryingPoster):
    """Posts alerts to ``{url}/api/v2/alerts``."""

    def __init__(self, base_url: str, resend_s: float = 60.0, links: LinkSigner | None = None,
                 **kw: object) -> None:
        super().__init__(base_url.rstrip("/") + "/api/v2/alerts", **kw)  # type: ignore[arg-type]
        self.resend_s = resend_s
        self.links = links

    async def send(self, events: list[AlertEvent], now: float) -> None:
        """Deliver (or re-send) these alerts."""
        if events:
            await self.post([a for ev in events for a in alertmanager_alerts(ev, now, self.resend_s, self.links)])


class WebhookSink(_RetryingPoster):
    """Posts each alert event as JSON to a plain webhook (chat tools, ticketing, custom receivers),
    except those of a severity in ``skip`` (for the boards only); with ``links``, under ``links`` its
    one-click links."""

    def __init__(self, url: str, skip: Collection[str] = (), links: LinkSigner | None = None, **kw: object) -> None:
        super().__init__(url, **kw)  # type: ignore[arg-type]
        self.skip = frozenset(skip)
        self.links = links

    async def send(self, events: list[AlertEvent], now: float) -> None:
        """Deliver these alerts."""
        for ev in events:
            if ev.severity not in self.skip:
                body = msgspec.to_builtins(ev)
                if self.links:
                    body["links"] = self.links.links(ev.id, now)
                await self.post(body)
