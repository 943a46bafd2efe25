"""Three related alerts at one shop (freezer, sales, checkout) reach Alertmanager as one incident."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, pos, raw, web
from tests.integration.harness import WebhookReceiver, WorkerProcess
from tests.tsdb import eventually

SHOP = "inc-shop"
MINUTES = 1700  # a day to learn the daily profile, then the detectors' warm-up


def _history(pub: Publisher, t0: float, minutes: int, rng: random.Random, *, sales: bool = True,
             errors: float = 0.02, tag: str = "", warm: bool = False) -> None:
    for m in range(minutes):
        t = t0 + m * 60
        temp = 15.0 + rng.gauss(0, 0.1) if warm else 4.0 + 0.5 * math.sin(2 * math.pi * t / 86400) + rng.gauss(0, 0.1)
        pub.send_raw("iot", f"{SHOP}/freezer", raw(iot(t, SHOP, "freezer", temperature=temp)))
        if sales:  # one to five sales a minute, three on average
            for k in range(rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5])):
                pub.send_raw("pos", SHOP, raw(pos(t + 5 + k * 10, f"{tag}{m}-{k}", store=SHOP)))
        for k in range(4):
            err = rng.random() < errors
            pub.send_raw("web", SHOP, raw(web(t + 3 + k * 10, f"s{m}-{k % 2}", "error" if err else "page_view",
                                              site=SHOP, status=500 if err else 200)))


def test_three_related_alerts_at_one_shop_are_one_incident_naming_the_first_cause(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess], webhook: WebhookReceiver) -> None:
    s = pipeline_settings
    t0 = float(int(time.time()) // 86400 * 86400 - 5 * 86400)
    worker = worker_factory(s)
    rng = random.Random(7)
    with Publisher(s) as pub:
        _history(pub, t0, MINUTES, rng)
    x = t0 + MINUTES * 60
    with Publisher(s) as pub:
        # The freezer warms first; a minute later the tills stop (the power circuit they share trips; in the
        # same minute the two alerts would tie in event time) and two minutes after that the web shop's
        # checkout, which reserves stock at the shop, starts failing. The tills
        # come back after a quarter of an hour; the freezer and the checkout are still broken.
        _history(pub, x, 1, rng, errors=0.0, warm=True, tag="warm")  # a minute before the tills stop
        _history(pub, x + 60, 2, rng, sales=False, errors=0.0, warm=True)
        _history(pub, x + 180, 12, rng, sales=False, errors=0.9, warm=True)
        _history(pub, x + 15 * 60, 2, rng, errors=0.9, warm=True, tag="after")

    def firing() -> dict[str, dict]:
        """The first alert of each source at the shop since the freezer warmed (history may hold others)."""
        first: dict[str, dict] = {}
        for a in sorted(webhook.alerts("firing"), key=lambda a: a["startsAt"]):
            started = float(a["annotations"]["alert_id"].rsplit(":", 1)[1])
            if a["labels"]["group"] == SHOP and started >= x:
                first.setdefault(a["labels"]["source"], a)
        return first

    alerts = eventually(firing, lambda f: set(f) == {"iot", "pos", "web"}, timeout=180)
    assert set(alerts) == {"iot", "pos", "web"}, f"alerts per source: {sorted(alerts)}; {worker.log_tail(20)}"
    incidents = {a["labels"]["incident"] for a in alerts.values()}
    assert len(incidents) == 1, f"one incident, not {incidents}"
    (incident,) = incidents
    assert incident.startswith(f"{SHOP}@")
    # The id names the alert the worker processed first: IoT and web arrive on topics of their own, so the
    # web shop's alert may be processed before the freezer's. The first cause is the earliest in event time.
    # Notifications are grouped by incident; the latest one for it names the freezer as the first cause.
    ours = [n for n in webhook.bodies if n.get("groupLabels") == {"incident": incident}]
    assert ours and {a["labels"]["source"] for n in ours for a in n["alerts"]} >= {"iot", "pos", "web"}
    assert "temperature of inc-shop/freezer" in ours[-1]["alerts"][-1]["annotations"]["first_cause"]
