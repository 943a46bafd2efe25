"""Simulated on-call staff for scenario runs: each page is answered as a person who looked into it would.

A page that a fault explains is acknowledged (someone is on it: the detector does not learn the incident as
ordinary); a page that nothing explains is marked a false positive (the series needs a rarer anomaly to page
again); a page during a known business event (a promotion) is left alone, as people would. Only pages count,
the alerts at a paging severity: board-only alerts reach no one. Each alert is answered once, when it is first
announced at a paging severity.

>>> staff = OnCall(boards_only=("info",))
>>> truth = [{"kind": "overheat", "fault": True, "source": "iot", "entity": "s/d", "metrics": ["temperature"],
...           "start_ts": 1000.0, "end_ts": 4000.0}]
>>> real = {"id": "a", "status": "firing", "severity": "warning", "source": "iot", "entity": "s/d",
...         "metric": "temperature", "starts_at": 1500.0}
>>> wrong = {**real, "id": "b", "entity": "s/e"}
>>> board = {**real, "id": "c", "severity": "info"}
>>> staff.answer([real, wrong, board], truth, before=2000.0)
[('a', 'ack'), ('b', 'false_positive')]
>>> staff.answer([real, wrong], truth, before=3000.0), staff.acks, staff.false_positives
([], 1, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from models.detection_eval import explained_by


@dataclass
class OnCall:
    """Answers pages from the ground truth; counts what it said."""

    boards_only: tuple[str, ...]
    answered: set[str] = field(default_factory=set)
    said: list[tuple[str, str]] = field(default_factory=list)  # (alert id, what they said), in order
    acks: int = 0
    false_positives: int = 0

    def answer(self, alerts: Iterable[Mapping], truth: Iterable[Mapping], before: float) -> list[tuple[str, str]]:
        """(alert id, ``ack`` or ``false_positive``) for each new page announced before ``before``."""
        rows = list(truth)
        said: list[tuple[str, str]] = []
        for a in alerts:
            announced = a.get("escalated_at") or a["starts_at"]
            if (a["status"] != "firing" or a["severity"] in self.boards_only or a["id"] in self.answered
                    or announced >= before):
                continue
            self.answered.add(a["id"])
            row = explained_by(rows, a)
            if row is None:
                said.append((a["id"], "false_positive"))
                self.false_positives += 1
            elif row.get("fault", True):
                said.append((a["id"], "ack"))
                self.acks += 1
        self.said += said
        return said
