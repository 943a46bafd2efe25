"""When a stream of verdicts becomes an alert, stays one, and is resolved; and which alerts are one incident.

Pure Python, no I/O; the state pickles into the entity's Faust table entry, so a restarted worker neither
re-pages nor forgets an open alert.

``SeriesAlerts`` (one per entity and metric) turns verdicts into ``open``/``resolve`` transitions with
- hysteresis: opens on a flag (score >= the detector's threshold), resolves only after ``resolve_after``
  consecutive scores below ``resolve_below``, so a series hovering at the edge does not flap;
- cooldown: no new alert for ``cooldown_s`` after one resolved;
- people's feedback: a false positive raises the score needed to open for that series to just above the
  score of the alert that was wrong, for ``fp_memory_s`` (a week); a clearly stronger anomaly still alerts,
  and so does a weaker one that lasts ``persist_s`` (a blip like the one people dismissed passes, a checkout
  that stays broken does not), as a ``warning`` dated from its start;
- withdrawal: when late data corrects the value that opened an alert and it is no longer anomalous;
- escalation: an open alert whose score grows into a higher severity is announced again with it, and a
  weak (``info``) alert still open after ``persist_s`` becomes a ``warning``: a boards-only alert that
  turns out serious, or lasting (a checkout failing for minutes), still pages.

>>> a = SeriesAlerts()
>>> a.observe(t=0, score=0.9, flagged=True)
'open'
>>> [a.observe(t=i, score=0.1, flagged=False) for i in (60, 120, 180)]
[None, None, 'resolve']
>>> a.observe(t=240, score=0.95, flagged=True) is None  # within the cooldown
True
>>> a.observe(t=1200, score=0.55, flagged=True), a.severity
('open', 'info')
>>> a.observe(t=1260, score=0.7, flagged=False), a.severity  # still open, and now worth a page
('escalate', 'warning')
>>> b = SeriesAlerts(persist_s=300)
>>> b.observe(t=0, score=0.52, flagged=True), b.observe(t=240, score=0.4, flagged=False)
('open', None)
>>> b.observe(t=300, score=0.4, flagged=False), b.severity  # weak, but it lasts
('escalate', 'warning')
>>> c = SeriesAlerts(persist_s=300, cooldown_s=0)
>>> c.false_positive(t=0, score=0.55)
>>> c.observe(t=60, score=0.55, flagged=True), c.observe(t=120, score=0.1, flagged=False)  # the same blip
(None, None)
>>> [c.observe(t=t, score=0.1, flagged=False) for t in (180, 240, 360, 420)]  # passed: nothing to announce
[None, None, None, None]
>>> c.held_since is None
True
>>> c.observe(t=1000, score=0.55, flagged=True), [c.observe(t=t, score=0.4, flagged=False) for t in (1100, 1200, 1300)]
(None, [None, None, 'open'])
>>> c.open_since, c.severity
(1000, 'warning')
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ((0.8, "critical"), (0.6, "warning"), (0.0, "info"))
SEVERITY_ORDER = tuple(name for _, name in reversed(SEVERITIES))  # lowest first


def severity(score: float) -> str:
    """``critical`` from 0.8, ``warning`` from 0.6, else ``info``.

    >>> severity(0.85), severity(0.6), severity(0.51)
    ('critical', 'warning', 'info')
    """
    return next(name for floor, name in SEVERITIES if score >= floor)


def severity_rank(name: str) -> int:
    """0 for ``info``, 1 for ``warning``, 2 for ``critical``: for routing by a minimum severity."""
    return SEVERITY_ORDER.index(name)


@dataclass
class SeriesAlerts:
    """Alert state of one series (entity and metric)."""

    resolve_below: float = 0.3
    resolve_after: int = 3
    cooldown_s: float = 900.0
    persist_s: float = 300.0  # an info alert open this long is a warning
    # After a false positive a new alert must be rarer by this factor in decades (and by one decade at
    # least): scores map to rarity as decades = d * s / (1 - s), d = the detector's FLAG_DECADES.
    fp_margin: float = 0.1
    decades: float = 2.0
    fp_memory_s: float = 7 * 86400.0
    open_since: float | None = None  # start of the open alert (time of the value that opened it)
    last_start: float = 0.0  # start of the latest alert, open or not (names it when it resolves)
    open_score: float = 0.0
    peak_score: float = 0.0
    calm: int = 0  # consecutive calm values while open
    resolved_at: float = -1e18
    fp_floor: float = 0.0  # score an alert must beat after a false positive
    fp_at: float = -1e18
    severity: str = "info"  # severity the open (or latest) alert was announced with
    held_since: float | None = None  # a flag below the false-positive floor: it opens only if it lasts
    held_seen: float = 0.0  # time of its latest value (a gap in the data is not "lasting")
    held_n: int = 0  # values since, still anomalous (``resolve_after`` of them at least, at any sampling rate)
    held_hot: float = 0.0  # time of the latest of them
    held_score: float = 0.0  # its flag's score and its peak so far (the latest alert's scores stay its own,
    held_peak: float = 0.0  # for a false positive people mark on it meanwhile)

    def required(self, t: float) -> float:
        """Score an alert must exceed to open now: raised for ``fp_memory_s`` after a false positive."""
        return self.fp_floor if t - self.fp_at < self.fp_memory_s else 0.0

    def observe(self, t: float, score: float, flagged: bool) -> str | None:
        """Fold in one verdict; returns ``"open"``, ``"escalate"``, ``"resolve"`` or None."""
        if self.open_since is None:
            if flagged and t - self.resolved_at >= self.cooldown_s:
                if score > self.required(t):
                    self.open_since, self.open_score, self.peak_score, self.calm = t, score, score, 0
                    self.last_start = t
                    self.severity = severity(score)
                    return "open"
                self.held_since, self.held_seen, self.held_hot, self.held_n = t, t, t, 0
                self.held_score = self.held_peak = score
                return None
            if self.held_since is None:
                return None
            if t - self.held_seen > self.persist_s:  # no data for as long: whether it lasted is unknown
                self.held_since = None
                return None
            self.held_seen = t
            self.held_peak = max(self.held_peak, score)
            if score < self.resolve_below:
                if t - self.held_hot >= self.persist_s:  # calm for as long: a blip, like the one people dismissed
                    self.held_since = None
                return None
            self.held_n += 1
            self.held_hot = t
            # still anomalous ``persist_s`` on, and on ``resolve_after`` values at least on the way
            if t - self.held_since >= self.persist_s and self.held_n >= self.resolve_after:
                self.open_since = self.last_start = self.held_since
                self.open_score, self.peak_score = self.held_score, self.held_peak
                self.held_since, self.calm = None, 0
                self.severity = max(severity(self.peak_score), "warning", key=severity_rank)
                return "open"
            return None
        self.peak_score = max(self.peak_score, score)
        self.calm = self.calm + 1 if score < self.resolve_below else 0
        if self.calm >= self.resolve_after:
            self.open_since, self.resolved_at = None, t
            return "resolve"
        now = severity(self.peak_score)
        if now == "info" and t - self.open_since >= self.persist_s:
            now = "warning"
        if severity_rank(now) > severity_rank(self.severity):
            self.severity = now
            return "escalate"
        return None

    def open_now(self, t: float, score: float) -> None:
        """Open an alert decided elsewhere (missing data), bypassing the score rules."""
        self.open_since = self.last_start = t
        self.open_score = self.peak_score = score
        self.severity = severity(score)
        self.calm = 0

    def close_now(self, t: float) -> float | None:
        """Close the open alert (its cause went away); returns its start, None if none was open."""
        start = self.open_since
        if start is not None:
            self.open_since, self.resolved_at = None, t
        return start

    def withdraw(self, t: float) -> bool:
        """Close the open alert because the data that opened it was corrected; True if one was open."""
        if self.open_since is None:
            return False
        self.open_since, self.resolved_at = None, -1e18  # a withdrawn alert starts no cooldown
        return True

    def false_positive(self, t: float, score: float) -> None:
        """People said the alert with ``score`` was wrong: the same pattern must not alert again."""
        base = max(self.required(t), score)
        if base >= 1.0:
            self.fp_floor = 1.0
        else:
            dec = self.decades * base / (1.0 - base)
            dec += max(1.0, self.fp_margin * dec)
            self.fp_floor = dec / (dec + self.decades)
        self.fp_at = t
        if self.open_since is not None:
            self.open_since, self.resolved_at = None, t


@dataclass
class Incident:
    """Alerts of one place (site or store) close in time, with the earliest named as the likely cause."""

    id: str
    group: str
    started: float
    first_alert: str
    first_cause: str
    alerts: set[str] = field(default_factory=set)
    last_activity: float = 0.0


@dataclass
class IncidentTracker:
    """Groups the alerts of one place that open within ``window_s`` of another alert of the same incident.

    Alerts arrive in processing order, not event order (each source has its own agent), so an alert is
    placed by its own time among the place's recent incidents.

    >>> tr = IncidentTracker(window_s=600)
    >>> a = tr.assign("shop-1", "a1", "freezer temperature high", t=0)
    >>> b = tr.assign("shop-1", "a2", "revenue low", t=120)
    >>> c = tr.assign("shop-2", "a3", "error rate high", t=130)
    >>> a.id == b.id != c.id, b.first_cause
    (True, 'freezer temperature high')
    >>> tr.assign("shop-1", "a0", "power dropped", t=-60).first_cause  # processed late, happened first
    'power dropped'
    >>> tr.assign("shop-1", "old", "late report of last night", t=-9000).id != a.id  # its own incident
    True
    >>> tr.assign("shop-1", "a4", "checkout errors", t=300).id == a.id  # still the first incident
    True
    """

    window_s: float = 600.0
    open: dict[str, list[Incident]] = field(default_factory=dict)  # group -> its recent incidents

    def assign(self, group: str, alert_id: str, cause: str, t: float) -> Incident:
        """The incident an alert that opened at ``t`` belongs to (a new one if none is close in time)."""
        incidents = self.open.setdefault(group, [])
        inc = next((i for i in incidents if i.started - self.window_s <= t <= i.last_activity + self.window_s), None)
        if inc is None:
            inc = Incident(id=f"{group}@{int(t)}", group=group, started=t, first_alert=alert_id,
                           first_cause=cause, last_activity=t)
            incidents.append(inc)
        elif t < inc.started:  # the cause is the earliest in event time
            inc.started, inc.first_alert, inc.first_cause = t, alert_id, cause
        inc.alerts.add(alert_id)
        inc.last_activity = max(inc.last_activity, t)
        return inc

    def forget_before(self, t: float) -> None:
        """Drop incidents quiet since before ``t`` (bounded memory)."""
        for g in list(self.open):
            self.open[g] = [i for i in self.open[g] if i.last_activity >= t]
            if not self.open[g]:
                del self.open[g]
