"""Scoring alerts against a simulator's ground truth: per fault kind, detected or not, time to detect,
and false alerts per hour. Pure functions over plain records (the truth file's rows, alert events).

A firing alert *detects* a fault when it names the same source and entity, a metric the fault shows in
(or ``reporting`` for faults that silence a device), and starts between the fault's start and its end plus
``tolerance_s`` (a silence alert starts at the last reading, so up to ``SILENCE_SLACK_S`` before the fault;
a POS or web alert at the start of its window, so up to ``WINDOW_SLACK_S`` before). Alerts matching no
fault, and not explained by a known business event (a promotion), are false alerts. Faults before
``evaluate_from`` fall in the models' warm-up and are not scored. An alert announced again (escalated) is
still one alert. ``pages`` keeps what reached on-call: alerts at a paging severity, as of the moment they
reached it.

>>> truth = [{"kind": "spike", "fault": True, "source": "iot", "entity": "s/d", "metrics": ["temperature"],
...           "start_ts": 1000.0, "end_ts": 1300.0}]
>>> alerts = [{"status": "firing", "source": "iot", "entity": "s/d", "metric": "temperature", "starts_at": 1060.0},
...           {"status": "firing", "source": "iot", "entity": "s/x", "metric": "humidity", "starts_at": 5000.0}]
>>> r = evaluate(truth, alerts, evaluate_from=0.0, evaluate_to=3600.0 * 2)
>>> r.kinds["spike"].detected, r.kinds["spike"].times_to_detect, r.false_alerts, r.false_alerts_per_hour
(1, [60.0], 1, 0.5)
>>> outage = [{**truth[0], "kind": "dropout"}]
>>> silence = [{"status": "firing", "source": "iot", "entity": "s/d", "metric": "reporting", "starts_at": 995.0}]
>>> evaluate(outage, silence, 0.0, 7200.0).kinds["dropout"].detected
1
>>> burst = [{**truth[0], "kind": "error_burst", "source": "web", "entity": "shop", "metrics": ["error_rate"]}]
>>> window = [{"status": "firing", "source": "web", "entity": "shop", "metric": "error_rate", "starts_at": 960.0}]
>>> r = evaluate(burst, window, 0.0, 7200.0)  # its minute began 40 s before the burst did, within it
>>> r.kinds["error_burst"].detected, r.kinds["error_burst"].times_to_detect, r.false_alerts
(1, [0.0], 0)
>>> weak = {**alerts[0], "id": "a", "severity": "info"}
>>> grown = {**weak, "severity": "warning", "escalated_from": "info", "escalated_at": 1200.0}
>>> evaluate(truth, [weak, grown], 0.0, 7200.0).false_alerts  # one alert, announced twice
0
>>> paged = pages([weak, grown], boards_only=("info",))
>>> [(a["severity"], a["starts_at"]) for a in paged]  # paged when it grew
[('warning', 1200.0)]
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SILENCE_METRIC = "reporting"
TOLERANCE_S = 1800.0
SILENCE_SLACK_S = 300.0  # longest usual gap between readings that the evaluation allows for
WINDOWED_SOURCES = ("pos", "web")  # judged per window, whose alerts are dated at the window's start
WINDOW_SLACK_S = 60.0  # the window (opsmon's default)


@dataclass
class KindResult:
    """Detection of one fault kind."""

    faults: int = 0
    detected: int = 0
    times_to_detect: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        """Share of faults detected."""
        return self.detected / self.faults if self.faults else 0.0

    @property
    def median_ttd(self) -> float | None:
        """Median seconds from fault start to its first alert."""
        return statistics.median(self.times_to_detect) if self.times_to_detect else None


@dataclass
class DetectionReport:
    """Per-kind detection plus false alerts over the evaluated period."""

    kinds: dict[str, KindResult]
    false_alerts: int
    hours: float
    business_alerts: int = 0  # alerts during known business events (promotions): neither true nor false
    unmatched: list[Mapping] = field(default_factory=list)

    @property
    def false_alerts_per_hour(self) -> float:
        """False alerts per evaluated hour."""
        return self.false_alerts / self.hours if self.hours else 0.0

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {"kinds": {k: {"faults": r.faults, "detected": r.detected, "recall": round(r.recall, 3),
                              "median_ttd_s": r.median_ttd} for k, r in sorted(self.kinds.items())},
                "false_alerts": self.false_alerts, "hours": round(self.hours, 2),
                "false_alerts_per_hour": round(self.false_alerts_per_hour, 3),
                "business_alerts": self.business_alerts}


def _matches(fault: Mapping, alert: Mapping, tolerance_s: float) -> bool:
    if alert["source"] != fault["source"] or alert["entity"] != fault["entity"]:
        return False
    metrics = fault.get("metrics") or []
    if metrics and alert["metric"] not in metrics and alert["metric"] != SILENCE_METRIC:
        return False
    # a silence alert starts at the device's last reading, which comes just before the outage; a window's
    # alert at its window's start, up to a window before the fault began within it
    slack = SILENCE_SLACK_S if alert["metric"] == SILENCE_METRIC else (
        WINDOW_SLACK_S if alert["source"] in WINDOWED_SOURCES else 0.0)
    return fault["start_ts"] - slack <= alert["starts_at"] <= fault["end_ts"] + tolerance_s


def explained_by(truth: Iterable[Mapping], alert: Mapping, tolerance_s: float = TOLERANCE_S) -> Mapping | None:
    """The first fault, or else known business event, that ``alert`` matches; None: a false alert.

    >>> row = {"kind": "spike", "fault": True, "source": "iot", "entity": "s/d", "metrics": ["temperature"],
    ...        "start_ts": 1000.0, "end_ts": 1300.0}
    >>> alert = {"source": "iot", "entity": "s/d", "metric": "temperature", "starts_at": 1060.0}
    >>> explained_by([row], alert)["kind"], explained_by([row], {**alert, "starts_at": 9000.0})
    ('spike', None)
    """
    rows = list(truth)
    for want_fault in (True, False):
        for row in rows:
            if row.get("fault", True) == want_fault and _matches(row, alert, tolerance_s):
                return row
    return None


def _first_firing(alerts: Iterable[Mapping]) -> list[Mapping]:
    """The first firing event of each alert (an escalated alert is announced again under the same id)."""
    seen: set = set()
    first = []
    for a in alerts:
        key = a.get("id") or id(a)
        if a["status"] == "firing" and key not in seen:
            seen.add(key)
            first.append(a)
    return first


def pages(alerts: Iterable[Mapping], boards_only: Iterable[str]) -> list[dict]:
    """The alerts that paged: the first announcement of each at a paging severity, dated when it was made."""
    skip = set(boards_only)
    paging = [a for a in alerts if a["status"] == "firing" and a["severity"] not in skip]
    return [{**a, "starts_at": a.get("escalated_at") or a["starts_at"]} for a in _first_firing(paging)]


def evaluate(truth: Iterable[Mapping], alerts: Iterable[Mapping], evaluate_from: float, evaluate_to: float,
             tolerance_s: float = TOLERANCE_S) -> DetectionReport:
    """Match firing alerts to faults that start in [evaluate_from, evaluate_to)."""
    rows = list(truth)
    faults = [f for f in rows if f.get("fault", True) and evaluate_from <= f["start_ts"] < evaluate_to]
    business = [f for f in rows if not f.get("fault", True)]
    firing = [a for a in _first_firing(alerts) if evaluate_from <= a["starts_at"] < evaluate_to]
    kinds: dict[str, KindResult] = {}
    used: set[int] = set()
    for f in faults:
        kr = kinds.setdefault(f["kind"], KindResult())
        kr.faults += 1
        hits = [i for i, a in enumerate(firing) if _matches(f, a, tolerance_s)]
        if hits:
            kr.detected += 1
            kr.times_to_detect.append(max(0.0, min(firing[i]["starts_at"] for i in hits) - f["start_ts"]))
            used.update(hits)
    rest = [a for i, a in enumerate(firing) if i not in used]
    explained = [a for a in rest if any(_matches(b, a, tolerance_s) for b in business)]
    unmatched = [a for a in rest if a not in explained]
    # Faults before the evaluated period can still alert inside it; those alerts are neither true nor false.
    early = [f for f in rows if f.get("fault", True) and f["start_ts"] < evaluate_from]
    unmatched = [a for a in unmatched if not any(_matches(f, a, tolerance_s) for f in early)]
    return DetectionReport(kinds, len(unmatched), (evaluate_to - evaluate_from) / 3600.0, len(explained),
                           unmatched)
