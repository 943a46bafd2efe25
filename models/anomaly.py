"""Online anomaly detector for one numeric series (a sensor, a till's takings, a page's traffic).

``SeriesDetector`` is a River supervised-style anomaly detector (``river.base.SupervisedAnomalyDetector``, as
``river.anomaly.GaussianScorer`` is): the value is ``y`` and its time travels in ``x`` (``x = {"t": epoch seconds}``,
or ``{}`` for a series without time), so ``score_one(x, y)`` / ``learn_one(x, y)``, ``clone()``, ``repr`` and
``river.checks`` work as for any River estimator. It scores and learns; what is news (the threshold, one flag per
event, escalation, daily recurrences) is decided by ``models.alert_filter.AlertFilter``, whose ``process_one`` the
stream calls once per value (score, decide and learn in one pass, without a dict per value). O(1) work per value
and a small, bounded, picklable state that can live in a Faust table.

How a value is judged
---------------------
A baseline is learned online (``models.seasonal``): a robust level, a time-of-day profile when
timestamps are given, and, once the data spans weeks, a weekly correction (Sunday at a till, a
holiday at a taxi rank). Six surprises are measured against it, and a seventh against the week:

- ``spike``: the step from the previous value, once the seasonal baseline is taken out;
- ``level``: the distance from the baseline: jumps, shifts and drifts. Its two sides are calibrated apart
  (``models.surprise``): a till whose takings often jump on a busy hour does not thereby find a drop to
  zero ordinary, nor a web page used to dips in traffic a surge;
- ``shift``: moving averages of that distance over about 40 and about 4 values: sustained departures,
  small ones and sudden ones (a till that stops: several zeros in a row where a zero never happens).
  The fast one clips each value, so one outlier counts as no more than a large ordinary value; the
  slow one does not, so spikes that come thicker than usual also read as a shift;
- ``flat``: log-ratio of the long-run to the recent step size: a stuck or flat-lined sensor;
- ``volatility``: log-ratio of the recent to the long-run deseasonalised step: a series that starts
  to shake (oscillation, bursts);
- ``cluster``: notable surprises arriving faster than their long-run rate (Poisson tail);
- ``dropout`` (a series with a ``floor``, such as counts and takings): a run of values at the floor where the
  baseline expects many, judged as counts (a negative binomial with the level's spread; see ``_dropout``);
- ``stuck`` (a two-sided series whose values rarely repeat): the same value three times or more in a row, judged
  against the series' own rate of repeats (see ``_stuck``): a sensor that has stopped measuring;
- ``record``: the value lies beyond the series' highest or lowest of the past week by more than a tenth of
  that range (``models.record``): the baseline adapts and the level's tail grows with every large departure,
  so a value the series has not come near all week can look ordinary to the others.

Each surprise becomes a tail probability ``p`` against the series' own recent history
(``models.surprise``: the rate at which surprises at least that large have *started* lately, or an
exponential tail beyond anything seen); a record's is the chance of one as far beyond the range among the
week's values. The fast ``shift``, an average of the last few distances that ``level`` judges one by one, and the
``record``, the level's evidence against the week's range rather than the baseline, add little evidence of their
own: their ``p`` counts double; so does that of a ``dropout`` (the level's evidence, judged as counts) and of a run
of ``stuck`` values (the ``flat`` surprise's, judged as repeats). The smallest ``p`` times seven (Bonferroni over
the seven shares) gives ``L = -log10 p`` and the score ``L / (L + FLAG_DECADES)``: the same score means the same rarity
on every series whatever its unit or noise; 0.5 is ``p = 1/100`` over the surprises (about one
in 700 for a single one, so an event that recurs daily in five-minute data does not flag), 0.67 is
ten times rarer, 0.75 a hundred; it never saturates.
Rarity alone is not enough to flag: the surprise must also be material (``min_effect`` times its
usual 90th percentile, and 1% of the daily profile's spread), so a clean series stays quiet, noisy or
not. What a flag opens (an event, escalation, a daily recurrence) is ``models.alert_filter``'s to decide; the
detector records an open event's evidence (``open_event``) so that people can confirm it (``unlearn_event``).

Learning is robust. Residuals are winsorised at ``clip`` times the level's usual 90th percentile, and
while a level or shift surprise is rare (``p <= 1/100``) the baseline learns nothing: an outage is not
the new normal after a few minutes. An episode that lasts beyond ``hold`` values is a permanent
change (a new machine, new prices): the baseline then adopts it, and the surprise statistics, which
decay, soon take it as normal.

>>> det = SeriesDetector(period=None, warmup=50)
>>> for i in range(300):
...     det.learn_one({}, 20.0 + (i % 7) * 0.1)
>>> det.warmed_up, det.score_one({}, 20.2) < 0.1, det.score_one({}, 35.0) > 0.6
(True, True, True)
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import river
from river import base

from models.record import RecordRange
from models.seasonal import SeasonalBaseline
from models.surprise import SurpriseCalibrator

if TYPE_CHECKING:
    from models.business_calendar import BusinessCalendar

_log = logging.getLogger(__name__)

# Bump when the meaning or layout of the pickled state changes; an old state then restarts learning.
# 2: seasonal baseline and surprise calibrator in their own objects; weekly correction, fast shift,
# volatility. 3: the profile's first weight from its signal-to-noise ratio; an ongoing fast-shift
# episode judged against the others. 4: the worst surprise of the open event (escalation). 5: the level's
# two sides calibrated apart. 6: events, escalation and recurrences moved to models.alert_filter. 7: runs at the
# floor (dropout) and repeats (stuck).
STATE_VERSION = 7
RIVER_VERSION = river.__version__

# Score 0.5 <=> a surprise whose tail probability (after Bonferroni) is 10**-FLAG_DECADES. NAB's costs
# and the production threshold agree on this bar (1.5 or 2.5 both score lower on NAB); a lower one
# would let a daily job's spike in five-minute data alert every day.
FLAG_DECADES = 2.0

FEATURES = ("spike", "level", "shift", "flat", "shift", "volatility", "cluster")
_SPIKE, _LEVEL, _SHIFT, _FLAT, _FAST, _VOL, _CLUSTER = range(7)
_NCAL = 6  # surprises with an empirical calibrator (the cluster one is analytic)
_LN10 = math.log(10.0)
RECORD = "record"  # the value is beyond the week's range (models.record)
DROPOUT = "dropout"  # a run of values at the series' floor (zero sales, zero events) where it is busy
# A run of values at the floor is judged from this many values on: one zero at a busy time can be a count's own
# noise (a gamma-Poisson count has zeros), three in a row where the baseline expects many are an outage.
_DROPOUT_RUN = 3
STUCK = "stuck"  # the same value again and again on a series whose values rarely repeat
_STUCK_RUN = 2  # repeats (three equal values) before a run is judged
# ... on a series whose values repeat less often than this: one that sits at zero, or reads to a coarse unit, has runs
# of its own (and they come in runs, which no rate per value describes)
_STUCK_RARE = 0.005
# When the weekly correction forms, the surprise history counted so far (departures judged by a baseline that did not
# know Saturdays) keeps this share, on a series whose history would remember it for more than two weeks (hourly
# takings: 2000 values are twelve weeks; five-minute data forget it within a week anyway, and are left as they are).
# Not nothing: the series' tails were learned then too.
_FORMATIVE_KEEP = 0.25
_Q90 = 1.6449  # the 90th percentile of |N(0, 1)|: the level's usual 90th percentile in standard deviations
# Weighted Bonferroni over seven shares: a surprise's p is scaled up by the number of shares over its own. The fast
# shift (mostly the level's own evidence averaged over a few values) and the record (the level's evidence against the
# week's range rather than the baseline) have half a share each; the six others a whole one.
SHARES = 7.0
_BONFERRONI = math.log10(SHARES)
_HALF_SHARE = math.log10(2.0)  # decades on top of the Bonferroni correction for half a share
_SETTLE = 30  # values before surprises are calibrated at all (the level's running mean settles)
# Effect-size floors that a flag needs besides rarity (when min_effect > 0): a sustained shift of
# at least 0.7 times the level's usual 90th percentile, and steps shrunk (or grown) four-fold.
_SHIFT_EFFECT = 0.7
_STEP_EFFECT = math.log(4.0)
# ... and a fast shift is material once it reaches 1.1 times the level's usual 90th percentile (about
# 1.8 sigma held over ~4 values: a till at 0 that averages 3), even if its own 90th percentile is noisy
_FAST_EFFECT = 1.1
# ... and, on a series without noise, a departure must reach 1% of the daily profile's spread: otherwise the
# profile's own last-digit imprecision is the rarest thing such a series shows, and a clean cycle alerts
_RESOLUTION = 0.01
_FAST_ALPHA = 0.4  # the fast shift: a mean of about the last four values (an outage within minutes)
_RARE = -2.0  # log10 p of a level or shift surprise that the baseline does not learn from
_STEP_ALPHA = 0.005  # long-run mean step sizes
# Step-size ratios are capped at a billion: a sensor stuck on one value, or steps of 1e-308 then 2, must
# still give finite surprises (an infinite one would poison the calibrator's scales for good).
_MAX_LOG_RATIO = math.log(1e9)
_NO_FLOOR = -math.inf  # ``floor`` of a series without one (a constant, not a negation per value)
LINEAR, LOG = "linear", "log"  # the scales a series can be judged on (``SeriesDetector``'s ``scale``)
SCALES = (LINEAR, LOG)



class Verdict(NamedTuple):
    """What the detector says about one value (``expected`` +/- band is the seasonal baseline)."""

    score: float  # calibrated surprise in [0, 1]; >= threshold means rare on this series
    is_anomaly: bool  # score >= threshold, past warm-up, open, not within an event already flagged (AlertFilter)
    observed: float
    expected: float  # seasonal baseline (level + time-of-day profile + weekly correction)
    lower: float  # baseline band: a value outside it would reach the threshold on ``level``
    upper: float
    reason: str  # the surprise that drove the score; "" if unremarkable, "closed", "invalid" (NaN, inf)
    warming_up: bool



class SeriesDetector(base.SupervisedAnomalyDetector):
    """Online anomaly detector for one series; see the module docstring for the method.

    River's supervised-style signature: the value is ``y``, its time is ``x["t"]`` (epoch seconds; absent or
    ``None`` for a series without time) and, optionally, ``x["pattern_t"]`` (see ``assess``). The value is
    ``y`` rather than a feature because a series has exactly one: a dict of features would invite a second one
    that this model would silently ignore. ``score_one`` returns the calibrated score (0.5: one in a hundred).

    Parameters
    ----------
    warmup
        Values to learn before flagging, counted once the first seasonal period is complete
        (the profile must exist before its surprises mean anything), or after 30 values when
        there is no profile. A value at a time of day the first period did not show (a shift's
        hours, for a machine first seen on a Saturday) is learned by its profile bin, not judged.
    period
        Seasonal period in seconds (a day by default); ``None`` disables the profile.
    max_bins
        Cap on profile bins; otherwise one bin per observed sampling interval.
    slow_alpha, shift_alpha, season_gamma
        Learning rates of the baseline level, the slow ``shift`` average and the profile (per period).
    flat_alpha
        Learning rate of the recent step sizes (``flat`` and ``volatility``).
    horizon
        Memory, in values, of the surprise histogram (older evidence decays).
    tail_q, tail_rate
        Quantile above which surprise tails are modelled, and the step of its tracking.
    cluster_level, cluster_alpha
        Rarity (decades) of a value that counts as a notable event, and the memory of the recent rate.
    min_effect
        A flag also needs the surprise to reach this many times its usual 90th percentile (0
        disables the effect-size floors and flags on rarity alone).
    clip
        Winsorising of what the baseline learns, in units of the level's usual 90th percentile.
    hold
        Rare values in a row during which the baseline learns nothing; beyond, the change is adopted.
    week
        Cycle of the weekly correction in seconds; ``None`` disables it.
    calendar
        Opening hours; values at closed times are neither scored nor learned.
    tick
        Seconds that count as one value at most. A series sampled faster (a sensor every 6 s) learns
        per tick: each value moves the long-run memories (level, scales, surprise history, ``hold``) by
        its share of a tick, so they span the same time at any rate; and a flag needs a surprise as rare
        per tick as a slower series needs per value, so it does not alert ten times as often. ``None``:
        per value, whatever the rate.
    side
        ``+1``: only departures above the baseline are anomalies (an error rate, a latency); ``-1``: only
        below (a conversion rate); ``0``: both. A departure the other way scores 0 and opens no event, so it
        neither alerts nor makes a harmful departure soon after wait out its refractory period (``AlertFilter``).
        What is learned does not change.
    floor
        The least value the series can take (0 for counts, rates and latencies), for ``side``: a baseline
        below it counts as at it, and with ``side=+1`` a value at it departs nowhere harmful (a night
        without errors, judged against a fitted baseline that dips below 0, is not a rise).
    scale
        ``"linear"``: values are judged as they come. ``"log"``: as ``log(1 + x - floor)``, for counts whose
        spread grows with their level (traffic: a busy hour's ordinary swings are several quiet hours' whole
        level, and on the linear scale a quiet hour's burst or a busy hour's ordinary high are both "rare" once
        a day). Baseline, band and ``expected`` are reported back on the values' own scale; runs at the floor
        (``dropout``) are judged as counts either way.

    >>> import math, random
    >>> from models.alert_filter import AlertFilter
    >>> rng = random.Random(3)
    >>> det = SeriesDetector()  # three days of 5-minute readings with a daily cycle:
    >>> for i in range(288 * 3):
    ...     x = 20 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.3)
    ...     det.learn_one({"t": 300.0 * i}, x)
    >>> det.warmed_up, det.score_one({"t": 300.0 * 288 * 3}, 27.0) >= 0.5
    (True, True)

    The stream scores, decides and learns in one pass through the decision's filter:

    >>> alerts = AlertFilter(det, threshold=0.5)
    >>> v = alerts.process_one(27.0, t=300.0 * 288 * 3)
    >>> v.is_anomaly, v.reason, v.lower < 20 < v.upper
    (True, 'level', True)
    >>> fresh = det.clone(new_params={"warmup": 60})  # the same settings, nothing learned
    >>> fresh.n, fresh.warmup, fresh.period
    (0, 60, 86400.0)
    """

    def __init__(self, warmup: int = 150, period: float | None = 86400.0, max_bins: int = 288, slow_alpha: float = 0.01,
                 shift_alpha: float = 0.05, season_gamma: float = 0.1, flat_alpha: float = 0.1,
                 horizon: float = 2000.0, tail_q: float = 0.9, tail_rate: float = 0.005,
                 cluster_level: float = 1.5, cluster_alpha: float = 0.05,
                 min_effect: float = 2.5, clip: float = 3.0, hold: int = 100,
                 week: float | None = 7 * 86400.0, calendar: BusinessCalendar | None = None,
                 tick: float | None = 60.0, side: int = 0, floor: float = -math.inf, scale: str = LINEAR) -> None:
        if side not in (-1, 0, 1):
            raise ValueError("side must be -1, 0 or 1")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
        if scale == LOG and not math.isfinite(floor):
            raise ValueError("a log scale needs a finite floor (the value it measures up from)")
        self.warmup = warmup
        self.period = period
        self.max_bins = max_bins
        self.slow_alpha = slow_alpha
        self.shift_alpha = shift_alpha
        self.season_gamma = season_gamma
        self.flat_alpha = flat_alpha
        self.horizon = horizon
        self.tail_q = tail_q
        self.tail_rate = tail_rate
        self.cluster_level = cluster_level
        self.cluster_alpha = cluster_alpha
        self.min_effect = min_effect
        self.clip = clip
        self.hold = hold
        self.week = week
        self.calendar = calendar
        self.tick = tick
        self.side = side
        self.floor = floor
        self.scale = scale
        self.log_scale = scale == LOG  # (a bool: asked for every value)
        # --- learned state (plain floats, lists and three small objects: cheap to pickle) ---
        self.base = SeasonalBaseline(period, max_bins, slow_alpha, season_gamma, week)
        self.record = RecordRange()  # the week's highest and lowest values
        self.cal = SurpriseCalibrator(_NCAL, tail_q, tail_rate, horizon, sustained=(_FAST,), signed=_LEVEL)
        self.n = 0  # values learned
        self.n_mature = 0  # values learned since the model could judge surprises (see _learn)
        self.anchor = True  # next value (re)starts the level: first value, or after ``sibling``
        self.t_last: float | None = None
        self.last = 0.0  # previous deseasonalised value
        self.last_x = 0.0
        self.shift = 0.0  # slow and fast moving averages of the (clipped) distance from the baseline
        self.fshift = 0.0
        self.vol_fast = 0.0  # recent and long-run mean deseasonalised step
        self.vol_slow = 0.0
        self.step_fast = 0.0  # recent and long-run mean raw step
        self.step_slow = 0.0
        self.cl_short = 0.0
        self.cl_long = 0.005  # prior: one notable surprise in 200 values
        self.cl_prev = False
        self.held = 0  # rare values in a row (the baseline holds while an episode is young)
        self.tick_share = 1.0  # a value's share of a tick (below 1 when sampled faster than ticks)
        self.tick_decades = 0.0  # -log10 of it: values per tick, the rarity a flag needs on top
        self.floor_rate = 0.0  # share of values at the floor over about ``horizon`` values
        self.repeats = 0  # values in a row equal to the one before (see _stuck and, at the floor, _dropout)
        self.repeat_rate = 0.0  # share of values equal to the one before, over about ``horizon`` values

    # ------------------------------------------------------------------ public API
    @property
    def warmed_up(self) -> bool:
        """True once the detector may flag (and is worth copying with ``sibling``)."""
        return self.n_mature >= self.warmup

    @property
    def rarity_unit(self) -> str:
        """What a score's rarity is counted in: values, or ticks ("minutes") for a series sampled faster."""
        if self.tick_share == 1.0:
            return "values"
        return "minutes" if self.tick == 60.0 else f"periods of {self.tick:g} s"

    def score_one(self, x: dict, y: float) -> float:
        """Calibrated surprise in [0, 1] of the value ``y`` at time ``x.get("t")``, without learning it."""
        return self.score_value(float(y), _time(x, "t"), _time(x, "pattern_t"))

    def learn_one(self, x: dict, y: float) -> None:
        """Update the model with the value ``y`` at time ``x.get("t")``; returns None, as River's does."""
        self.learn_value(float(y), _time(x, "t"), _time(x, "pattern_t"))

    def score_value(self, y: float, t: float | None = None, pattern_t: float | None = None) -> float:
        """``score_one`` without the dict: what the stream calls (a late window re-scored)."""
        if self.anchor or not math.isfinite(y):
            return 0.0
        return self._score(self._features(y, t, pattern_t))[0]

    def learn_value(self, y: float, t: float | None = None, pattern_t: float | None = None) -> None:
        """``learn_one`` without the dict."""
        if not math.isfinite(y):  # a NaN would poison every average for good
            return
        if self.anchor:
            self._start(y, t)
            return
        feats = self._features(y, t, pattern_t)
        _, _, notable, rare = self._score(feats)
        self._learn(t, feats, notable, rare)

    # ------------------------------------------------------------------ what the decision (AlertFilter) calls
    @property
    def settled(self) -> bool:
        """True once enough values were learned for an event seen while warming up to be remembered."""
        return self.n >= _SETTLE

    @property
    def recurrence_period(self) -> float | None:
        """The daily period events may recur with, once the time-of-day profile exists (None otherwise)."""
        return self.period if self.period and self.base.bins else None

    def assess(self, y: float, t: float | None, pattern_t: float | None = None) -> tuple:
        """(score, reason, ...) of ``y`` at ``t`` (judged by the daily pattern at ``pattern_t``): ``absorb`` learns it.

        ``pattern_t``: the time whose daily pattern ``y`` should follow, when not ``t``'s own (a fridge on a Sunday
        the shop is shut is judged as at closing time; see ``BusinessCalendar.pattern_time``). What the closing time's
        pattern leaves on shut days (the clock's share: the outdoor temperature) is learned from the first shut day
        on, hour by hour; such values teach neither the daily nor the weekly pattern.
        """
        feats = self._features(y, t, pattern_t)
        score, reason, notable, rare = self._score(feats)
        return score, reason, feats, notable, rare

    def absorb(self, y: float, t: float | None, assessed: tuple, threshold: float) -> tuple[float, float, float]:
        """Learn ``y`` as ``assess`` judged it; (expected, lower, upper): the baseline and the band of ``threshold``."""
        feats = assessed[2]
        expected = feats[7]
        # the band: the distance from the baseline at which ``level`` alone would reach the threshold
        target = (FLAG_DECADES * threshold / (1.0 - threshold) + _BONFERRONI + self.tick_decades
                  if threshold < 1.0 else 300.0)
        cal = self.cal
        band, floor = cal.reach(_LEVEL, target), self.min_effect * cal.u[_LEVEL]
        if floor > band:
            band = floor
        self._learn(t, feats, assessed[3], assessed[4])
        lower = expected - band
        if self.log_scale:  # back on the values' own scale: the band is a factor around ``expected``
            return self._from_log(expected), self._from_log(lower), self._from_log(expected + band)
        if lower < self.floor:  # a usual range of -300 to 800 ms reads as nonsense
            lower = self.floor
        return expected, lower, expected + band

    def open_event(self) -> None:
        """A flag opened an event: its surprises are recorded from now, should people confirm it."""
        self.cal.record()

    def close_event(self, confirmed: bool) -> None:
        """The event is over: its record stops growing (and what it added since people confirmed it goes)."""
        self.cal.stop_recording()
        if confirmed:
            self.cal.unlearn()

    def unlearn_event(self) -> bool | None:
        """People confirmed the latest event: its counts go back out of the surprise history.

        The surprise history counts how often departures as large have begun; a real incident counted there would
        make the next one (a fault that recurs until fixed) look less rare each time. The values themselves still
        teach the scales. Returns whether the event is still being recorded (its further counts go when it ends), or
        None when no event's record is kept.

        >>> from models.alert_filter import AlertFilter
        >>> det = AlertFilter(SeriesDetector(period=None, warmup=50))
        >>> for i in range(3000):
        ...     v = det.process_one(20.0 + (i % 7) * 0.1, t=60.0 * i)
        >>> t = 60.0 * 3000
        >>> opened = det.process_one(35.0, t)
        >>> for i in range(1, 200):
        ...     _ = det.process_one(20.0 + (i % 7) * 0.1, t + 60.0 * i)
        >>> det.confirm(t), det.confirm(t - 60.0)
        (True, False)
        """
        if self.cal.ledger is None:
            return None
        self.cal.unlearn()
        return self.cal.recording

    def sibling(self) -> SeriesDetector:
        """A new series' detector that starts from this (warmed-up) one, of the same group: ``clone()`` plus state.

        The profile, weekly correction, scales, surprise history and settings (threshold, calendar)
        are copied; the level restarts at the new series' first value, the week's range (records) starts
        empty, and warm-up is skipped when this one had finished it. A detector still warming up has nothing
        reliable to share: the new one is then a plain ``clone()``. This one is not changed.
        """
        if not self.warmed_up:
            return self.clone()
        new = self.clone(include_attributes=True)  # the settings, and a deep copy of what was learned
        new.anchor = True
        new.held = 0
        new.cl_short = 0.0
        new.cl_prev = False
        new.cal.forget_episodes()
        new.shift = 0.0
        new.fshift = 0.0
        new.vol_fast = new.vol_slow
        new.step_fast = new.step_slow
        new.t_last = None
        new.record = RecordRange()  # the group's range is not this series' own
        return new

    def __getstate__(self) -> dict[str, Any]:
        # river's version is recorded for the record (a support question, a relearn policy to come): this model's
        # state holds only plain Python, so a river upgrade alone does not make it unreadable
        return {"state_version": STATE_VERSION, "river_version": RIVER_VERSION, **self.__dict__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.pop("state_version", None)
        state.pop("river_version", None)
        if version != STATE_VERSION:
            # What an older release learned means something else here: learn afresh, with the same
            # settings, rather than stop a worker that restores its tables after an upgrade.
            _log.warning("detector state version %s, this code reads %s: learning restarts", version,
                         STATE_VERSION)
            try:
                state = SeriesDetector(**{k: state[k] for k in _PARAMS if k in state}).__dict__
            except (TypeError, ValueError):  # settings that no longer exist or hold
                state = SeriesDetector().__dict__
            self.relearned_from = version
        # a state from before ticks: the default tick, its sampling interval still to learn
        self.__dict__.update({"tick": 60.0, "tick_share": 1.0, "tick_decades": 0.0, "side": 0, "floor": -math.inf,
                              "scale": LINEAR, "log_scale": False,
                              "record": RecordRange(), **state})

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Settings for River's generic checks: the default, and a series without time or week."""
        yield {}
        yield {"period": None, "week": None, "warmup": 30}

    # ------------------------------------------------------------------ internals
    def _start(self, x: float, t: float | None) -> None:
        """(Re)start the level at ``x``; the profile and scales are kept."""
        if self.log_scale:
            x = self._to_log(x)
        self.base.start(x, t, fresh=self.n == 0)
        self.last = self.base.slow
        self.last_x = x
        self.t_last = t
        self.anchor = False
        self.n += 1

    def _to_log(self, x: float) -> float:
        """``x`` on the log scale (``scale``): ``log(1 + x - floor)``, 0 at or below the floor."""
        return math.log1p(x - self.floor) if x > self.floor else 0.0

    def _from_log(self, y: float) -> float:
        """A value of the log scale back on the values' own (``_to_log`` undone; the floor for 0 and below)."""
        return self.floor + math.expm1(y) if y > 0.0 else self.floor

    def _features(self, x: float, t: float | None, pattern_t: float | None = None) -> tuple:
        """Surprises of ``x`` (judged by the daily pattern at ``pattern_t``, default ``t``), and what learning needs."""
        at_floor = x <= self.floor
        if self.log_scale:  # judged as log(1 + x - floor) (see ``scale``); what is learned is on that scale too
            x = self._to_log(x)
        base = self.base
        if pattern_t is None or pattern_t == t:
            where, shut = base.locate(t), None
            c = 0.0
        else:  # a shut day: judged like its closing time, plus what that leaves on shut days
            where, shut = base.locate(pattern_t), base.shut_at(t)  # type: ignore[arg-type]
            c = shut[1]
        s, wv = where[1], where[3]
        d = x - base.lam * s - base.mu * wv - c  # deseasonalised
        rl = d - base.slow
        sh = self.shift + self.shift_alpha * (rl - self.shift)  # unclipped: it also sees spikes thicken
        # the fast shift averages clipped distances: a lone outlier is the level's business (once the clip is known)
        if self.n_mature < _SETTLE:
            rc = rl
        else:
            c = self.clip * self.cal.u[_LEVEL]
            rc = -c if rl < -c else (c if rl > c else rl)
        shf = self.fshift + _FAST_ALPHA * (rc - self.fshift)
        step = abs(x - self.last_x)
        fa = self.flat_alpha
        sf = self.step_fast + fa * (step - self.step_fast)
        ss = self.step_slow
        zf = 0.0
        if ss > 0.0 and not sf >= ss:  # no log when the steps have not shrunk: it would be <= 0, clipped to 0
            zf = math.log(ss / sf) if sf > ss * 1e-9 else _MAX_LOG_RATIO
        zs = abs(d - self.last)
        vf = self.vol_fast + fa * (zs - self.vol_fast)
        vs = self.vol_slow
        zv = (math.log(vf / vs) if vf < vs * 1e9 else _MAX_LOG_RATIO) if vs > 0.0 and vf > vs else 0.0
        z = [zs, abs(rl), abs(sh), zf, abs(shf), zv]
        record = self.record
        # (log10p's own first test, here: most values are within the range, and need no call)
        rec = 0.0 if record.down <= x <= record.up else record.log10p(x)
        if rec and self.side and (self.side > 0) != record.is_high(x):  # a record on the harmless side is none
            rec = 0.0
        return (z, d, sh, shf, step, sf, vf, base.slow + x - d, where, shut, rl < 0.0, rec,  # (below the baseline)
                at_floor, step == 0.0, x)

    def _score(self, feats: tuple) -> tuple[float, str, bool, bool]:
        """(score, reason, notable, rare) for computed surprises; reads the state only."""
        if self.base.unseen and self._forming(feats):  # (a profile with no unseen bin, most, forms none)
            return 0.0, "", False, False
        z = feats[0]
        own: list[float] = []
        lps = self.cal.log10ps(z, own, feats[10])
        rare = own[_LEVEL] <= _RARE or own[_SHIFT] <= _RARE or own[_FAST] <= _RARE
        drop = self._dropout(feats[7]) if feats[12] and feats[13] and self.side <= 0 else 0.0
        stuck = self._stuck() if feats[13] and not self.side else 0.0  # (a one-sided rate at rest repeats)
        # Unrolled over the six surprises: this runs for every value. A rare surprise (p < 1/10) that is too small
        # to matter counts as p = 1/10; the floors are only worked out when a surprise is rare at all.
        spike, level, shift, flat, fast, vol = lps
        if self.min_effect and (spike < -1.0 or level < -1.0 or shift < -1.0
                                or flat < -1.0 or fast < -1.0 or vol < -1.0):
            floors = self._floors(feats[6])
            for i, lp in enumerate(lps):
                if lp < -1.0 and z[i] < floors[i]:
                    lps[i] = -1.0
            spike, level, shift, flat, fast, vol = lps
        benign = False
        if self.side:
            benign = self._one_sided(lps, feats)
            spike, level, shift, flat, fast, vol = lps
        # a notable surprise (p < 10**-cluster_level) on the value itself starts an "event". (Conditional
        # expressions rather than min() and max(), here, in _floors and for the band: in Python 3.11 those
        # builtins parse keyword arguments on every call, which costs more than the rest of the line.)
        notable = (level if level < spike else spike) <= -self.cluster_level
        # the rarest surprise, the first of equals (the fast shift's p scaled up by its share of the correction)
        best, reason = 0.0, ""
        if spike < best:
            best, reason = spike, FEATURES[_SPIKE]
        if level < best:
            best, reason = level, FEATURES[_LEVEL]
        if shift < best:
            best, reason = shift, FEATURES[_SHIFT]
        if flat < best:
            best, reason = flat, FEATURES[_FLAT]
        fast += _HALF_SHARE
        if fast < best:
            best, reason = fast, FEATURES[_FAST]
        if vol < best:
            best, reason = vol, FEATURES[_VOL]
        rec = feats[11] + _HALF_SHARE
        if rec < best:
            best, reason = rec, RECORD
        # the level's evidence judged as counts, and the flat surprise's judged as repeats: half a share each, as the
        # record. (Only a value at the floor, or repeating the last exactly, has them: SHARES is not recounted.)
        drop += _HALF_SHARE
        if drop < best:
            best, reason = drop, DROPOUT
        stuck += _HALF_SHARE
        if stuck < best:
            best, reason = stuck, STUCK
        ev = 1.0 if notable and not self.cl_prev else 0.0
        ca = self.cluster_alpha
        k = (self.cl_short + ca * (ev - self.cl_short)) / ca  # events in the recent ~1/ca values
        mu = self.cl_long / ca  # expected events in as many values
        if k > mu and self.cal.tot > 0.0 and not benign:
            lpc = -(k * math.log(k / mu) - k + mu) / _LN10  # Chernoff bound of the Poisson tail
            if lpc < best:
                best = lpc
                reason = "cluster"
        big = -best - _BONFERRONI - self.tick_decades
        score = big / (big + FLAG_DECADES) if big > 0.0 else 0.0
        return score, reason, notable, rare

    def _dropout(self, expected: float) -> float:
        """log10 p of the run of values at the floor that this value extends (0 while too short to judge).

        A count at its floor is judged as counts are: a negative binomial with the baseline's mean (above the floor)
        and the level's usual spread as its variance (Poisson when the spread is smaller), whose chance of a value
        at the floor is ``p0``. Half the run's values count as independent evidence (counts in a row are not):
        ``p0 ** (k / 2)``. Counts spread well beyond their mean (bursts) give a large ``p0``, so their quiet spells
        are ordinary; a busy till or page that reads zero for minutes on end is not. Nor is ``p0`` taken below the
        share of the series' recent values at the floor: an additive baseline can expect takings at night from a
        shop shut every night (zero-inflation, which the negative binomial does not know).
        """
        k = self.repeats + 2  # the values in a row at the floor: this one, the one before, and its repeats
        sd = self.cal.u[_LEVEL] / _Q90
        if self.log_scale:  # the count's mean and spread, back from the log scale (its spread grows with the level)
            m = math.expm1(expected) if expected > 0.0 else 0.0
            sd *= m + 1.0
        else:
            m = expected - self.floor
        if k < _DROPOUT_RUN or not m > 0.0:
            return 0.0
        v = sd * sd
        lp0 = m * m / (v - m) * math.log10(m / v) if v > m else -m / _LN10
        if self.floor_rate > 0.0 and math.log10(self.floor_rate) > lp0:  # zeros are common here (a shop shut at night)
            lp0 = math.log10(self.floor_rate)
        return 0.5 * k * lp0

    def _stuck(self) -> float:
        """log10 p of the run of equal values that this value extends (0 while too short to judge).

        A sensor that sends the same reading again and again, where its readings rarely repeat, has stopped
        measuring. ``p1``, the chance that a value repeats the one before, is the series' recent share of repeats,
        and no less than one in as many values as that share rests on (a series that never repeated in a week is
        not thereby certain never to); half the run's repeats count as independent evidence, ``p1 ** (k / 2)``. Only
        a series that rarely repeats is judged (``_STUCK_RARE``): a quantised or integer one (counts, a percentage to
        one decimal, a disk idle at zero) repeats often, in runs, and is left to ``flat``.
        """
        k = self.repeats + 1
        if k < _STUCK_RUN or self.repeat_rate >= _STUCK_RARE:
            return 0.0
        n = self.n if self.n < self.horizon else self.horizon
        p1 = self.repeat_rate if self.repeat_rate * n > 1.0 else 1.0 / n
        return 0.5 * k * math.log10(p1)

    def _forming(self, feats: tuple) -> bool:
        """Whether the value falls in a profile bin still forming (``SeasonalBaseline.unseen``): not judged."""
        return feats[9] is None and self.base.forming(feats[8][0])  # (callers ask only with unseen bins at all)

    def _one_sided(self, lps: list[float], feats: tuple) -> bool:
        """Clear (``p = 1``) the surprises that depart the harmless way (see ``side``); True if the value does.

        A surprise counts when the value sits on the harmful side of the baseline and, for those with a
        direction of their own (the step of ``spike``, the averages of the shifts), that direction is harmful
        too: an error rate just above usual after a quiet hour is not a rise because its average climbs back.
        Nor is a step that starts on the harmless side: it is a recovery, and how far past the baseline it ends
        is for ``level`` to judge.
        """
        side = self.side
        rl = feats[1] - self.base.slow  # the value's distance from the baseline
        expected, floor = feats[7], (0.0 if self.log_scale else self.floor)  # (the floor on the detector's scale)
        gap = rl if expected >= floor else rl + expected - floor
        if side * gap <= 0.0 or (side > 0 and rl + expected <= floor):
            lps[:] = (0.0,) * len(lps)
            return True
        last = self.last
        if side * (feats[1] - last) <= 0.0 or side * (last - self.base.slow) < 0.0:
            lps[_SPIKE] = 0.0
        if side * feats[2] <= 0.0:
            lps[_SHIFT] = 0.0
        if side * feats[3] <= 0.0:
            lps[_FAST] = 0.0
        return False

    def _floors(self, vf: float) -> tuple[float, ...]:
        """Size each surprise must reach to be material (when ``min_effect`` is set); ``vf``: the recent step."""
        u = self.cal.u
        me = self.min_effect
        # nor is a departure below the series' resolution (a noise-free series: its own rounding is "rare")
        base = self.base
        tiny = _RESOLUTION * base.lam * math.sqrt(base.var_ps)
        spike, level, shift = me * u[_SPIKE], me * u[_LEVEL], _SHIFT_EFFECT * u[_LEVEL]
        fast, fast_level = me * u[_FAST], _FAST_EFFECT * u[_LEVEL]
        if fast_level < fast:
            fast = fast_level
        return (tiny if tiny > spike else spike, tiny if tiny > level else level, tiny if tiny > shift else shift,
                _STEP_EFFECT, tiny if tiny > fast else fast, _STEP_EFFECT if vf >= tiny else math.inf)

    def _learn(self, t: float | None, feats: tuple, notable: bool, rare: bool) -> None:
        """Fold one value (on the detector's scale: ``feats``' last) into the state."""
        n = self.n
        z, d, sh, fsh, step, sf, vf, _, where, shut, below, _, at_floor, same, x = feats
        # runs of repeats and of values at the floor, and how often each happens (a running mean at first)
        self.repeats = self.repeats + 1 if same else 0
        a = self.tick_share / self.horizon
        if a * n < 1.0:
            a = 1.0 / (n + 1)
        self.repeat_rate += a * ((1.0 if same else 0.0) - self.repeat_rate)
        if self.floor > _NO_FLOOR:
            self.floor_rate += a * ((1.0 if at_floor else 0.0) - self.floor_rate)
        base, cal = self.base, self.cal
        # a value at a profile bin still forming is the bin's to learn: measured against the bin's guess, its
        # departure is not the series' (no surprise, no moving average, no deseasonalised step learns it)
        forming = self._forming(feats) if base.unseen else False  # (no unseen bin, as in most profiles: none)
        # surprises of a model still learning its first season say little about what is normal:
        # the calibration restarts once the model is mature
        mature = n >= _SETTLE and (not base.bins or t is None or t - base.t_first >= self.period)  # type: ignore[operator]
        if mature:
            if self.n_mature == 0:
                cal.restart()
            self.n_mature += 1
        w = self.tick_share
        if not forming:
            cal.learn(z, mature, w, below)
        # cluster rate: short and long EWMAs of event starts
        ev = 1.0 if notable and not self.cl_prev else 0.0
        self.cl_short += self.cluster_alpha * (ev - self.cl_short)
        if n >= self.warmup:
            self.cl_long += w * (ev - self.cl_long) / self.horizon
        self.cl_prev = notable
        # the baseline learns nothing from a rare episode until it lasts (then it is the new normal)
        settled = self.n_mature >= _SETTLE
        self.held = held = self.held + 1 if rare and settled else 0
        clip = self.clip * cal.u[_LEVEL] if settled else math.inf
        weekly = bool(base.week_n)
        formed = base.learn(x, t, self.t_last, n, clip, where, held > 0 and 0 < held * w <= self.hold, shut, w)
        if weekly and not base.week_n and self.week and base.dt * self.horizon > 2.0 * self.week:
            cal.forget_history(_FORMATIVE_KEEP)  # the weekly correction has just formed
        self.step_fast = sf
        # both start from 0 on purpose: "flat" stays silent until the usual step size is known
        self.step_slow += _STEP_ALPHA * w * (step - self.step_slow)
        if forming:
            _, s, _, wv = base.locate(t)
            self.last = x - base.lam * s - base.mu * wv  # deseasonalised by the bin it has just taught
        else:
            self.shift, self.fshift, self.vol_fast = sh, fsh, vf
            self.vol_slow += _STEP_ALPHA * w * (z[_SPIKE] - self.vol_slow)
            self.last = d
        self.last_x = x
        self.t_last = t
        self.n = n + 1
        self.record.learn(x, t)
        tick, dt = self.tick, base.dt
        if tick and 0.0 < dt < tick:
            if dt / tick != self.tick_share:  # (a steady sampling interval: no logarithm per value)
                self.tick_share = dt / tick
                self.tick_decades = -math.log10(dt / tick)
        elif self.tick_share != 1.0:
            self.tick_share, self.tick_decades = 1.0, 0.0
        if formed:  # the profile has just been formed: the previous value is deseasonalised anew
            self.last = x - base.lam * base.locate(t)[1]


_PARAMS = tuple(inspect.signature(SeriesDetector).parameters)  # constructor arguments (an old state's settings)


def _time(x: dict, key: str) -> float | None:
    """A time from a River feature dict (epoch seconds), None when absent; a clear error when not a number."""
    t = x.get(key) if x else None
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise TypeError(f"x[{key!r}] must be epoch seconds (a number), not {type(t).__name__}")
    return float(t)
