"""One-click feedback links: tokens (sign, verify, expiry, tampering), the links in notifications, and the
page's answers and headers, served by aiohttp's test server (only time is faked)."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from typer.testing import CliRunner

from opsmon.cli import app as cli
from opsmon.feedback import link, link_signer
from opsmon.settings import Settings
from sinks.alerts import WebhookSink, alertmanager_alerts
from sinks.links import LinkExpired, LinkInvalid, LinkSigner
from streams.alert_chart import ChartUnavailable, parse_series, render_png
from streams.feedback_page import SECURITY_HEADERS, FeedbackPages, MemoryUsedLinks
from streams.schemas import AlertEvent, Feedback
from tests.integration.harness import WebhookReceiver

T = 1_800_000_000.0
SECRET = b"a-test-secret-of-at-least-16-bytes"
AID = f"iot:site-1/freezer-1:temperature:{T:.0f}"


def _signer(ttl: float = 86400.0) -> LinkSigner:
    return LinkSigner(SECRET, "https://ops.example.com/monitor", ttl_s=ttl)


def _event(**kw: object) -> AlertEvent:
    fields: dict = dict(id=AID, status="firing", severity="critical", source="iot", entity="site-1/freezer-1",
                        group="site-1", metric="temperature", kind="spike", score=0.93, observed=15.0,
                        expected=4.1, lower=3.6, upper=4.6, explanation="temperature of site-1/freezer-1 is 15, "
                        "expected 3.6 to 4.6", runbook="https://wiki.example.com/freezer", dashboard="",
                        starts_at=T)
    return AlertEvent(**{**fields, **kw})


def _token(url: str) -> str:
    return parse_qs(urlparse(url).query)["t"][0]


# ---------------------------------------------------------------------------------------------- tokens
def test_a_token_verifies_until_it_expires_and_names_alert_action_and_person() -> None:
    s = _signer(ttl=3600)
    token = s.token(AID, "ack", now=T, by="alice")
    claim = s.verify(token, now=T + 3600)
    assert (claim.alert_id, claim.action, claim.by, claim.expires) == (AID, "ack", "alice", int(T + 3600))
    with pytest.raises(LinkExpired, match="expired at 2027-01-15 09:00:00 UTC"):
        s.verify(token, now=T + 3601)


@pytest.mark.parametrize("change", ["alert", "action", "expiry", "person", "signature", "secret"])
def test_any_change_to_a_token_makes_it_invalid(change: str) -> None:
    s = _signer()
    token = s.token(AID, "ack", now=T, by="alice")
    head, sig = token.split(".")
    payload = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()
    action, expires, by, aid = payload.split("|", 3)
    forged = {"alert": f"{action}|{expires}|{by}|iot:other/x:temperature:{T:.0f}",
              "action": f"false_positive|{expires}|{by}|{aid}",
              "expiry": f"{action}|{int(expires) + 10**6}|{by}|{aid}",
              "person": f"{action}|{expires}|mallory|{aid}"}.get(change)
    if forged is not None:
        tampered = base64.urlsafe_b64encode(forged.encode()).rstrip(b"=").decode() + "." + sig
    elif change == "signature":
        raw = bytearray(base64.urlsafe_b64decode(sig + "="))
        raw[0] ^= 1
        tampered = head + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    else:
        tampered = LinkSigner(b"another-secret-of-16-bytes", s.public_url).token(AID, "ack", now=T, by="alice")
    with pytest.raises(LinkInvalid, match="not valid"):
        s.verify(tampered, now=T)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.???", "." * 3000, "YWNr.AAAA"])
def test_garbage_is_an_invalid_link_not_a_crash(garbage: str) -> None:
    with pytest.raises(LinkInvalid):
        _signer().verify(garbage, now=T)


def test_bad_signer_settings_are_refused_with_the_fault_named() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LinkSigner(b"short", "https://x")
    with pytest.raises(ValueError, match="http:// or https://"):
        LinkSigner(SECRET, "ops.example.com")
    with pytest.raises(ValueError, match="action must be one of"):
        _signer().token(AID, "delete", now=T)
    with pytest.raises(ValidationError, match="link_secret\n.*must be at least 16 bytes"):
        Settings(link_secret="short")  # the worker does not start with it
    with pytest.raises(ValueError, match="OPSMON_LINK_SECRET / OPSMON_PUBLIC_URL: .*http:// or https://"):
        link_signer(Settings(link_secret=SECRET.decode(), public_url="ops.example.com"))


def test_links_follow_the_settings_and_are_off_without_a_secret() -> None:
    assert link_signer(Settings()) is None
    with pytest.raises(ValueError, match="set OPSMON_LINK_SECRET"):
        link(Settings(), AID, "ack")
    s = Settings(link_secret=SECRET.decode(), public_url="https://ops.example.com", link_ttl_seconds=600)
    url = link(s, AID, "false_positive", by="bob", now=T)
    assert url.startswith("https://ops.example.com/opsmon/link?t=")
    claim = link_signer(s).verify(_token(url), now=T + 600)  # type: ignore[union-attr]
    assert (claim.action, claim.by, claim.expires) == ("false_positive", "bob", int(T + 600))
    local = link_signer(Settings(link_secret=SECRET.decode(), worker_web_port=6123))
    assert local is not None and local.public_url == "http://127.0.0.1:6123"
    assert SECRET.decode() not in repr(s) and SECRET.decode() not in str(s.link_secret)  # never in logs


def test_the_cli_prints_a_link_naming_a_person() -> None:
    env = {"OPSMON_LINK_SECRET": SECRET.decode(), "OPSMON_PUBLIC_URL": "https://ops.example.com"}
    out = CliRunner().invoke(cli, ["alerts", "link", AID, "--action", "ack", "--by", "alice"], env=env)
    assert out.exit_code == 0, out.output
    claim = _signer().verify(_token(out.output.strip()), now=time.time())  # the CLI signs at the real time
    assert out.output.startswith("https://ops.example.com/opsmon/link?t=") and (claim.action, claim.by) == (
        "ack", "alice")
    chart = CliRunner().invoke(cli, ["alerts", "link", AID, "--action", "chart"], env=env)
    assert chart.exit_code == 0 and "/opsmon/chart.png?t=" in chart.output
    bad = CliRunner().invoke(cli, ["alerts", "link", AID, "--action", "delete"], env=env)
    assert bad.exit_code == 2 and "--action must be one of ack, false-positive, chart" in bad.output
    off = CliRunner().invoke(cli, ["alerts", "link", AID], env={"OPSMON_LINK_SECRET": ""})
    assert off.exit_code == 2 and "set OPSMON_LINK_SECRET" in off.output


def test_notifications_carry_the_three_links_under_the_public_url() -> None:
    s = _signer()
    (am,) = alertmanager_alerts(_event(), now=T + 60, resend_s=60, links=s)
    ann = am["annotations"]
    assert ann["ack_url"].startswith("https://ops.example.com/monitor/opsmon/link?t=")
    assert ann["image_url"].startswith("https://ops.example.com/monitor/opsmon/chart.png?t=")
    for key, action in (("ack_url", "ack"), ("false_positive_url", "false_positive"), ("image_url", "view")):
        claim = s.verify(_token(ann[key]), now=T + 60)
        assert (claim.alert_id, claim.action, claim.expires) == (AID, action, int(T + 60 + 86400))
    # a very long alert id is not cut: its link still verifies
    long_id = f"iot:site-1/{'x' * 600}:temperature:{T:.0f}"
    (am,) = alertmanager_alerts(_event(id=long_id), now=T, resend_s=60, links=s)
    assert s.verify(_token(am["annotations"]["false_positive_url"]), now=T).alert_id == long_id
    assert "ack_url" not in alertmanager_alerts(_event(), now=T, resend_s=60)[0]["annotations"]


def test_the_plain_webhook_gets_the_links_in_its_json() -> None:
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    hook = WebhookReceiver(url)
    s = _signer()

    async def deliver() -> None:
        sink = WebhookSink(url, links=s)
        await sink.send([_event()], now=T)
        await sink.close()

    try:
        asyncio.run(deliver())
        (body,) = hook.bodies
        assert body["id"] == AID and sorted(body["links"]) == ["ack_url", "false_positive_url", "image_url"]
        assert s.verify(_token(body["links"]["false_positive_url"]), now=T).action == "false_positive"
    finally:
        hook.close()


# ---------------------------------------------------------------------------------------------- the page
class _World:
    """The page over an alert index, a record of what was queued, and a settable clock."""

    def __init__(self) -> None:
        self.now = T + 60
        self.queued: list[Feedback] = []
        self.index = {AID: msgspec.to_builtins(_event())}
        self.pages = FeedbackPages(_signer(), self.index.get, self._submit, MemoryUsedLinks(), None,
                                   lambda: self.now)

    async def _submit(self, fb: Feedback) -> None:
        self.queued.append(fb)


def _run(test: Callable[[TestClient, _World], Awaitable[None]]) -> None:
    async def main() -> None:
        world = _World()
        app = web.Application()
        app.add_routes(world.pages.routes())
        async with TestClient(TestServer(app)) as client:
            await test(client, world)
    asyncio.run(main())


def test_the_page_shows_the_alert_and_changes_nothing_until_the_button_posts() -> None:
    async def check(client: TestClient, w: _World) -> None:
        token = w.pages.signer.token(AID, "false_positive", now=w.now, by="alice")
        resp = await client.get("/opsmon/link", params={"t": token})
        body = await resp.text()
        assert resp.status == 200, body
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers[name] == value
        assert "Set-Cookie" not in resp.headers and "<script" not in body
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "temperature of site-1/freezer-1: spike" in body and "expected 3.6 to 4.6" in body
        assert ">15<" in body and ">4.1<" in body and "usual 3.6 to 4.6" in body
        assert re.search(r'<form method="post" action="link">', body)
        assert "Mark as false positive as alice" in body
        img = re.search(r'<img src="chart\.png\?t=([^"]+)"', body)
        assert img and w.pages.signer.verify(img.group(1), now=w.now).action == "view"
        assert w.queued == [], "a GET (a link previewer) changes nothing"
        again = await client.get("/opsmon/link", params={"t": token})
        assert again.status == 200 and w.queued == []
    _run(check)


def test_a_confirmed_link_queues_feedback_once_and_a_replay_changes_nothing() -> None:
    async def check(client: TestClient, w: _World) -> None:
        token = w.pages.signer.token(AID, "false_positive", now=w.now, by="alice")
        done = await client.post("/opsmon/link", data={"t": token})
        assert done.status == 200 and "marked false positive by alice" in await done.text()
        assert done.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in done.headers
        (fb,) = w.queued
        assert (fb.alert_id, fb.kind, fb.user, fb.at) == (AID, "false_positive", "alice", w.now)
        replay = await client.post("/opsmon/link", data={"t": token})
        assert replay.status == 409 and "already marked false positive by alice" in await replay.text()
        # another link for the same alert and action (a later notification's) is used up too
        other = w.pages.signer.token(AID, "false_positive", now=w.now + 120)
        assert (await client.get("/opsmon/link", params={"t": other})).status == 409
        assert (await client.post("/opsmon/link", data={"t": other})).status == 409
        # acknowledging is another action: still possible
        ack = await client.post("/opsmon/link", data={"t": w.pages.signer.token(AID, "ack", now=w.now)})
        assert ack.status == 200 and [f.kind for f in w.queued] == ["false_positive", "ack"]
    _run(check)


def test_expired_altered_unknown_and_chart_only_links_get_a_clear_page_and_change_nothing() -> None:
    async def check(client: TestClient, w: _World) -> None:
        s = w.pages.signer
        expired = s.token(AID, "ack", now=w.now - 86401)
        tampered = s.token(AID, "ack", now=w.now)[:-3] + "xyz"
        unknown = s.token(f"iot:nowhere/x:temperature:{T:.0f}", "ack", now=w.now)
        view = s.token(AID, "view", now=w.now)
        for token, status, text in ((expired, 410, "This link expired at"), (tampered, 403, "not valid"),
                                    ("", 403, "not valid"), (unknown, 404, "does not know this alert"),
                                    (view, 403, "chart only")):
            for resp in (await client.get("/opsmon/link", params={"t": token}),
                         await client.post("/opsmon/link", data={"t": token})):
                body = await resp.text()
                assert resp.status == status and text in body and "nothing changed" in body, (token, body)
                assert resp.headers["X-Frame-Options"] == "DENY" and "<form" not in body
        too_big = await client.post("/opsmon/link", data={"t": "x" * 10_000})
        assert too_big.status == 413
        assert w.queued == []
        assert (await client.get("/opsmon/chart.png", params={"t": view})).status == 404  # no server to draw from
        assert (await client.get("/opsmon/chart.png", params={"t": tampered})).status == 403
    _run(check)


# ---------------------------------------------------------------------------------------------- the chart
def _query_answer(n: int = 40, flagged_at: int = 30) -> dict:
    values = [[int((T + (i - n) * 300) * 1000), 15.0 if i == flagged_at else 4.0 + 0.01 * i, 4.0, 3.5, 4.5,
               1.0 if i == flagged_at else 0.0] for i in range(n)]
    return {"results": [{"statement_id": 0, "series": [{"name": "anomaly_score", "columns": [
        "time", "observed", "expected", "lower", "upper", "is_anomaly"], "values": values}]}]}


def test_a_chart_is_a_phone_sized_png_of_the_series_band_and_flagged_points() -> None:
    series = parse_series(_query_answer())
    assert len(series.times) == 40 and series.flagged.count(True) == 1 and max(series.observed) == 15.0
    png = render_png(series, "temperature of site-1/freezer-1", opened=T - 10 * 300)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (750, 390)


def test_a_query_answer_without_points_or_with_an_error_is_chart_unavailable() -> None:
    with pytest.raises(ChartUnavailable, match="no scored points"):
        parse_series({"results": [{"statement_id": 0}]})
    with pytest.raises(ChartUnavailable, match="refused the query: database not found"):
        parse_series({"results": [{"statement_id": 0, "error": "database not found: opsmon"}]})
