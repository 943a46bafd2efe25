"""The decision on a calibrated score: threshold, events, escalation and daily recurrence, in one place.

A detector (``SeriesDetector``, or any River model behind ``CalibratedDetector``) returns a calibrated score: 0.5
is a one-in-a-hundred rarity on its series. ``AlertFilter`` (River's ``AnomalyFilter``) decides what is news:

- ``classify(score)``: the score reaches ``threshold`` (River's filter idiom);
- a flag opens an *event*: no new flag until ``refractory`` unremarkable values have passed (one alert per event;
  alerting adds its own hysteresis), unless the event escalates: a score ``escalate`` decades rarer than the worst
  the event has shown so far is news (a dip that turns into an outage) and is flagged again;
- a series that stops (``STOPPED``: a run of zeros where it is busy, a reading repeated) is an incident of its own,
  not the continuation of a departure: inside an event that a departure opened (a burst, a surge) it ends that event
  and opens its own, flagged. An outage that begins minutes after a burst was flagged would otherwise wait out the
  burst's refractory period, its evidence climbing value by value, too gradually ever to escalate;
- an event that starts at the same time of day (within a quarter of an hour) as events of its kind (the series
  stopping, or a departure) on at least ``RECUR_MIN`` of the last ``RECUR_DAYS`` days is a daily recurrence (a
  nightly job's load), not news: it opens an event without a flag, unless it is ``escalate`` decades rarer than
  those it repeats. (A detector with a daily profile would adopt such a recurrence in time, but only slowly, as it
  holds off rare values; meanwhile it would alert every day or two. Two earlier days, not one, so that a fault that
  happens to start at the time of one earlier event is still flagged; of its kind, so that an outage is no routine
  because bursts happened at that time.) Only for detectors with a time-of-day profile: on coarser data every value
  is "at the same time".
- people confirm an alert (``confirm``): the detector takes the event's evidence back out, so a fault that recurs
  until fixed keeps alerting, and the event does not make the same time tomorrow a routine.

The detector tells the filter what it needs through a few attributes and methods (``anchor``: the next value only
starts it; ``calendar``: when its series is shut; ``assess`` and ``absorb``: score, then learn; ``open_event``,
``close_event``, ``unlearn_event``: an event's evidence; ``recurrence_period``, ``settled``, ``warmed_up``): it scores
and learns, the filter decides.

>>> from models.anomaly import SeriesDetector
>>> det = AlertFilter(SeriesDetector(period=None, warmup=50))
>>> for i in range(300):
...     v = det.process_one(20.0 + (i % 7) * 0.1)
>>> v.is_anomaly, v.warming_up
(False, False)
>>> v = det.process_one(35.0)
>>> v.is_anomaly, v.reason, det.classify(v.score)
(True, 'level', True)
>>> det.process_one(36.0).is_anomaly  # the same event
False
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from river import base

from models.anomaly import DROPOUT, FLAG_DECADES, STUCK, Verdict

RECUR_DAYS = 7
RECUR_MIN = 2
_RECUR_TOL = 1.0 / 96.0  # of the period
_RECUR_KEEP = 32  # recent events remembered for recurrences
# Surprises that say the series has stopped (zeros where it is busy, one reading repeated): an incident of their own
STOPPED = frozenset((DROPOUT, STUCK))

_tuple_new = tuple.__new__  # builds a Verdict (as its own __new__ does) without one more Python call per value


class AlertFilter(base.AnomalyFilter):
    """Decides on a calibrated detector's scores: River's ``classify``, and events for the stream (see the module).

    Parameters
    ----------
    anomaly_detector
        A calibrated detector: ``SeriesDetector``, or a River model behind ``CalibratedDetector``.
    threshold
        Score at which a value is flagged (0.5: one in a hundred on its series); 0.6 or 0.7 for fewer, surer alerts.
    refractory
        Unremarkable values (score below the threshold) after a flag before a new flag is raised.
    escalate
        Within that time, a score this many decades rarer than the event's worst so far is flagged all the same
        (the event has escalated); ``math.inf`` disables it.
    protect_anomaly_detector
        As in River: ``learn_one`` does not teach the detector an anomalous value. ``process_one`` always lets the
        detector learn: opsmon's holds its own baseline against rare values.
    """

    kind = ""  # surprise that opened the event or last flagged in it (a class default: states pickled before it)

    def __init__(self, anomaly_detector: Any, threshold: float = 0.5, refractory: int = 150, escalate: float = 1.0,
                 protect_anomaly_detector: bool = False) -> None:
        super().__init__(anomaly_detector, protect_anomaly_detector)
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.refractory = refractory
        self.escalate = escalate
        self.quiet = 0  # unremarkable values to go before a new flag
        self.worst = 0.0  # rarity (decades) of the open event's worst score
        self.event_t: float | None = None  # time of the flag that opened the latest event
        # (time, decades, whether the series stopped) of recent events, for recurrences (states pickled before the
        # third item hold pairs: departures)
        self.recent: list[tuple[float, float, bool]] = []
        self.confirmed = False  # people said the open event is real: it is not learned as ordinary

    def classify(self, score: float) -> bool:
        """Whether a calibrated score is anomalous (reaches the threshold)."""
        return score >= self.threshold

    def learn_one(self, *args: Any, **learn_kwargs: Any) -> None:
        """Update the detector (unless ``protect_anomaly_detector`` and the value is anomalous)."""
        if not self.protect_anomaly_detector or not self.classify(self.score_one(*args)):
            self.anomaly_detector.learn_one(*args, **learn_kwargs)

    # ---------------------------------------------------------------- what the stream reads
    @property
    def warmed_up(self) -> bool:
        """True once the detector may flag."""
        return self.anomaly_detector.warmed_up

    @property
    def n(self) -> int:
        """Values the detector learned."""
        return self.anomaly_detector.n

    @property
    def spec(self) -> str:
        """The configured expression of a River model (``models.river_spec``); ``opsmon`` for opsmon's detector."""
        spec = getattr(self.anomaly_detector, "spec", None)  # opsmon's detector has none
        return "opsmon" if spec is None else spec

    @property
    def rarity_unit(self) -> str:
        """What a score's rarity is counted in (values, or ticks for a series sampled faster)."""
        return getattr(self.anomaly_detector, "rarity_unit", "values")

    def score_value(self, y: float, t: float | None = None, pattern_t: float | None = None) -> float:
        """The detector's calibrated score of ``y`` at ``t``, without learning it (a late window re-scored)."""
        return self.anomaly_detector.score_value(y, t, pattern_t)

    def process_one(self, x: float, t: float | None = None, is_open: bool = True,
                    pattern_t: float | None = None) -> Verdict:
        """Score ``x``, decide, then let the detector learn it: what the stream calls once per value.

        When closed (``is_open=False``, or the detector's calendar says so at ``t``) the value is neither scored nor
        learned: a shut shop's zero takings are not news, nor the new normal. ``pattern_t``: the time whose daily
        pattern ``x`` should follow, when not ``t``'s own (see ``SeriesDetector``).
        """
        det = self.anomaly_detector
        warming = not det.warmed_up
        cal = det.calendar  # (read here rather than through a method: this runs for every value)
        if not is_open or (cal is not None and t is not None and not cal.is_open(t)):
            return Verdict(0.0, False, x, math.nan, math.nan, math.nan, "closed", warming)
        if not math.isfinite(x):  # a NaN would poison every average for good: neither scored nor learned
            return Verdict(0.0, False, x, math.nan, math.nan, math.nan, "invalid", warming)
        if det.anchor:  # the first value (re)starts the detector's level: nothing to judge it against
            det.learn_value(x, t)
            return Verdict(0.0, False, x, x, x, x, "", warming)
        assessed = det.assess(x, t, pattern_t)
        score = assessed[0]
        th = self.threshold
        flag = False
        if score >= th or self.quiet:  # otherwise (most values) no event opens, goes on or ends
            decades = FLAG_DECADES * score / (1.0 - score) if score < 1.0 else math.inf
            reason = assessed[1]
            stops = self.quiet and reason in STOPPED and self.kind not in STOPPED  # the series stops, in an event
            flag = (score >= th and not warming
                    and (self.quiet == 0 or stops or decades >= self.worst + self.escalate))
            if flag and (self.quiet == 0 or stops):  # a new event
                if stops:  # the departure's event ends here
                    det.close_event(self.confirmed)
                    self.confirmed = False
                self.kind = reason
                if t is not None and self._recurs(t, decades, reason in STOPPED):
                    flag = False  # the last days' event again: it opens an event, silently
                    self.quiet = self.refractory
                    self.worst = decades
                else:  # its evidence is recorded, should people confirm it
                    det.open_event()
                    self.event_t, self.confirmed = t, False
            if self.quiet:
                if score < th:  # one flag per event: its end starts the count
                    self.quiet -= 1
                    if self.quiet == 0:  # the event is over
                        det.close_event(self.confirmed)
                        self.confirmed = False
                if decades > self.worst:
                    self.worst = decades
            elif warming and score >= th and t is not None and det.settled:
                # an event while warming up is not flagged, but is remembered: a daily job seen on the first
                # days is a recurrence once the detector may flag
                self._recurs(t, decades, reason in STOPPED)
                self.quiet = 1
                self.worst = decades
                self.kind = reason
            if flag:
                self.quiet = self.refractory
                self.worst = decades
        expected, lower, upper = det.absorb(x, t, assessed, th)
        # not Verdict(...): the NamedTuple's generated __new__ is one more Python call per value
        return _tuple_new(Verdict, (score, flag, x, expected, lower, upper,
                                    assessed[1] if score >= 0.5 * th else "", warming))

    def confirm(self, start: float) -> bool:
        """People confirmed that the alert opened at ``start`` was real: the event is not learned as ordinary.

        The detector takes the latest event's evidence back out (and, while it lasts, its further evidence); it does
        not make the same time tomorrow a daily recurrence either. False when ``start`` is not from the latest event
        (its record is gone), or the detector keeps no such record (a River model).
        """
        if self.event_t is None or start < self.event_t:
            return False
        recording = self.anomaly_detector.unlearn_event()
        if recording is None:
            return False
        self.confirmed = recording
        self.recent = [e for e in self.recent if e[0] != self.event_t]  # nor is it a daily routine
        return True

    def _recurs(self, t: float, decades: float, stopped: bool = False) -> bool:
        """Whether an event starting at ``t`` with rarity ``decades`` repeats the last days' at that time of day.

        Every event is remembered, flagged or silenced, so a daily recurrence stays silent day after day. ``stopped``:
        the series stops (``STOPPED``); such an event repeats only events that stopped it too, and a departure only
        departures: an outage at 14:00 is no routine because bursts happened at 14:00 on two of the last days.
        """
        p = self.anomaly_detector.recurrence_period
        if not p:
            return False
        tol = _RECUR_TOL * p
        recent = [e for e in self.recent if t - e[0] <= RECUR_DAYS * p + tol]
        days = set()
        for e in recent:
            te, de = e[0], e[1]
            k = round((t - te) / p)
            if (1 <= k <= RECUR_DAYS and abs(t - te - k * p) <= tol and decades < de + self.escalate
                    and (len(e) > 2 and e[2]) == stopped):
                days.add(k)
        recurs = len(days) >= RECUR_MIN
        recent.append((t, decades, stopped))
        self.recent = recent[-_RECUR_KEEP:]
        return recurs

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """A filter over opsmon's detector, and over a calibrated River model."""
        from models.anomaly import SeriesDetector
        from models.calibrated import CalibratedDetector

        yield {"anomaly_detector": SeriesDetector()}
        yield {"anomaly_detector": CalibratedDetector(), "threshold": 0.6, "escalate": math.inf}
