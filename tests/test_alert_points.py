"""The ``alert`` points the boards read: a close always sorts after the opening it closes."""

from __future__ import annotations

from sinks.events import AlertEvent
from streams.app import alert_points

START = 1_796_419_203.146


def _event(**kw: object) -> AlertEvent:
    base = dict(id=f"web:shop:errors:{START}", status="firing", severity="warning", source="web", entity="shop",
                group="shop", metric="errors", kind="level", score=0.9, observed=5.0, expected=1.0, lower=0.0,
                upper=2.0, explanation="", runbook="", dashboard="", starts_at=START)
    return AlertEvent(**{**base, **kw})  # type: ignore[arg-type]


def _time_and_open(point: str) -> tuple[int, str]:
    head, fields, ts = point.rsplit(" ", 2)
    return int(ts), [f for f in fields.split(",") if f.startswith("open=")][0]


def test_an_alert_withdrawn_in_the_instant_it_opened_closes_after_its_opening() -> None:
    (opened,) = alert_points(_event())
    (withdrawn,) = alert_points(_event(status="resolved", ends_at=START))  # late data corrected its window
    (t_open, is_open), (t_close, is_closed) = _time_and_open(opened), _time_and_open(withdrawn)
    assert (is_open, is_closed) == ("open=1.0", "open=0.0")
    # last("open") over both series must see the close: a later timestamp, not a tie
    assert t_close == t_open + 1


def test_a_later_close_and_an_escalation_keep_their_own_times() -> None:
    (closed,) = alert_points(_event(status="resolved", ends_at=START + 600))
    assert _time_and_open(closed) == (int((START + 600) * 1000), "open=0.0")
    fired, former = alert_points(_event(severity="critical", escalated_from="warning", escalated_at=START))
    assert _time_and_open(fired) == (int(START * 1000), "open=1.0") and "severity=critical" in fired
    assert _time_and_open(former) == (int(START * 1000) + 1, "open=0.0") and "severity=warning" in former
