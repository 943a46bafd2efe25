"""The page behind an alert's one-click links: see the alert and its chart, confirm with a POST.

``GET /opsmon/link?t=<token>`` shows the alert (what, where, observed vs expected, the explanation, the
chart) and a confirm button; only the button's ``POST /opsmon/link`` changes anything, so link previewers
and mail scanners that fetch the link change nothing. A confirmed link queues a :class:`Feedback` on the
feedback topic, the same message ``POST /opsmon/feedback`` sends, which the feedback agent applies.
``GET /opsmon/chart.png?t=<token>`` serves the alert's chart (:mod:`streams.alert_chart`).

Each (alert, action) is applied once: it is recorded in the changelogged ``feedback-links`` table, in the
partition of the alert's own index record (the alerts topic's partition of its group), so the worker that
holds the alert holds the record, and a restarted worker recovers both with its other tables. An expired,
altered or used link gets a page saying so.

The pages set no cookies, run no script, and send a strict Content-Security-Policy (the inline style is
allowed by its hash), ``X-Frame-Options: DENY``, ``nosniff``, ``no-referrer`` (the URL holds the token)
and ``no-store``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import faust.web
import msgspec
from aiohttp import web
from aiokafka.partitioner import DefaultPartitioner

from sinks.links import CHART_PATH, PAGE_PATH, Claim, LinkError, LinkExpired, LinkSigner
from streams.alert_chart import AlertCharts, ChartUnavailable
from streams.schemas import Feedback, parse_alert_id

log = logging.getLogger("opsmon.feedback_page")

MAX_FORM_BYTES = 4096
ACTION_TEXT = {"ack": ("Acknowledge", "acknowledged", "Someone is on it: the detector keeps this incident out of "
                       "what it learns as normal."),
               "false_positive": ("Mark as false positive", "marked false positive",
                                  "The series needs a rarer value to alert again, and the alert resolves.")}

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f3f4f6}
main{max-width:40rem;margin:0 auto;padding:1rem}
.card{background:#fff;border-radius:12px;padding:1rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.badge{display:inline-block;font-size:.8rem;font-weight:600;letter-spacing:.04em;text-transform:uppercase;
 padding:.15rem .5rem;border-radius:999px;background:#e5e7eb;margin:0}
.critical{background:#fde2e1;color:#a11}.warning{background:#fff1d6;color:#8a5300}.info{background:#e0ecff;color:#124}
h1{font-size:1.25rem;margin:.5rem 0 .25rem;overflow-wrap:anywhere}
.where{color:#555;margin:0 0 .75rem;font-size:.9rem;overflow-wrap:anywhere}
.nums{display:grid;grid-template-columns:repeat(2,1fr);gap:.5rem;margin:0 0 .75rem}
.nums div{background:#f3f4f6;border-radius:8px;padding:.4rem .5rem}
.nums dt{font-size:.75rem;color:#555}.nums dd{margin:0;font-weight:600;font-size:1.15rem;overflow-wrap:anywhere}
.nums dd.band{font-weight:400;font-size:.8rem;color:#555}
.why{margin:0 0 .75rem}
img{display:block;width:100%;height:auto;border-radius:8px;border:1px solid #e5e7eb;margin:0 0 1rem}
.nochart{color:#555;font-size:.9rem}
button{width:100%;min-height:3rem;font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;
 border-radius:10px;padding:.75rem 1rem}
button.false_positive{background:#b91c1c}
.small{color:#555;font-size:.85rem;margin:.75rem 0 0}
.done{border-left:6px solid #15803d}.refused{border-left:6px solid #b91c1c}
a{color:#1d4ed8}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
SECURITY_HEADERS = {
    # no script at all; the one inline style by its hash; the form posts only back to us
    "Content-Security-Policy": f"default-src 'none'; img-src 'self'; style-src 'sha256-{_STYLE_HASH}'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}


class UsedLinks(Protocol):
    """Where applied (alert, action) pairs are recorded (a changelogged table in the worker)."""

    def get(self, key: str) -> dict | None:
        """The record of a used (alert, action), if any."""

    def record(self, key: str, value: dict, group: str) -> None:
        """Record a used (alert, action) beside the alert (of place ``group``)."""


@dataclass
class MemoryUsedLinks:
    """Used links held in a dict (unit tests; the worker uses its changelogged table)."""

    data: dict[str, dict] = field(default_factory=dict)

    def get(self, key: str) -> dict | None:
        """The record of a used (alert, action), if any."""
        return self.data.get(key)

    def record(self, key: str, value: dict, group: str) -> None:  # noqa: ARG002
        """Record a used (alert, action)."""
        self.data[key] = value


@dataclass
class FeedbackPages:
    """The link page, its confirmation and the chart, over the worker's alert index and feedback topic."""

    signer: LinkSigner
    lookup: Callable[[str], dict | None]  # alert id -> its alert index record
    submit: Callable[[Feedback], Awaitable[None]]  # queue on the feedback topic, acknowledged
    used: UsedLinks
    charts: AlertCharts | None
    clock: Callable[[], float]
    # False while the worker recovers its tables or rebalances: the used-links record may not be back yet
    ready: Callable[[], bool] = lambda: True
    pending: set[str] = field(default_factory=set)  # confirmations in flight (double taps)
    confirmed: int = 0
    refused: int = 0

    # ------------------------------------------------------------------ handlers
    async def page(self, request: web.Request) -> web.Response:
        """GET: the alert and a confirm button; changes nothing."""
        claim, alert, refusal = self._check(request.query.get("t", ""), page=True)
        if refusal is not None:
            return refusal
        assert claim is not None and alert is not None
        return self._html(200, *_alert_page(alert, claim, request.query["t"],
                                            self.signer.token(claim.alert_id, "view", self.clock(), claim.by)))

    async def confirm(self, request: web.Request) -> web.Response:
        """POST: apply the link's action once, through the feedback topic."""
        if (request.content_length or 0) > MAX_FORM_BYTES:
            return self._refuse(413, "Too large", "This request is larger than a confirmation can be; nothing changed.")
        form = await request.post()
        token = form.get("t", "")
        claim, alert, refusal = self._check(token if isinstance(token, str) else "", page=True)
        if refusal is not None:
            return refusal
        assert claim is not None and alert is not None
        key = f"{claim.alert_id}|{claim.action}"
        if key in self.pending:
            return self._used(claim, {"by": claim.by, "at": self.clock()})
        self.pending.add(key)  # before the first await: a second tap meanwhile is refused above
        try:
            at = self.clock()
            fb = Feedback(alert_id=claim.alert_id, kind=claim.action, at=at,  # type: ignore[arg-type]
                          user=claim.by, note="one-click link")
            try:
                await self.submit(fb)
            except Exception as exc:  # noqa: BLE001 - the person gets a page, the log the error
                log.error("feedback from a link not queued for %s: %s", claim.alert_id, exc)
                return self._refuse(503, "Not recorded", "The monitor could not record this just now; nothing "
                                    "changed. Try the link again in a minute.")
            self.used.record(key, {"by": claim.by, "at": at}, alert.get("group", ""))
        finally:
            self.pending.discard(key)
        self.confirmed += 1
        log.info("feedback from a link: %s %s by %s", claim.action, claim.alert_id, claim.by or "-")
        _, verb, effect = ACTION_TEXT[claim.action]
        who = f" by {claim.by}" if claim.by else ""
        return self._html(200, "Recorded", f"""<div class="card done">
<h1>Thank you: {_e(_what(alert))} is {verb}{_e(who)}</h1>
<p class="why">{_e(effect)}</p>
<p class="small">Recorded at {_e(_when(at))}. You can close this page.</p></div>""")

    async def chart(self, request: web.Request) -> web.Response:
        """GET: the alert's chart as PNG (any valid link of the alert shows it)."""
        claim, alert, refusal = self._check(request.query.get("t", ""), page=False)
        if refusal is not None:
            return refusal
        assert alert is not None
        if self.charts is None:
            return self._text(404, "no chart: the worker has no time-series server to draw from")
        try:
            png = await self.charts.png(alert)
        except ChartUnavailable as exc:
            return self._text(503, f"chart unavailable: {exc}")
        return web.Response(body=png, content_type="image/png", headers=SECURITY_HEADERS)

    def routes(self) -> list[web.RouteDef]:
        """The routes, for an aiohttp application."""
        return [web.get(PAGE_PATH, self.page), web.post(PAGE_PATH, self.confirm), web.get(CHART_PATH, self.chart)]

    # ------------------------------------------------------------------ checks and answers
    def _check(self, token: str, page: bool) -> tuple[Claim | None, dict | None, web.Response | None]:
        """The claim and alert of a usable link, or the page refusing it."""
        if not self.ready():
            return None, None, self._refuse(503, "Starting", "The monitor is starting or moving work between its "
                                            "workers: try again in a minute; nothing changed.", page)
        try:
            claim = self.signer.verify(token, self.clock())
        except LinkExpired as exc:
            return None, None, self._refuse(410, "Link expired", f"{str(exc).capitalize()}; nothing changed. Use "
                                            "the links of a newer notification, or the dashboard.", page)
        except LinkError as exc:
            return None, None, self._refuse(403, "Link not valid", f"{str(exc).capitalize()}; nothing changed.",
                                            page)
        if page and claim.action == "view":
            return None, None, self._refuse(403, "Link not valid", "This link shows the chart only; nothing changed.",
                                            page)
        alert = self.lookup(claim.alert_id)
        if alert is None:
            return None, None, self._refuse(404, "Alert not found", "This monitor does not know this alert (any "
                                            "more); nothing changed.", page)
        used = self.used.get(f"{claim.alert_id}|{claim.action}") if page else None
        if used is not None:
            return None, None, self._used(claim, used)
        return claim, alert, None

    def _used(self, claim: Claim, used: dict) -> web.Response:
        verb = ACTION_TEXT[claim.action][1]
        who = f" by {used['by']}" if used.get("by") else ""
        return self._refuse(409, "Already recorded", f"This alert was already {verb}{who} at {_when(used['at'])}; "
                            "nothing changed.")

    def _refuse(self, status: int, title: str, message: str, page: bool = True) -> web.Response:
        self.refused += 1
        if not page:
            return self._text(status, message)
        return self._html(status, title, f"""<div class="card refused"><h1>{_e(title)}</h1>
<p class="why">{_e(message)}</p></div>""")

    @staticmethod
    def _html(status: int, title: str, body: str) -> web.Response:
        doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)} · opsmon</title>
<style>{STYLE}</style></head>
<body><main>
{body}
</main></body></html>
"""
        return web.Response(status=status, text=doc, content_type="text/html", charset="utf-8",
                            headers=SECURITY_HEADERS)

    @staticmethod
    def _text(status: int, message: str) -> web.Response:
        return web.Response(status=status, text=message + "\n", headers=SECURITY_HEADERS)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _when(t: float) -> str:
    return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(x: Any) -> str:
    return f"{float(x):.4g}" if x is not None else "–"


def _what(alert: dict) -> str:
    return f"{alert['metric']} of {alert['entity']}"


def _alert_page(alert: dict, claim: Claim, token: str, view_token: str) -> tuple[str, str]:
    """(title, body) of the page showing an alert and the button confirming the link's action."""
    button, _, effect = ACTION_TEXT[claim.action]
    severity = alert.get("severity", "")
    state = "resolved" if alert.get("status") == "resolved" else "firing"
    runbook = alert.get("runbook", "")
    more = f' · <a href="{_e(runbook)}" rel="noreferrer">runbook</a>' if runbook.startswith("https://") else ""
    by = f" as {claim.by}" if claim.by else ""
    where = f'{alert.get("source", "")} · {alert.get("group", "")} · since {_when(alert["starts_at"])}'
    body = f"""<div class="card">
<p class="badge {_e(severity)}">{_e(severity)} · {state}</p>
<h1>{_e(_what(alert))}: {_e(alert.get("kind", ""))}</h1>
<p class="where">{_e(where)}</p>
<dl class="nums"><div><dt>Observed</dt><dd>{_num(alert.get("observed"))}</dd></div>
<div><dt>Expected</dt><dd>{_num(alert.get("expected"))}</dd>
<dd class="band">usual {_num(alert.get("lower"))} to {_num(alert.get("upper"))}</dd></div></dl>
<p class="why">{_e(alert.get("explanation", ""))}{more}</p>
<img src="{_e(CHART_PATH.rsplit('/', 1)[1])}?t={_e(view_token)}" width="750" height="390"
 alt="{_e(_what(alert))} around the alert: observed values, the expected band and the flagged points">
<form method="post" action="{_e(PAGE_PATH.rsplit('/', 1)[1])}">
<input type="hidden" name="t" value="{_e(token)}">
<button type="submit" class="{_e(claim.action)}">{_e(button)}{_e(by)}</button></form>
<p class="small">{_e(effect)} Nothing changes until you press the button.</p></div>"""
    return f"{_what(alert)}: {button}", body


def feedback_key(fb: Feedback) -> bytes:
    """The feedback topic's key of a feedback message: its entity, as ``POST /opsmon/feedback`` keys it."""
    return parse_alert_id(fb.alert_id)[1].encode()


def encode_feedback(fb: Feedback) -> bytes:
    """The feedback topic's value of a feedback message."""
    return msgspec.json.encode(fb)


def add_feedback_pages(app: faust.App, signer: LinkSigner, alert_index: faust.Table, feedback_topic: faust.TopicT,
                       charts: AlertCharts | None, clock: Callable[[], float]) -> FeedbackPages:
    """Serve the link page and the chart from the worker's web server; used links go to a changelogged table."""
    table = app.Table("feedback-links", default=None, partitions=alert_index.partitions)

    class TableUsedLinks:
        # Written through its store plus an explicit changelog send, as the alert index is (see the alerts agent).
        def get(self, key: str) -> dict | None:
            return table.data.get(key)

        def record(self, key: str, value: dict, group: str) -> None:
            # the partition the alerts agent wrote the alert's index record to (alert events are keyed by group)
            parts = list(range(table.partitions or 1))
            table.data[key] = value
            table.send_changelog(partitioner(group.encode(), parts, parts), key, value)

    partitioner = app.conf.producer_partitioner or DefaultPartitioner()

    async def submit(fb: Feedback) -> None:
        sent = await feedback_topic.send(key=feedback_key(fb), value=encode_feedback(fb))
        await sent  # acknowledged by Kafka before the person is told it is recorded

    def ready() -> bool:
        return app.tables.recovery.completed.is_set() and not app.rebalancing and not app.in_recovery

    pages = FeedbackPages(signer, alert_index.data.get, submit, TableUsedLinks(), charts, clock, ready)

    @app.page(PAGE_PATH)
    class LinkView(faust.web.View):
        """The page of a one-click link (GET) and its confirmation (POST)."""

        async def get(self, request: web.Request) -> web.Response:
            return await pages.page(request)

        async def post(self, request: web.Request) -> web.Response:
            return await pages.confirm(request)

    @app.page(CHART_PATH)
    class ChartView(faust.web.View):
        """An alert's chart."""

        async def get(self, request: web.Request) -> web.Response:
            return await pages.chart(request)

    return pages
