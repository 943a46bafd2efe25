"""Pure computations of the bench: rates, percentiles, ratios, slopes, the stage split.

>>> percentile([1.0, 2.0, 3.0, 4.0], 50)
2.5
>>> rate_between((10.0, 1_000), (12.0, 21_000))
10000.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linearly interpolated (numpy's default); NaN for no values.

    Values may contain ``inf`` (an event never acknowledged): a percentile that reaches one is ``inf``.
    """
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    if math.isinf(xs[hi]) or math.isinf(xs[lo]):
        return xs[hi] if pos > lo else xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99, 99.9)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., ...}`` of ``values`` (one sort for all)."""
    xs = sorted(values)
    return {f"p{q:g}": percentile(xs, q) for q in qs}


def rate_between(first: tuple[float, int], last: tuple[float, int]) -> float:
    """Events per second between two ``(time, count)`` observations; 0 when no time passed."""
    dt = last[0] - first[0]
    return (last[1] - first[1]) / dt if dt > 0 else 0.0


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0 with fewer than two distinct x).

    >>> slope([0, 1, 2, 3], [1, 3, 5, 7])
    2.0
    """
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def stage_split(stages_us: Mapping[str, float], total_us: float | None, cpu_us: float | None = None,
                rest: str = "Faust + aiokafka + asyncio (rest)") -> list[dict]:
    """Rows ``{stage, us_per_event, share}``: the measured stages, then what is left of the worker's time.

    ``total_us`` is the worker's wall time per event (1e6 / events per second). With its CPU time per
    event ``cpu_us`` too, the rest splits into CPU spent outside the measured stages (Faust, aiokafka,
    asyncio) and time not on the CPU at all (waiting for Kafka, for InfluxDB, or for a core). Without
    ``total_us`` the shares are of the measured stages alone. A negative rest (in-process stages slower
    than the worker) is reported as it is, so the discrepancy shows.

    >>> [(r["stage"], r["us_per_event"], r["share"]) for r in stage_split({"a": 10.0, "b": 30.0}, 80.0)]
    [('a', 10.0, 0.125), ('b', 30.0, 0.375), ('Faust + aiokafka + asyncio (rest)', 40.0, 0.5)]
    >>> [r["us_per_event"] for r in stage_split({"a": 10.0}, 100.0, cpu_us=60.0)]
    [10.0, 50.0, 40.0]
    """
    measured = sum(stages_us.values())
    total = total_us if total_us else measured
    rows = [{"stage": k, "us_per_event": round(v, 2), "share": round(v / total, 4) if total else 0.0}
            for k, v in stages_us.items()]
    if total_us:
        parts = [(rest, total_us - measured)]
        if cpu_us is not None:
            parts = [(f"{rest}, on CPU", cpu_us - measured), ("waiting (not on CPU)", total_us - cpu_us)]
        rows += [{"stage": name, "us_per_event": round(v, 2), "share": round(v / total, 4)} for name, v in parts]
    return rows


def flat_and_bounded(ts: Sequence[float], rss: Sequence[float], lag: Sequence[float], rate: float,
                     rss_tolerance: float = 0.05) -> dict:
    """Soak verdict from samples: memory flat (second-half growth within ``rss_tolerance`` of the RSS),
    lag bounded (not growing in the second half, and never more than 30 s of traffic).

    >>> v = flat_and_bounded([0, 10, 20, 30], [100.0, 101.0, 101.0, 101.0], [5, 9, 6, 7], rate=100.0)
    >>> v["memory_flat"], v["lag_bounded"]
    (True, True)
    """
    half = len(ts) // 2
    t2, r2, l2 = ts[half:], rss[half:], lag[half:]
    span = (t2[-1] - t2[0]) if len(t2) > 1 else 0.0
    rss_slope = slope(t2, r2)
    lag_slope = slope(t2, l2)
    growth = rss_slope * span
    ref = max(r2) if r2 else 0.0
    memory_flat = bool(ref) and growth <= rss_tolerance * ref
    # Lag may wobble by a batch or two; it must not trend up by more than 1% of the offered rate.
    lag_bounded = bool(lag) and max(lag) <= 30 * rate and lag_slope <= 0.01 * rate
    return {"rss_slope_per_min": rss_slope * 60, "rss_growth_second_half": growth, "lag_slope_per_s": lag_slope,
            "lag_max": max(lag) if lag else 0, "lag_last": lag[-1] if lag else 0,
            "memory_flat": memory_flat, "lag_bounded": lag_bounded}
