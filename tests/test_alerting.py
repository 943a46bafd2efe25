"""The alert policy of one series (``models.alerting.SeriesAlerts``): what opens, resolves and is held."""

from __future__ import annotations

from models.alerting import SeriesAlerts


def test_a_held_flag_leaves_the_latest_alerts_scores_alone() -> None:
    # A false positive raised the bar; a weaker flag is held to see whether it lasts. People then mark the
    # alert before it false too: the bar must rise above *that* alert's peak, not the held flag's score.
    a = SeriesAlerts(cooldown_s=0.0)
    a.false_positive(t=0.0, score=0.55)
    assert a.observe(t=60.0, score=0.9, flagged=True) == "open"  # clearly rarer: opens despite the bar
    assert [a.observe(t=t, score=0.1, flagged=False) for t in (120.0, 180.0, 240.0)][-1] == "resolve"
    assert a.observe(t=300.0, score=0.6, flagged=True) is None and a.held_since == 300.0
    a.false_positive(t=330.0, score=a.open_score)
    assert a.fp_floor > 0.9


def test_a_held_flag_that_lasts_opens_with_its_own_scores() -> None:
    a = SeriesAlerts(cooldown_s=0.0, persist_s=300.0)
    a.false_positive(t=0.0, score=0.7)
    assert a.observe(t=60.0, score=0.6, flagged=True) is None
    transitions = [a.observe(t=60.0 + 60 * i, score=s, flagged=False) for i, s in enumerate((0.5, 0.65, 0.4, 0.4, 0.4),
                                                                                             start=1)]
    assert transitions[-1] == "open" and a.open_since == 60.0
    assert (a.open_score, a.peak_score) == (0.6, 0.65)
