"""Anomaly scoring in the stream: one detector and one alert policy per entity and metric.

An observer of :class:`streams.pipeline.SourcePipeline`: IoT readings are scored as they arrive; POS and
web windows once they are final (late corrections are re-scored without learning, and withdraw an alert
they no longer justify). Silence is a signal: a device that stops reporting raises a ``silence`` alert,
and a store or site with no events gets zero-valued windows, so a silent till reads as a drop in sales.
Closed hours (the business calendar) neither alert nor teach the model that zero is normal at noon; equipment
is watched around the clock, and judged on a day its site is shut as the site is when shut.
Ratios (error rate, conversion, refund rate, average basket) are judged once they rest on enough trials,
quiet minutes pooled (``MetricSpec.pooled``), and only a departure the harmful way alerts on metrics with a
good direction (``MetricSpec.harmful``): a night-time error in four requests, or an hour without errors, is
nobody's incident. A count ratio's count is judged too, against its usual rate (``MetricSpec.counted``): 9
errors of 36 requests is a broken checkout however often the shop's error rate jumped before. A limit the
business set (``models.limits``: pages slower than 1.5 s, a freezer above -15 °C) alerts whenever it is
crossed for as long as it says, whatever the series' history.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from models.alert_filter import AlertFilter
from models.alerting import SeriesAlerts, severity
from models.anomaly import FLAG_DECADES, SeriesDetector, Verdict
from models.calibrated import REASON as MODEL_REASON
from models.calibrated import CalibratedDetector
from models.limits import Limit, Limits, LimitWatch
from models.ratio import CountTail
from models.river_spec import OPSMON, ModelSpecs
from models.silence import SilenceWatch
from sinks.lineproto import line, point, series_head
from streams.pipeline import EntityState, Output
from streams.schemas import AlertEvent, alert_id
from streams.sources import SILENCE, SOURCES, MetricSpec, SourceSpec
from streams.state_codec import Frozen, SeriesFreezer, thaw

# What each source judges, and how (pooled ratios, harmful direction, counts, runbooks, boards), is declared
# once in ``streams.sources``; this module reads it.
REASONS = {"spike": "sudden jump", "level": "departure from the usual level", "shift": "sustained shift",
           "flat": "flat-lined (stuck) signal", "cluster": "burst of unusual values",
           "volatility": "unusually erratic signal (bursts, oscillation)", "silence": "silence",
           "count": "rare count for its usual rate", "limit": "limit crossed",
           "record": "value beyond its whole range of the past week",
           "dropout": "run of zeros (or its floor) where the series is busy",
           "stuck": "reading repeated exactly, on a series whose readings rarely repeat",
           MODEL_REASON: "rare score from its configured model"}
MAX_ZERO_WINDOWS_PER_TICK = 1440
FROZEN = "frozen"  # EntityState.models key of an idle entity's series, compressed (_freeze)


@dataclass
class ScoringConfig:
    """Knobs of the scoring observer."""

    threshold: float = 0.5
    warmup: int = 150
    window_warmup: int = 60
    score_every_s: float = 60.0  # how often an unremarkable IoT score is written per series
    silence_factor: float = 5.0  # a device is silent after this many of its usual intervals...
    min_silence_s: float = 120.0  # ...and at least this long
    grafana_url: str = "http://127.0.0.1:3000"
    window_size: int = 60
    window_grace: float = 10.0
    min_trials: float = 10.0  # a ratio (MetricSpec.pooled) is judged once it rests on this many trials...
    max_pool_s: float = 3600.0  # ...or once its windows span this long, however few
    limits: Limits = field(default_factory=Limits)  # bounds the business set (models.limits)
    # a device silent this long (event time), or one that usually reports less often, keeps its series as one
    # compressed pickle until its next value; 0: always decoded (see Scoring.on_tick)
    freeze_idle_s: float = 60.0
    models: ModelSpecs | None = None  # the River model of each series (models.river_spec); None: opsmon's own


@dataclass
class SeriesModel:
    """What is learned about one metric of one entity."""

    # the decision (models.alert_filter) on opsmon's detector or on a configured River model (models.calibrated);
    # None for the missing-data series, which only needs its alert state
    detector: AlertFilter | None
    alerts: SeriesAlerts = field(default_factory=SeriesAlerts)
    last_written: float = -1e18
    last_verdict: Verdict | None = None
    kind: str = ""  # the surprise the latest alert opened with: its resolution is named after it
    counts: CountTail | None = None  # a count ratio's count test (MetricSpec.counted); made on its first count
    judged: tuple[float, float] | None = None  # (successes, trials) of the ratio judged last (an alert cites them)
    limits: LimitWatch | None = None  # how long it has been beyond a limit the business set; made on first use
    # its anomaly_score points' line-protocol head, made on first use. Not pickled: a sleeping device does not keep
    # it (~270 bytes a series), and a changelog need not carry it.
    score_head: str = field(default="", compare=False, repr=False)

    def __getstate__(self) -> dict:
        if not self.score_head:
            return self.__dict__
        state = self.__dict__.copy()
        del state["score_head"]  # (the class attribute, "", stands in for it when unpickled)
        return state


def series_of(state: EntityState) -> dict[str, SeriesModel]:
    """An entity's series by metric, decoded first if it was idle (``_freeze``)."""
    m = state.models
    series = m.get("series")
    if series is None:
        series = m["series"] = {}
    frozen = m.pop(FROZEN, None)
    if frozen is not None:  # (plain bytes: restored from a changelog, or frozen by an older release)
        series.update(frozen.thaw() if isinstance(frozen, Frozen) else thaw(frozen))
    return series


def _typical_series() -> dict[str, SeriesModel]:
    """A device's series after a day and an hour at a five-minute cadence: what idle series are compressed against.

    Made from the code and a fixed random stream, so every worker makes the same; what it shares with real
    series is their layout (see ``streams.state_codec.SeriesFreezer``), whatever the values.
    """
    rng = random.Random(0)
    series: dict[str, SeriesModel] = {}
    for metric, level, swing, noise in (("temperature", 4.0, 1.5, 0.3), ("humidity", 55.0, 8.0, 2.0),
                                        ("power_w", 180.0, 40.0, 15.0)):
        detector = AlertFilter(SeriesDetector())
        for i in range(300):
            t = 1_700_000_000.0 + 300.0 * i
            detector.process_one(level + swing * math.sin(2.0 * math.pi * t / 86_400.0) + rng.gauss(0.0, noise), t)
        series[metric] = SeriesModel(detector)
    return series


# Level 4, not the changelog's 1: a device after a day takes 3.8 rather than 4.3 KB while it sleeps, for ~17 µs
# more per freeze (once per reading of a device that reports every minute or less often); levels above 4 cost
# twice that for a few bytes more.
_FREEZER = SeriesFreezer(_typical_series, level=4)


def _freeze(state: EntityState) -> None:
    """Keep an idle entity's series as one compressed pickle (under a tenth of their memory) until they are needed.

    A device reporting every few minutes spends most of its time waiting for its next reading, with ~60 KiB
    of detectors in objects; frozen they take one pickle compressed against a typical device's (``_FREEZER``),
    3.8-4.3 KB for three or four series after a day. Thawing costs about a checkpoint's pickling of the entity,
    once per value after an idle spell, and restores every float exactly, so when a series freezes never changes
    a score. The silence alert stays decoded: ticks read it.
    """
    series = state.models.get("series")
    if not series or (len(series) == 1 and SILENCE in series):
        return
    # (no earlier freeze to merge: anything that adds a series thaws it first, so series holds all of them)
    idle = {metric: sm for metric, sm in series.items() if metric != SILENCE}
    state.models[FROZEN] = _FREEZER.freeze(idle)
    if len(idle) == len(series):
        del state.models["series"]  # (an empty dict keeps the table it grew: ~0.2 KiB; series_of makes it again)
    else:
        for metric in idle:
            del series[metric]


def group_of(source: str, entity: str) -> str:
    """The place an entity belongs to: IoT ``site/device`` -> site; a store or web site is its own."""
    return SOURCES[source].group_of(entity)


class Scoring:
    """Detectors and alert policies for one source; state lives in each entity's ``models`` dict."""

    def __init__(self, source: str, config: ScoringConfig | None = None,
                 is_open: Callable[[str, float], bool] | None = None,
                 pattern_time: Callable[[str, float], float] | None = None) -> None:
        self.source = source
        self.spec: SourceSpec = SOURCES[source]
        self.cfg = config or ScoringConfig()
        # the business calendar (streams.calendar.Calendars): whether an entity is scored at t, and which
        # time of day a device's reading is judged like (a Sunday the site is shut: as at closing time)
        self.is_open = is_open or (lambda entity, t: True)
        self.pattern_time = pattern_time or (lambda entity, t: t)
        # Warmed-up detectors of each (group, metric), for new series to start from (memory only).
        self.priors: dict[tuple[str, str], SeriesDetector] = {}
        self._limits: dict[tuple[str, str], tuple[Limit, ...]] = {}  # (entity, metric) -> its limits (memory only)
        # asked for on every value, and fixed by the code's declarations: looked up once (memory only)
        self._groups: dict[str, str] = {}  # entity -> its place (SourceSpec.group_of)
        self._declared: dict[str, MetricSpec] = {}  # metric -> its declaration (harmful side, scale)

    def feedback(self, entity: str, state: EntityState | None, metric: str, kind: str, start: float, at: float,
                 user: str, out: Output) -> bool:
        """Apply what a person said about the alert of ``metric`` that opened at ``start``; True if a model changed.

        ``false_positive``: the series needs a rarer anomaly to alert again (and the alert, if still open, is
        resolved with a note). ``ack``: someone is on it, so it was real; the detector does not learn the
        incident as ordinary, and a fault that recurs until it is fixed keeps alerting. An alert a limit opened
        changes no model either way; a false positive closes it until its breach has ended.
        """
        sm = series_of(state).get(metric) if state is not None else None
        if sm is None:
            return False
        # a limit's alert changes no model: the limit is the business's setting (change OPSMON_LIMITS if it is wrong)
        by_limit = sm.kind == "limit" and sm.alerts.last_start == start
        if kind == "false_positive":
            # the series' own clock: a replay, or a worker catching up, judges values older than ``at``
            now = min(at, state.last_ts) if state.last_ts else at  # type: ignore[union-attr]
            was_open = sm.alerts.open_since == start
            if sm.limits is not None:
                sm.limits.dismiss()  # a limit it is beyond does not reopen it until the breach has ended
            if by_limit:
                sm.alerts.close_now(now)
            else:
                sm.alerts.false_positive(now, sm.alerts.peak_score if was_open else sm.alerts.open_score)
            if was_open and sm.last_verdict is not None:
                note = ": the limit stays as configured, and this breach does not alert again until it ends"
                self._alert(out, entity, metric, sm, "resolved", start, now, sm.last_verdict,
                            note=f"marked false positive by {user or 'on-call'}{note if by_limit else ''}")
            return not by_limit
        if by_limit or (sm.kind == "count" and sm.alerts.last_start == start):
            return False  # the count test opened it, and learns nothing from an incident anyway; nor does a limit
        return kind == "ack" and sm.detector is not None and sm.detector.confirm(start)

    # ------------------------------------------------------------------ observer interface
    def on_value(self, entity: str, state: EntityState, ts: float, values: dict[str, float], out: Output) -> None:
        """Score a reading's measurements, or a final window's fields."""
        if self.spec.windowed:
            self._window(entity, state, ts, values, out)
        else:
            self._reading(entity, state, ts, values, out)

    def on_tick(self, entity: str, state: EntityState, now: float, out: Output) -> None:
        """Silence: a device that stopped reporting; a store or site without windows gets zero windows."""
        if self.spec.windowed:
            self._zero_windows(entity, state, now, out)
        else:
            self._device_silence(entity, state, now, out)
            idle = self.cfg.freeze_idle_s
            if idle and (now - state.last_ts >= idle or self._reports_seldom(state, idle)):
                _freeze(state)

    @staticmethod
    def _reports_seldom(state: EntityState, idle: float) -> bool:
        """The device usually waits ``idle`` or longer between readings: frozen right after one, it thaws no more
        often than it would after waiting ``idle``, and meanwhile takes under a tenth of the memory."""
        watch: SilenceWatch | None = state.models.get("silence")
        cadence = watch.cadence if watch is not None else None
        return cadence is not None and cadence >= idle

    # ------------------------------------------------------------------ IoT
    def _reading(self, entity: str, state: EntityState, ts: float, values: dict[str, float], out: Output) -> None:
        m = state.models
        watch = m.get("silence")
        if watch is None:
            watch = m["silence"] = SilenceWatch(factor=self.cfg.silence_factor)
        # A gap no tick saw (a replay, or a worker catching up after a restart) is still an outage:
        # it is raised here, and resolved at once just below. (_device_silence's first test, asked here: no call for
        # the usual reading, a short gap after the last.)
        if not ts - state.last_ts < self.cfg.min_silence_s:
            self._device_silence(entity, state, ts, out)
        watch.observe(ts)
        silent = m.get("series", {}).get(SILENCE)
        if silent is not None:
            start = silent.alerts.close_now(ts)
            if start is not None:
                v = Verdict(0.0, False, ts - state.last_ts, watch.cadence or 0.0, 0.0, 0.0, "silence", False)
                self._alert(out, entity, SILENCE, silent, "resolved", start, ts, v, note="reporting again",
                            explanation=f"{entity} is reporting again after {ts - state.last_ts:.0f}s of silence.")
        is_open = self.is_open(entity, ts)
        pattern_t = self.pattern_time(entity, ts)
        warmup, every = self.cfg.warmup, self.cfg.score_every_s
        series = series_of(state)  # (once per reading, not per value: nothing freezes it meanwhile)
        for metric, x in values.items():
            sm = self._series_in(entity, series, metric, warmup)
            v = sm.detector.process_one(x, ts, is_open, pattern_t)  # type: ignore[union-attr]
            self._judge(entity, metric, sm, ts, v, out, every)

    def _device_silence(self, entity: str, state: EntityState, now: float, out: Output) -> None:
        gap = now - state.last_ts
        if gap < self.cfg.min_silence_s:  # asked first: the cheapest test, and what rules out nearly every call
            return
        m = state.models
        watch: SilenceWatch | None = m.get("silence")
        if watch is None or watch.cadence is None or not watch.is_silent(now):
            return
        cadence = watch.cadence
        sm = m.setdefault("series", {}).get(SILENCE)
        if sm is None:
            sm = m["series"][SILENCE] = SeriesModel(None)
        if sm.alerts.open_since is not None or not self.is_open(entity, now):
            return
        sm.alerts.open_now(state.last_ts, 1.0)
        v = Verdict(1.0, True, gap, cadence, 0.0, self.cfg.silence_factor * cadence, "silence", False)
        self._alert(out, entity, SILENCE, sm, "firing", state.last_ts, None, v,
                    explanation=f"{entity} has sent nothing for {gap:.0f}s; it usually reports every "
                                f"{cadence:.0f}s.")
        out.changed.add(entity)

    # ------------------------------------------------------------------ windows
    def _window(self, entity: str, state: EntityState, start: float, fields: dict[str, float], out: Output) -> None:
        m = state.models
        scored_until = m.get("scored_until", -math.inf)
        fields = self._with_totals(fields)
        if start <= scored_until:
            # a pooled ratio is re-judged on the window's own trials, if they are enough to judge it alone
            pooled = {m.name: m.pooled for m in self.spec.metrics if m.pooled}
            values = {k: x for k, x in self._window_values(fields).items()
                      if k not in pooled or fields.get(pooled[k][1], 0.0) >= self.cfg.min_trials}
            self._correction(entity, state, start, values, out, fields)
            return
        self._zero_fill(entity, state, scored_until, start, out)
        self._score_window(entity, state, start, fields, out)

    def _with_totals(self, fields: dict[str, float]) -> dict[str, float]:
        """The window's fields and the ratios' trials that the window does not carry."""
        return self.spec.with_totals(dict(fields))

    def _window_values(self, fields: dict[str, float]) -> dict[str, float]:
        """The scored metrics of a window, without those its events leave undefined (``MetricSpec.per``)."""
        return {m.name: fields[m.name] for m in self.spec.metrics
                if m.name in fields and (m.per is None or fields.get(m.per, 1.0) > 0.0)}

    def _pooled(self, state: EntityState, start: float, fields: dict[str, float],
                is_open: bool) -> dict[str, tuple[float, float]]:
        """(successes, trials) of the ratios (``MetricSpec.pooled``) whose pool of windows, this one included, now rests
        on enough trials.

        A pool is judged at its last window's time, and emptied; closing time empties it unjudged (the night's
        few trials are not tomorrow morning's).
        """
        pools: dict[str, list[float]] = state.models.setdefault("pools", {})
        ready: dict[str, tuple[float, float]] = {}
        for spec in self.spec.metrics:
            metric = spec.name
            if spec.pooled is None:
                continue
            if not is_open:
                pools.pop(metric, None)
                continue
            num, den = (fields.get(k, 0.0) for k in spec.pooled)
            if den <= 0.0:
                continue
            pool = pools.setdefault(metric, [0.0, 0.0, start])
            pool[0] += num
            pool[1] += den
            if pool[1] >= self.cfg.min_trials or start - pool[2] >= self.cfg.max_pool_s:
                ready[metric] = (pool[0], pool[1])
                del pools[metric]
        return ready

    def _score_window(self, entity: str, state: EntityState, start: float, fields: dict[str, float],
                      out: Output) -> None:
        state.models["scored_until"] = start
        is_open = self.is_open(entity, start)
        pooled = self._pooled(state, start, fields, is_open)
        for metric, x in self._window_values(fields).items():
            counts = None
            spec = self.spec.metric(metric)
            if spec.pooled is not None and is_open:
                if metric not in pooled:
                    continue  # too few trials yet: judged with the next windows'
                k, n = pooled[metric]
                x = k / n
                # its count is judged with its value (see _count_verdict), from the series' second ratio on
                if spec.counted and metric in series_of(state):
                    counts = (k, n)
            sm = self._series(entity, state, metric, self.cfg.window_warmup)
            v = sm.detector.process_one(x, start, is_open)
            self._judge(entity, metric, sm, start, v, out, write_every=0.0, counts=counts)

    def _zero_fill(self, entity: str, state: EntityState, scored_until: float, upto: float, out: Output) -> None:
        """Score (and write) zero windows for the gap between the last scored window and ``upto``."""
        if scored_until == -math.inf:
            return
        size = self.cfg.window_size
        start = scored_until + size
        n = 0
        while start < upto and n < MAX_ZERO_WINDOWS_PER_TICK:
            if self.is_open(entity, start) and (state.windows is None or start not in state.windows.windows):
                out.lines.append(line(self.spec.measurement, self.spec.entity_tag_values(entity),
                                      self.spec.zero_fields, int(start * 1000)))
                out.counts["zero_windows"] += 1
                self._score_window(entity, state, start, self._with_totals(self.spec.zero_fields), out)
            start += size
            n += 1
        state.models["scored_until"] = max(state.models.get("scored_until", -math.inf), start - size)

    def _zero_windows(self, entity: str, state: EntityState, now: float, out: Output) -> None:
        scored_until = state.models.get("scored_until")
        if scored_until is None:
            return
        closed_upto = now - self.cfg.window_size - self.cfg.window_grace  # windows starting before are final
        dirty = state.windows.dirty if state.windows is not None else ()
        if closed_upto > scored_until + self.cfg.window_size and not any(s > scored_until for s in dirty):
            self._zero_fill(entity, state, scored_until, math.floor(closed_upto / self.cfg.window_size)
                            * self.cfg.window_size + self.cfg.window_size, out)
            out.changed.add(entity)

    def _correction(self, entity: str, state: EntityState, start: float, values: dict[str, float],
                    out: Output, fields: dict[str, float] | None = None) -> None:
        """A late event changed a scored window: withdraw an alert it opened if it no longer holds."""
        for metric, x in values.items():
            sm = series_of(state).get(metric)
            if sm is None or sm.alerts.open_since != start:
                continue
            score = sm.detector.score_value(x, start)
            pooled = self.spec.metric(metric).pooled
            if sm.counts is not None and fields is not None and pooled:  # and its count (MetricSpec.counted)
                score = max(score, sm.counts.score_one(*(fields.get(f, 0.0) for f in pooled)))
            if sm.kind == "limit" and any(rule.beyond(x) for rule in self._limits_of(entity, metric)):
                continue  # still beyond the business's limit
            if score < self.cfg.threshold and sm.alerts.withdraw(start):
                v = Verdict(score, False, x, math.nan, math.nan, math.nan, "", False)
                self._alert(out, entity, metric, sm, "resolved", start, start, v,
                            note="withdrawn: late data corrected the window")
                out.changed.add(entity)

    # ------------------------------------------------------------------ shared
    def _series(self, entity: str, state: EntityState, metric: str, warmup: int) -> SeriesModel:
        return self._series_in(entity, series_of(state), metric, warmup)

    def _series_in(self, entity: str, series: dict[str, SeriesModel], metric: str, warmup: int) -> SeriesModel:
        """The model of ``metric`` among an entity's ``series`` (``series_of``), made or renewed as needed."""
        sm = series.get(metric)
        if sm is not None and self.cfg.models is None:
            # Nearly every value: a series of opsmon's own detector, no River model configured. The steps of the
            # general case below for it, told by exact types (River's isinstance is a Python-level metaclass call)
            # and with what the declarations fix (group, harmful side) looked up once.
            det = sm.detector
            if type(det) is AlertFilter:
                inner = det.anomaly_detector
                declared = self._declared.get(metric)
                if declared is None:
                    declared = self._declared[metric] = self.spec.metric(metric)
                # (no ``spec``: AlertFilter.spec is OPSMON, as wanted; a series learned on another scale than the
                # declared one goes on below, to learn afresh)
                if type(inner) is SeriesDetector and inner.scale == declared.scale:
                    if inner.n_mature >= inner.warmup:  # warmed_up
                        group = self._groups.get(entity)
                        if group is None:
                            group = self._groups[entity] = self.spec.group_of(entity)
                        self.priors.setdefault((group, metric), inner)
                    if inner.side != declared.harmful:
                        inner.side, inner.floor = declared.harmful, self.spec.floor
                    return sm
        # which way is harmful is the code's setting, not learned state: a restored detector takes it too; the scale
        # is what the state was learned on: a detector on another one than the declared learns afresh
        declared = self.spec.metric(metric)
        side, floor, scale = declared.harmful, self.spec.floor, declared.scale
        det = sm.detector if sm is not None else None
        if isinstance(det, SeriesDetector):  # a state from before the decision had its own home: it wraps the detector
            det = sm.detector = AlertFilter(det, threshold=self.cfg.threshold)  # type: ignore[union-attr]
        if sm is not None and det is None:
            return sm  # the missing-data series: no model
        spec = self.cfg.models.matching(self.source, entity, metric) if self.cfg.models else None
        want = spec.text if spec is not None and spec.preset != OPSMON else OPSMON
        rescaled = det is not None and isinstance(det.anomaly_detector, SeriesDetector) and (
            det.anomaly_detector.scale != scale)
        if det is None or det.spec != want or rescaled:  # new, or the configuration changed: its model learns afresh
            if spec is None or want == OPSMON:
                prior = self.priors.get((self.spec.group_of(entity), metric))
                if prior is not None and prior.scale != scale:
                    prior = None
                inner: SeriesDetector | CalibratedDetector = (
                    prior.sibling() if prior is not None
                    else SeriesDetector(warmup=warmup, side=side, floor=floor, scale=scale))
            else:
                inner = CalibratedDetector(spec.make(), side=side, spec=spec.text)
            det = AlertFilter(inner, threshold=self.cfg.threshold)
            if sm is None:
                sm = series[metric] = SeriesModel(det)
            else:
                sm.detector = det
        else:
            inner = det.anomaly_detector
            if isinstance(inner, SeriesDetector):
                if inner.warmed_up:
                    self.priors.setdefault((self.spec.group_of(entity), metric), inner)
                if inner.side != side:
                    inner.side, inner.floor = side, floor
        return sm

    def _judge(self, entity: str, metric: str, sm: SeriesModel, ts: float, v: Verdict, out: Output,
               write_every: float, counts: tuple[float, float] | None = None) -> None:
        """Turn a verdict into scores written and alert transitions; ``counts``: a count ratio's (k, n)."""
        if counts is not None:
            v = self._count_verdict(metric, sm, v, counts)
        limits = self._limits.get((entity, metric)) if self.cfg.limits else ()  # (_limits_of, without a call)
        if limits is None:
            limits = self._limits_of(entity, metric)
        breach = self._breach(sm, limits, v, ts) if limits else None
        if breach is not None:
            v = v._replace(score=max(v.score, breach[0].score), is_anomaly=True, reason="limit")
        sm.last_verdict = v
        score, is_anomaly, observed, expected, lower, upper, reason, _ = v
        alerts = sm.alerts
        announced = alerts.severity
        if breach is not None and alerts.open_since is None:
            # the business's bound: no warm-up, cooldown or false-positive bar; dated from the breach's start
            alerts.open_now(breach[1], score)
            transition: str | None = "open"
        elif not is_anomaly and alerts.open_since is None and alerts.held_since is None:
            transition = None  # what observe() returns here, changing nothing: most values
        else:
            transition = alerts.observe(ts, score, is_anomaly)
        if reason != "closed" and (is_anomaly or transition or ts - sm.last_written >= write_every):
            sm.last_written = ts
            fields = {"score": round(score, 6), "threshold": self.cfg.threshold, "observed": observed,
                      "is_anomaly": 1.0 if is_anomaly else 0.0}
            if math.isfinite(expected):
                fields["expected"] = round(expected, 6)
            if math.isfinite(lower):
                fields["lower"] = round(lower, 6)
            if math.isfinite(upper):
                fields["upper"] = round(upper, 6)
            if limits:
                above = [r.bound for r in limits if r.op[0] == ">"]
                below = [r.bound for r in limits if r.op[0] == "<"]
                if above:  # the tightest limits, drawn on the boards beside the expected band
                    fields["limit_above"] = min(above)
                if below:
                    fields["limit_below"] = max(below)
            head = sm.score_head
            if not head:
                head = sm.score_head = series_head("anomaly_score",
                                                   {"source": self.source, "entity": entity, "metric": metric})
            out.lines.append(point(head, fields, int(ts * 1000)))
        if is_anomaly:
            out.counts["anomalies"] += 1
        if transition == "open":
            start = sm.alerts.open_since
            assert start is not None
            self._alert(out, entity, metric, sm, "firing", start, None, v, note="" if start == ts or breach else
                        f"below the bar a false positive set, but anomalous for {(ts - start) / 60:.0f} min",
                        limit=breach[0] if breach else None)
        elif transition == "escalate":
            assert sm.alerts.open_since is not None
            grew = severity(sm.alerts.peak_score) == sm.alerts.severity
            self._alert(out, entity, metric, sm, "firing", sm.alerts.open_since, None, v, escalated=(announced, ts),
                        note="escalated: its score grew" if grew else
                        f"escalated: still anomalous after {(ts - sm.alerts.open_since) / 60:.0f} min",
                        limit=breach[0] if breach else None)
        elif transition == "resolve":
            assert sm.alerts.resolved_at is not None
            self._alert(out, entity, metric, sm, "resolved", sm.alerts.last_start, ts, v)

    def _breach(self, sm: SeriesModel, limits: tuple[Limit, ...], v: Verdict, ts: float
                ) -> tuple[Limit, float] | None:
        """The limit the value has been beyond for long enough, with the time it first was, or None."""
        if v.reason in ("closed", "invalid"):
            return None
        if sm.limits is None:
            sm.limits = LimitWatch()
        breach = sm.limits.process_one(limits, v.observed, ts)
        if breach is None and sm.kind == "limit" and sm.alerts.open_since is not None:
            # an alert a limit opened holds while the value is beyond it, sustained or not: a slowdown that dips
            # under the bar for a minute is one incident, not two
            breach = next(((rule, sm.alerts.open_since) for rule in limits if rule.beyond(v.observed)), None)
        return breach

    def forget_limits(self) -> None:
        """The configured limits changed (``cfg.limits``): each series is matched against them afresh."""
        self._limits.clear()

    def _limits_of(self, entity: str, metric: str) -> tuple[Limit, ...]:
        """The limits configured for this series (matched once per series, then remembered)."""
        if not self.cfg.limits:
            return ()
        found = self._limits.get((entity, metric))
        if found is None:
            found = self._limits[entity, metric] = self.cfg.limits.matching(self.source, entity, metric)
        return found

    def _count_verdict(self, metric: str, sm: SeriesModel, v: Verdict, counts: tuple[float, float]) -> Verdict:
        """The detector's verdict on a count ratio, with its count judged too: the rarer of the two.

        The count test (``models.ratio.CountTail``, harmful side only) keeps its own events: it does not flag
        within an event the detector flagged, nor twice in one of its own unless the count grows a decade rarer,
        so a checkout that fails for an hour is one alert whichever test opened it; and as long as its count
        stays rare, the alert stays open.
        """
        k, n = sm.judged = counts
        harmful = self.spec.metric(metric).harmful
        if v.reason in ("closed", "invalid") or not harmful:
            return v
        if sm.counts is None:
            sm.counts = CountTail(side=harmful, threshold=self.cfg.threshold)
        incident = sm.alerts.open_since is not None or v.score >= self.cfg.threshold  # not learned
        score, flag = sm.counts.process_one(k, n, event=v.score if v.is_anomaly else 0.0, incident=incident)
        if flag:
            return v._replace(score=max(score, v.score), is_anomaly=True, reason="count")
        if score > v.score:
            return v._replace(score=score, reason="count" if score >= 0.5 * self.cfg.threshold else v.reason)
        return v

    def _alert(self, out: Output, entity: str, metric: str, sm: SeriesModel, status: str, start: float,
               end: float | None, v: Verdict, note: str = "", explanation: str = "",
               escalated: tuple[str, float] | None = None, limit: Limit | None = None) -> None:
        """An alert event with the severity its policy announced; ``escalated``: (severity it had, when);
        ``limit``: the business's limit the value has crossed."""
        score = sm.alerts.peak_score if status == "resolved" or escalated else v.score
        was, escalated_at = escalated or ("", None)
        unit = sm.detector.rarity_unit if sm.detector else "values"
        if status == "firing" and (not escalated or v.score >= self.cfg.threshold):
            sm.kind = v.reason or sm.kind or "level"
        if not explanation:
            explanation = (self.explain_resolved(entity, metric, v, start, end, sm.alerts.peak_score)
                           if status == "resolved" else self.explain(entity, metric, v, unit, sm.judged, limit))
        out.alerts.append(AlertEvent(
            id=alert_id(self.source, entity, metric, start), status=status, severity=sm.alerts.severity,
            source=self.source, entity=entity, group=self.spec.group_of(entity), metric=metric,
            kind=sm.kind or v.reason or "level", score=round(score, 4), observed=v.observed,
            expected=_finite(v.expected), lower=_finite(v.lower), upper=_finite(v.upper), explanation=explanation,
            runbook=self.spec.metric(metric).runbook,
            dashboard=self.dashboard_link(entity), starts_at=start, ends_at=end, note=note,
            escalated_from=was, escalated_at=escalated_at))
        out.counts["alerts_" + status] += 1

    def explain(self, entity: str, metric: str, v: Verdict, unit: str = "values",
                counts: tuple[float, float] | None = None, limit: Limit | None = None) -> str:
        """One sentence for the person who gets the alert (``unit``: what the detector counts rarity in).

        A value that is not itself rare (an alert announced again because it lasts) is described, not ranked.
        ``counts``: the (successes, trials) a ratio was judged on, cited with it; ``limit``: the business's limit
        the value has crossed.

        >>> v = Verdict(0.6, True, 0.25, 0.004, 0.0, 0.05, "count", False)
        >>> Scoring("web").explain("shop-0", "error_rate", v, counts=(9.0, 36.0))  # doctest: +NORMALIZE_WHITESPACE
        'error_rate of shop-0 is 0.25 (9 errors of 36 events), expected 0.004 (usual range 0 to 0.05): a rare count
        for its usual rate, about 1 in 1,000 values on this series.'
        >>> v = Verdict(0.53, True, 7.2, 2.7, 0.9, 4.5, "record", False)
        >>> Scoring("iot").explain("s1/machine-3", "vibration", v)  # doctest: +NORMALIZE_WHITESPACE
        'vibration of s1/machine-3 is 7.2, expected 2.7 (usual range 0.9 to 4.5): a value beyond its whole range of
        the past week, about 1 in 180 values on this series.'
        >>> v = Verdict(0.6, True, 2140.0, 1850.0, 600.0, 2600.0, "limit", False)
        >>> Scoring("web").explain("shop-0", "latency_p95", v,
        ...                        limit=Limit.parse("> 1500 for 3m"))  # doctest: +NORMALIZE_WHITESPACE
        'latency_p95 of shop-0 is 2140, beyond the limit the business set (> 1500 for 3m); the model expected 1850
        (usual range 600 to 2600).'
        """
        cited = ""
        pooled = self.spec.metric(metric).pooled
        if counts is not None and pooled:
            num, den = (name.replace("_", " ") for name in pooled)
            cited = f" ({counts[0]:.0f} {num} of {counts[1]:.0f} {den})"
        if limit is not None:
            return (f"{metric} of {entity} is {v.observed:.4g}{cited}, beyond the limit the business set "
                    f"({limit.text}); the model expected {v.expected:.4g}{_band(v)}.")
        now = f"{metric} of {entity} is {v.observed:.4g}{cited}, expected {v.expected:.4g}{_band(v)}"
        if v.score < 0.5 * self.cfg.threshold or not v.reason:
            return f"{now}: still away from its usual pattern, though less than at the start."
        what = REASONS.get(v.reason, "unusual value")
        decades = FLAG_DECADES * v.score / (1.0 - v.score) if v.score < 1.0 else math.inf
        if decades > 6:
            rarity = f"rarer than 1 in a million {unit} on this series"
        else:
            rarity = f"about 1 in {10 ** decades:,.0f} {unit} on this series"
        return f"{now}: {'an' if what[0] in 'aeiou' else 'a'} {what}, {rarity}."

    def explain_resolved(self, entity: str, metric: str, v: Verdict, start: float, end: float | None,
                         peak: float) -> str:
        """What the resolution of an alert says: back to usual (or not, when people closed it), how long, how bad.

        >>> v = Verdict(0.1, False, 4.1, 4.0, 3.0, 5.0, "", False)
        >>> Scoring("iot").explain_resolved("s1/d1", "temperature", v, 0.0, 1500.0, 0.93)
        'temperature of s1/d1 is 4.1, expected 4 (usual range 3 to 5): the alert lasted 25 min, at worst score 0.93.'
        """
        lasted = f"the alert lasted {_duration(end - start)}, " if end is not None and end >= start else ""
        if not math.isfinite(v.expected):
            return f"{metric} of {entity}: {lasted}at worst score {peak:.2f}."
        return (f"{metric} of {entity} is {v.observed:.4g}, expected {v.expected:.4g}{_band(v)}: {lasted}"
                f"at worst score {peak:.2f}.")

    def dashboard_link(self, entity: str) -> str:
        """The Grafana board that shows this entity."""
        return self.spec.board_link(self.cfg.grafana_url, entity)


def _band(v: Verdict) -> str:
    return f" (usual range {v.lower:.4g} to {v.upper:.4g})" if math.isfinite(v.lower) else ""


def _duration(seconds: float) -> str:
    """``45 s``, ``25 min``, ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
