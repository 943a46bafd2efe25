"""The production detector on kinds of series it was never tuned on: false flags per week and anomalies caught.

Three seeded, pure-Python generators, each a few weeks long with known injected anomalies:

- bursty counts per 5 minutes: overdispersed (gamma-Poisson) around a daily shape, with ordinary short bursts
  several times a day; anomalies: an outage (nothing for an hour at a busy time) and a surge (six-fold for 30 min);
- hourly business takings: open hours with a lunch peak, quieter weekends, a public holiday, a slow trend and
  multiplicative noise; anomalies: a till down for three hours, a doubling for two;
- a 5-minute temperature sensor with regime changes: a level step that persists and a doubling of the noise
  (their onsets are the anomalies; what follows is the new normal), plus a stuck reading and a spike.

A false flag is a flag outside every anomaly window after warm-up; the detector raises one flag per event
(its refractory period), as the stream alerts once per event. The bound a person would tolerate is one false
flag per week per series; where the detector does not meet it yet the test is an expected failure whose
reason gives the measured figure, so the gap stays visible.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import pytest

from models.alert_filter import AlertFilter
from models.anomaly import SeriesDetector
from streams.scoring import ScoringConfig
from streams.sources import SOURCES

WEEK = 7 * 86400.0
T0 = 1_704_067_200.0  # Monday 2024-01-01 00:00 UTC: weekdays are where the generators put them
MAX_FALSE_PER_WEEK = 1.0  # what on-call staff would tolerate on one series


def production_detector(source: str, metric: str) -> AlertFilter:
    """The detector ``streams.scoring`` builds for a new series of ``source``'s ``metric`` (no prior)."""
    cfg = ScoringConfig()
    if source == "iot":  # readings: two-sided, unbounded, the readings' warm-up
        det = SeriesDetector(warmup=cfg.warmup, side=0, floor=-math.inf)
    else:
        spec = SOURCES[source].metric(metric)
        det = SeriesDetector(warmup=cfg.window_warmup, side=spec.harmful, floor=0.0, scale=spec.scale)
    return AlertFilter(det, threshold=cfg.threshold)


def flags_of(det: AlertFilter, times: list[float], values: list[float]) -> tuple[list[bool], list[bool]]:
    """Run the detector over a series: (flagged, warming up) per value. The one place that calls its API."""
    flags, warming = [], []
    for t, x in zip(times, values, strict=True):
        v = det.process_one(x, t)
        flags.append(v.is_anomaly)
        warming.append(v.warming_up)
    return flags, warming


@dataclass
class Series:
    """A generated series and its anomalies as ``(first, last)`` row windows (the rows a flag may fall in)."""

    times: list[float]
    values: list[float]
    windows: list[tuple[int, int]]


@dataclass
class Measured:
    """False flags outside the windows after warm-up, per week, and windows with at least one flag."""

    false_flags: int
    weeks: float
    caught: int
    anomalies: int

    @property
    def per_week(self) -> float:
        """False flags per week of judged data."""
        return self.false_flags / self.weeks

    def __str__(self) -> str:
        return (f"{self.false_flags} false flags in {self.weeks:.1f} weeks ({self.per_week:.2f}/week), "
                f"{self.caught}/{self.anomalies} anomalies caught")


def measure(series: Series, det: SeriesDetector) -> Measured:
    """Score a series with a fresh detector."""
    flags, warming = flags_of(det, series.times, series.values)
    first = next(i for i, w in enumerate(warming) if not w)
    inside = [False] * len(flags)
    for lo, hi in series.windows:
        for i in range(lo, hi + 1):
            inside[i] = True
    false_flags = sum(1 for i in range(first, len(flags)) if flags[i] and not inside[i])
    caught = sum(1 for lo, hi in series.windows if any(flags[lo:hi + 1]))
    weeks = (series.times[-1] - series.times[first]) / WEEK
    return Measured(false_flags, weeks, caught, len(series.windows))


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth's method for small means, a rounded normal for large ones)."""
    if lam <= 0.0:
        return 0
    if lam > 50.0:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def day_fraction(t: float) -> float:
    """Time of day in [0, 1)."""
    return ((t - T0) % 86400.0) / 86400.0


# ---------------------------------------------------------------- generators
def bursty_counts(seed: int, weeks: int = 4) -> Series:
    """Events per 5 minutes: overdispersed around a daily shape, ordinary bursts, an outage and a surge."""
    rng = random.Random(seed)
    n = weeks * 7 * 288
    times = [T0 + 300.0 * i for i in range(n)]
    burst_left = 0
    values: list[float] = []
    for t in times:
        hour = 24.0 * day_fraction(t)
        base = 4.0 + 16.0 * max(0.0, math.sin(math.pi * (hour - 6.0) / 16.0)) if 6.0 <= hour <= 22.0 else 4.0
        if burst_left == 0 and rng.random() < 1.0 / 60.0:  # about five ordinary bursts a day
            burst_left = rng.randint(1, 4)
        boost = 2.5 if burst_left else 1.0
        burst_left = max(0, burst_left - 1)
        lam = rng.gammavariate(4.0, base * boost / 4.0)  # gamma-Poisson: variance well above the mean
        values.append(float(poisson(rng, lam)))
    # anomalies in the last two weeks, at busy hours (a Tuesday at 14:00, a Thursday at 11:00)
    outage = (weeks - 2) * 2016 + 288 + 168
    surge = (weeks - 1) * 2016 + 3 * 288 + 132
    for i in range(outage, outage + 12):
        values[i] = 0.0
    for i in range(surge, surge + 6):
        values[i] = float(poisson(rng, 120.0))
    return Series(times, values, [(outage, outage + 12 + 6), (surge, surge + 6 + 6)])


def hourly_business(seed: int, weeks: int = 6) -> Series:
    """Takings per hour: open 8-20 with a lunch peak, quieter weekends, a holiday, a trend, a till down, a surge."""
    rng = random.Random(seed)
    n = weeks * 7 * 24
    times = [T0 + 3600.0 * i for i in range(n)]
    holiday = (weeks - 3) * 7 + 2  # a Wednesday, shut like a Sunday
    values: list[float] = []
    for i, t in enumerate(times):
        day, hour = divmod(i, 24)
        weekday = day % 7
        if not 8 <= hour < 20:
            values.append(0.0)
            continue
        shape = 1.0 + 0.8 * math.exp(-((hour - 12.5) ** 2) / 3.0) + 0.4 * math.exp(-((hour - 17.5) ** 2) / 2.0)
        scale = 0.6 if weekday >= 5 or day == holiday else 1.0
        trend = 1.0 + 0.01 * t / WEEK - 0.01 * T0 / WEEK  # +1% a week
        values.append(max(0.0, 500.0 * shape * scale * trend * (1.0 + rng.gauss(0.0, 0.08))))
    down = (weeks - 2) * 168 + 24 + 13  # Tuesday 13:00-16:00
    surge = (weeks - 1) * 168 + 3 * 24 + 10  # Thursday 10:00-12:00
    for i in range(down, down + 3):
        values[i] *= 0.1
    for i in range(surge, surge + 2):
        values[i] *= 2.0
    return Series(times, values, [(down, down + 3 + 1), (surge, surge + 2 + 1)])


def sensor_regimes(seed: int, weeks: int = 4) -> Series:
    """A 5-minute temperature: daily cycle, a persistent level step, a doubling of noise, a stuck spell, a spike."""
    rng = random.Random(seed)
    n = weeks * 7 * 288
    times = [T0 + 300.0 * i for i in range(n)]
    step = 9 * 288 + 100  # a new set point: +2 degrees from then on
    noisy = 16 * 288 + 40  # a fan starts cycling: the noise doubles from then on
    stuck = 20 * 288 + 150  # the reading freezes for two hours
    spike = 24 * 288 + 200
    values: list[float] = []
    for i, t in enumerate(times):
        x = 4.0 + 1.5 * math.sin(2.0 * math.pi * day_fraction(t)) + rng.gauss(0.0, 0.5 if i >= noisy else 0.25)
        if i >= step:
            x += 2.0
        values.append(x)
    for i in range(stuck + 1, stuck + 24):
        values[i] = values[stuck]
    values[spike] += 4.0
    hours6 = 72  # a regime change counts as caught within six hours; its flags there are not false
    return Series(times, values, [(step, step + hours6), (noisy, noisy + hours6), (stuck, stuck + 24 + 12),
                                  (spike, spike + 3)])


# ---------------------------------------------------------------- generators do what they say
def test_generators_are_seeded_and_shaped() -> None:
    a, b = bursty_counts(1), bursty_counts(1)
    assert a.values == b.values and a.values != bursty_counts(2).values
    counts = a.values[: 2 * 2016]
    mean = sum(counts) / len(counts)
    var = sum((c - mean) ** 2 for c in counts) / len(counts)
    assert var > 2 * mean  # overdispersed, not Poisson
    h = hourly_business(1)
    assert all(v == 0.0 for i, v in enumerate(h.values) if not 8 <= i % 24 < 20)  # shut at night
    weekday = sum(h.values[24:48])  # a Tuesday
    assert sum(h.values[5 * 24:6 * 24]) < 0.75 * weekday  # a quieter Saturday
    s = sensor_regimes(1)
    lo, _ = s.windows[2]
    assert len(set(s.values[lo:lo + 24])) == 1  # the stuck spell


# ---------------------------------------------------------------- the production detector on them
SEEDS = (11, 12, 13)
KINDS = {"bursty_counts": (bursty_counts, "web", "events"), "hourly_business": (hourly_business, "pos", "revenue"),
         "sensor_regimes": (sensor_regimes, "iot", "temperature")}


@functools.cache
def measured(kind: str) -> tuple[Measured, ...]:
    """The production detector on three seeds of one generator (shared by the two tests of a kind)."""
    make, source, metric = KINDS[kind]
    return tuple(measure(make(seed), production_detector(source, metric)) for seed in SEEDS)


def assert_few_false_flags(kind: str) -> None:
    """At most MAX_FALSE_PER_WEEK false flags per week on every seed."""
    for r in measured(kind):
        assert r.per_week <= MAX_FALSE_PER_WEEK, f"{kind}: {r}"


def assert_all_caught(kind: str) -> None:
    """Every injected anomaly flagged within its window, on every seed."""
    for r in measured(kind):
        assert r.caught == r.anomalies, f"{kind}: {r}"


def test_bursty_counts_few_false_flags() -> None:
    # measured 0.26, 0.26 and 0.78/week on seeds 11-13 (0.26-0.78 on seeds 11-20; 0-1.17 a week over anomaly-free
    # weeks 3-8 of seeds 11-20), judged on the log scale the web source declares for its events: on the linear one
    # (2.09, 2.87, 1.83) a busy hour's ordinary highs and a quiet hour's bursts were both once-a-week rarities of one
    # scale that the daytime spread sets
    assert_few_false_flags("bursty_counts")


def test_bursty_counts_anomalies_caught() -> None:
    # measured 2/2 on every seed: the hour of zeros is a dropout (score 0.8), flagged as an incident of its own even
    # when it comes inside an event a burst opened (seed 11: 11 values before); the six-fold surge is a level or shift
    assert_all_caught("bursty_counts")


def test_hourly_business_few_false_flags() -> None:
    assert_few_false_flags("hourly_business")  # measured 0.18-0.37/week, all on the first weekend


def test_hourly_business_anomalies_caught() -> None:
    # measured 2/2 on every seed: the doubling is a level surprise once the first week's departures, judged before
    # the weekly correction existed, no longer count in full
    assert_all_caught("hourly_business")


def test_sensor_regime_changes_few_false_flags() -> None:
    assert_few_false_flags("sensor_regimes")  # measured 0.26-0.53/week


@pytest.mark.xfail(strict=True, reason="measured 4/4, 3/4, 4/4 caught: the noise doubling is missed on seed 12 "
                   "(score 0.07); the two-hour stuck reading is caught as 'stuck', the level step always. Where the "
                   "doubling is caught (seeds 11, 13-20) it is by a chance large step ('spike'), never 'volatility', "
                   "whose effect floor wants steps grown four-fold: a floor at two-fold flags it as volatility on "
                   "seeds 11, 13 and 19 but not 12 (0.42: ~10 values of steps are too few to make a doubling rare), "
                   "and costs NAB 75.8 -> 74.9 standard")
def test_sensor_regime_changes_anomalies_caught() -> None:
    assert_all_caught("sensor_regimes")


def steady_bursty_flags(seed: int) -> float:
    """Flags per week on weeks 3-8 of ten weeks of bursty counts, which hold no anomaly (theirs are in weeks 9-10)."""
    series = bursty_counts(seed, weeks=10)
    flags, _ = flags_of(production_detector(*KINDS["bursty_counts"][1:]), series.times, series.values)
    return sum(flags[2 * 2016:8 * 2016]) / 6.0


if __name__ == "__main__":  # the figures behind the bounds and the xfail reasons
    for kind in KINDS:
        for seed, r in zip(SEEDS, measured(kind), strict=True):
            print(kind, seed, r)
    print("bursty_counts, anomaly-free weeks 3-8, flags/week:",
          {seed: round(steady_bursty_flags(seed), 2) for seed in range(11, 16)})
