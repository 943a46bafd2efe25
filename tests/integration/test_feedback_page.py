"""One-click feedback, end to end: an alert reaches the test's webhook through the real Alertmanager with signed
links; its "false positive" link opens in headless Chromium (Debian's, driven by Playwright), the confirm button
resolves the alert and changes the series' model; altered, expired and used links change nothing."""

from __future__ import annotations

import base64
import math
import os
import random
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import msgspec
import pytest
from playwright.sync_api import BrowserContext, sync_playwright
from pydantic import SecretStr

from opsmon.feedback import link_signer
from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, raw
from tests.integration.harness import WebhookReceiver, WorkerProcess, read_topic
from tests.tsdb import eventually

STEP = 300.0
ENTITY = "link-site/freezer-1"
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; the rest keep it from reaching the network on its own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# OPSMON_UPDATE_SCREENSHOTS=1 pytest tests/integration/test_feedback_page.py
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "feedback-page.png"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """A phone-sized headless Chromium with a fresh profile."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run deploy/install-system-deps.sh (Debian's chromium package)")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True, has_touch=True)
        try:
            yield ctx
        finally:
            ctx.close()


def _publish(settings: Settings, t0: float, values: list[float]) -> float:
    site, device = ENTITY.split("/")
    with Publisher(settings) as pub:
        for i, x in enumerate(values):
            pub.send_raw("iot", ENTITY, raw(iot(t0 + i * STEP, site, device, temperature=x)))
    return t0 + (len(values) - 1) * STEP


def _token(url: str) -> str:
    return parse_qs(urlparse(url).query)["t"][0]


def _altered(token: str) -> str:
    """The token with another alert id in its payload, the signature kept."""
    head, sig = token.split(".")
    payload = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).replace(b"freezer-1", b"freezer-2")
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + sig


def test_the_false_positive_link_of_a_notification_resolves_the_alert_in_a_real_browser(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess], webhook: WebhookReceiver,
        browser: BrowserContext) -> None:
    port = pipeline_settings.worker_web_port
    s = pipeline_settings.model_copy(update={
        "alert_resend_seconds": 5.0, "link_secret": SecretStr("integration-test-link-secret"),
        "public_url": f"http://127.0.0.1:{port}"})
    worker = worker_factory(s)
    rng = random.Random(3)
    t0 = float(int(time.time()) // 3600 * 3600 - 6 * 86400)
    normal = [4.0 + 0.5 * math.sin(2 * math.pi * i * STEP / 86400) + rng.gauss(0, 0.1) for i in range(600)]
    last = _publish(s, t0, normal)
    assert eventually(lambda: (worker.stats() or {}).get("iot", {}).get("events", 0) >= 600, bool, timeout=60)
    _publish(s, last + STEP, [15.0])  # and no reading after it: the alert stays open

    def firing() -> list[dict]:
        return [a for a in webhook.alerts("firing") if a["labels"]["entity"] == ENTITY
                and ":temperature:" in a["annotations"]["alert_id"]]

    alerts = eventually(firing, bool, timeout=60)
    assert alerts, worker.log_tail(30)
    ann = alerts[0]["annotations"]
    alert_id = ann["alert_id"]
    fp_url, image_url = ann["false_positive_url"], ann["image_url"]
    assert fp_url.startswith(f"http://127.0.0.1:{port}/opsmon/link?t=") and "ack_url" in ann

    def stats() -> dict:
        return (worker.stats() or {}).get("alerts", {})

    page = browser.new_page()
    # An altered link and an expired one: a clear page, no button, nothing changes.
    signer = link_signer(s)
    assert signer is not None
    expired = signer.token(alert_id, "false_positive", now=time.time() - 2 * s.link_ttl_seconds)
    for token, status, says in ((_altered(_token(fp_url)), 403, "This link is not valid"),
                                (expired, 410, "This link expired at")):
        resp = page.goto(f"http://127.0.0.1:{port}/opsmon/link?t={token}")
        assert resp is not None and resp.status == status
        assert says in page.inner_text("main") and page.locator("form").count() == 0
        posted = httpx.post(f"http://127.0.0.1:{port}/opsmon/link", data={"t": token}, timeout=10)
        assert posted.status_code == status and "nothing changed" in posted.text
    time.sleep(3)  # time enough for feedback to reach the model, had any been sent
    assert stats()["feedback_applied"] == 0
    assert read_topic(s, s.topic_feedback, expect=1, timeout=3) == []
    assert not [a for a in webhook.alerts("resolved") if a["annotations"]["alert_id"] == alert_id]

    # The link from the notification: the alert and its chart, a button; only the button changes anything.
    resp = page.goto(fp_url)
    assert resp is not None and resp.status == 200
    headers = resp.headers
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store" and "set-cookie" not in headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert page.context.cookies() == []
    text = page.inner_text("main")
    assert f"temperature of {ENTITY}: " in text and "Observed\n15" in text, text
    chart = httpx.get(image_url, timeout=30)
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png", chart.text
    assert struct.unpack(">II", chart.content[16:24]) == (750, 390)
    assert page.eval_on_selector("img", "i => i.complete && i.naturalWidth") == 750, "the page shows the chart"
    assert httpx.get(image_url, timeout=30).content == chart.content, "rendered once, then served as is"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling on a phone"
    shot = page.screenshot(full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", shot[16:24])[0] == 750
    if os.environ.get("OPSMON_UPDATE_SCREENSHOTS"):  # the docs' picture, refreshed on request, not on every run
        SCREENSHOT.write_bytes(shot)
    time.sleep(2)
    assert stats()["feedback_applied"] == 0, "opening the link changed nothing"

    page.click("button[type=submit]")
    assert "Thank you" in page.inner_text("main") and "marked false positive" in page.inner_text("main")
    (msg,) = read_topic(s, s.topic_feedback, expect=1, timeout=30)
    fb = msgspec.json.decode(msg.value)
    assert (fb["alert_id"], fb["kind"]) == (alert_id, "false_positive")

    # the use is recorded beside the alert: the partition of its place's alert events
    (used,) = read_topic(s, f"{s.app_id}-feedback-links-changelog", expect=1, timeout=30)
    assert {r.partition for r in read_topic(s, s.topic_alerts, expect=1, timeout=10)
            if r.key == ENTITY.split("/")[0].encode()} == {used.partition}

    resolved = eventually(lambda: [a for a in webhook.alerts("resolved")
                                   if a["annotations"]["alert_id"] == alert_id], bool, timeout=60)
    assert resolved and "marked false positive" in resolved[-1]["annotations"]["note"], resolved
    applied = eventually(stats, lambda a: a.get("feedback_applied") == 1, timeout=30)
    assert applied["feedback_to_models"] == 1, f"the series' model learned from it: {applied}"

    # Used: the same link again (a second tap, a forwarded message) changes nothing, even after a restart.
    again = page.goto(fp_url)
    assert again is not None and again.status == 409 and "already marked false positive" in page.inner_text("main")
    worker.stop()
    worker = worker_factory(s)
    # Until its tables are back the restarted worker refuses every link (503), so none slips through meanwhile.
    seen = eventually(lambda: httpx.get(fp_url, timeout=10), lambda r: r.status_code != 503, timeout=60)
    assert seen.status_code == 409, seen.text
    replay = httpx.post(f"http://127.0.0.1:{port}/opsmon/link", data={"t": _token(fp_url)}, timeout=10)
    assert replay.status_code == 409 and "already marked false positive" in replay.text, replay.text
    assert len(read_topic(s, s.topic_feedback, expect=2, timeout=3)) == 1
