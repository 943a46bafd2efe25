"""The alert event: what the stream produces and the alert sinks deliver (the alerts topic's schema).

It lives with the sinks, which the stream may import, so that no sink needs to import the stream.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class AlertEvent(msgspec.Struct, kw_only=True):
    """An alert opening or resolving, as written to the alerts topic (keyed by its group)."""

    v: int = 1
    id: str  # "source:entity:metric:start", stable across re-sends
    status: Literal["firing", "resolved"]
    severity: Literal["critical", "warning", "info"]
    source: str
    entity: str
    group: str  # the place: IoT site, store, web site; alerts of one group form incidents
    metric: str
    kind: str  # what drove it: spike, level, shift, flat, cluster, silence
    score: float
    observed: float
    expected: float
    lower: float
    upper: float
    explanation: str
    runbook: str
    dashboard: str
    starts_at: float
    ends_at: float | None = None
    note: str = ""
    incident: str = ""
    first_cause: str = ""
    # Set on the re-announcement of an open alert whose score grew into a higher severity.
    escalated_from: Literal["", "warning", "info"] = ""
    escalated_at: float | None = None
