"""Offline evaluation of ``DemandForecaster`` by strictly online replay, and a synthetic retail data set.

``evaluate`` replays bucketed history in time order through one ``DemandForecaster`` per key (the same
class and calls the stream uses). At every bucket of every series it first scores the forecasts made
earlier for that bucket, then learns the bucket, then forecasts the next ``max(horizons)`` buckets; so no
forecast ever sees its actual. Two baselines run in the same pass: seasonal naive (``y[t+h-m*ceil(h/m)]``)
and naive (``y[t]``).

Definitions (per horizon h, method M; the forecaster's point forecast is the median from
``forecast_quantiles``, which is the right point for absolute errors; its ``mean`` is what stock projections add up):

- A series spans its first to its last row; buckets without rows inside that span are zero sales.
- The first ``warmup`` buckets of each series are in-sample: they are learned but not scored. Its MASE
  scale is the in-sample MAE of the seasonal naive forecast, ``mean_{t=m+1..warmup} |y_t - y_{t-m}|``
  (Hyndman & Koehler 2006, seasonal version, m = 7 daily / 168 hourly). Series whose scale is 0 (no
  sales or a flat profile in the warm-up) have no MASE and are counted apart.
- ``MASE_h(M) = mean over series of [ mean over origins of |y_{t+h} - F^M_{t+h|t}| / scale ]`` (M4 style:
  each series weighs the same), over origins whose target is after the warm-up.
- ``sMAPE_h(M) = mean over series of [ mean over origins of 200 |y - F| / (|y| + |F|) ]`` with 0/0 taken
  as 0 (a correctly forecast zero is no error), so it stays defined on intermittent series.
- Coverage is the share of scored targets inside the forecaster's interval.

``simulate_retail_sales`` writes the synthetic benchmark: long-tail sku popularity, store and sku weekly
profiles, yearly seasonality, trend, product launches and withdrawals, promotions with a post-promotion
dip, stock-outs, closing days and negative-binomial noise. It is synthetic: figures on it say how the
method behaves on data of that shape, not on any real shop.

>>> rows = simulate_retail_sales(stores=1, skus=3, days=70, seed=1)
>>> series = bucketize(rows, freq="D")
>>> result = evaluate(series, freq="D", horizons=[1, 7], warmup=28)
>>> sorted(result.scores), result.horizons
(['forecaster', 'naive', 'seasonal_naive'], [1, 7])
"""

from __future__ import annotations

import csv
import math
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from models.forecast import DemandForecaster, Freq, bucket_index, bucket_seconds, season_length

__all__ = [
    "EvalResult",
    "Scores",
    "bucketize",
    "evaluate",
    "plot_series",
    "read_csv",
    "simulate_retail_sales",
    "write_csv",
]

METHODS = ("forecaster", "seasonal_naive", "naive")
Key = tuple[str, ...]
Row = tuple[object, Key, float]


class EvalInputError(ValueError):
    """The input file or its columns cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Scores:
    """Errors of one method at one horizon."""

    mase: float
    smape: float
    coverage: float | None
    series: int  # series with a MASE (non-zero scale)


@dataclass(slots=True)
class Trace:
    """What one series looked like: actual and the forecaster's h-step forecast per bucket."""

    key: Key
    horizon: int
    index: list[int] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)


@dataclass(slots=True)
class EvalResult:
    """Per-method, per-horizon scores of one replay, plus cost figures of the forecaster."""

    freq: Freq
    horizons: list[int]
    season: int
    warmup: int
    scores: dict[str, dict[int, Scores]]
    series: int
    series_without_scale: int
    buckets: int
    us_per_bucket: float  # learn_one + forecast(max horizon), microseconds
    state_bytes_median: int
    state_bytes_max: int
    traces: list[Trace]


# ---------------------------------------------------------------------------------------------- input


def _parse_time(text: str) -> datetime | float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise EvalInputError(f"cannot read time {text!r}: use ISO 8601 or epoch seconds") from exc


def read_csv(path: Path, time_col: str, key_cols: Sequence[str], value_col: str) -> list[Row]:
    """Rows ``(time, key, value)`` of a CSV file; an empty value counts as 0."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in (time_col, value_col, *key_cols) if c not in header]
        if missing:
            raise EvalInputError(f"{path}: no column(s) {', '.join(missing)} (has: {', '.join(header)})")
        rows: list[Row] = []
        for line, rec in enumerate(reader, start=2):
            raw = (rec[value_col] or "").strip()
            try:
                value = float(raw) if raw else 0.0
            except ValueError as exc:
                raise EvalInputError(f"{path}:{line}: {value_col}={raw!r} is not a number") from exc
            rows.append((_parse_time(rec[time_col]), tuple(rec[c] for c in key_cols), value))
    if not rows:
        raise EvalInputError(f"{path}: no rows")
    return rows


def bucketize(rows: Iterable[Row], freq: Freq) -> dict[Key, dict[int, float]]:
    """Sum values per key and bucket index (see ``models.forecast.bucket_index``)."""
    series: dict[Key, dict[int, float]] = {}
    for t, key, value in rows:
        buckets = series.setdefault(key, {})
        i = bucket_index(t, freq)  # type: ignore[arg-type]
        buckets[i] = buckets.get(i, 0.0) + value
    return series


def write_csv(path: Path, rows: Iterable[Row], columns: Sequence[str]) -> None:
    """Write rows ``(time, key, value)`` with ``columns`` = time, key columns..., value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(columns)
        for t, key, value in rows:
            stamp = t.isoformat() if isinstance(t, date | datetime) else t
            out.writerow([stamp, *key, f"{value:g}"])


# ---------------------------------------------------------------------------------------------- replay


@dataclass(slots=True)
class _Acc:
    """Running sums of one (series, method, horizon)."""

    abs_err: float = 0.0
    smape: float = 0.0
    covered: int = 0
    n: int = 0


def evaluate(
    series: dict[Key, dict[int, float]],
    *,
    freq: Freq = "D",
    horizons: Sequence[int] = (1, 7, 14),
    warmup: int | None = None,
    season: int | None = None,
    plots: int = 4,
    plot_last: int = 120,
    make_forecaster: Callable[[], DemandForecaster] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Replay ``series`` (key -> bucket index -> value) online and score the forecaster and baselines."""
    if not series:
        raise EvalInputError("no series to evaluate")
    hs = sorted({int(h) for h in horizons})
    if hs[0] < 1:
        raise EvalInputError("horizons must be >= 1")
    m = season or season_length(freq)
    warm = warmup if warmup is not None else 8 * m if freq == "D" else 2 * m
    hmax = hs[-1]
    new = make_forecaster or (lambda: DemandForecaster(freq, max_horizon=max(hmax, 1)))
    seconds = bucket_seconds(freq)

    keys = sorted(series)
    span = {k: (min(series[k]), max(series[k])) for k in keys}
    t0 = min(s for s, _ in span.values())
    t1 = max(e for _, e in span.values())
    models = {k: new() for k in keys}
    history: dict[Key, list[float]] = {k: [] for k in keys}  # whole series, for baselines and scale
    # Pending forecasts per key: target index -> list of (method, h, predicted, lower, upper, mean).
    pending: dict[Key, dict[int, list[tuple[int, int, float, float, float, float]]]] = {k: {} for k in keys}
    acc = {k: [[_Acc() for _ in hs] for _ in METHODS] for k in keys}
    h_pos = {h: i for i, h in enumerate(hs)}
    traced = _pick_traced(series, plots)
    traces = {k: Trace(k, hs[0]) for k in traced}
    cost_ns = 0
    cost_n = 0

    steps = t1 - t0 + 1
    for step, t in enumerate(range(t0, t1 + 1)):
        for k in keys:
            first, last = span[k]
            if t < first or t > last:
                continue
            y = series[k].get(t, 0.0)
            hist = history[k]
            hist.append(y)
            age = t - first  # 0-based position in the series
            due = pending[k].pop(t, ())
            if age >= warm:
                for method, h, pred, lo, hi, _ in due:
                    a = acc[k][method][h_pos[h]]
                    err = abs(y - pred)
                    a.abs_err += err
                    denom = abs(y) + abs(pred)
                    a.smape += 200.0 * err / denom if denom > 0 else 0.0
                    a.covered += lo <= y <= hi
                    a.n += 1
            if k in traces:
                for method, h, pred, lo, hi, mean in due:
                    if method == 0 and h == hs[0]:
                        tr = traces[k]
                        tr.index.append(t)
                        tr.actual.append(y)
                        tr.predicted.append(pred)
                        tr.mean.append(mean)
                        tr.lower.append(lo)
                        tr.upper.append(hi)
            model = models[k]
            start = time.perf_counter_ns()
            model.learn_one(y, {"t": float(t * seconds)})
            means = model.forecast(hmax)
            bands = model.forecast_quantiles(hmax)
            cost_ns += time.perf_counter_ns() - start
            cost_n += 1
            if t + 1 > last:
                continue  # nothing left to score for this series
            slot = pending[k]
            for h in hs:
                target = t + h
                if target > last:
                    break
                lo, med, hi = bands[h - 1]
                lag = m * math.ceil(h / m)
                snaive = hist[-lag + h - 1] if len(hist) >= lag else hist[0]
                todo = slot.setdefault(target, [])
                todo.append((0, h, med, lo, hi, means[h - 1]))
                todo.append((1, h, snaive, math.nan, math.nan, snaive))
                todo.append((2, h, y, math.nan, math.nan, y))
        if progress is not None:
            progress(step + 1, steps)

    scales = {k: _seasonal_naive_scale(history[k][:warm], m) for k in keys}
    scores = _aggregate(acc, scales, hs)
    sizes = sorted(len(pickle.dumps(mod)) for mod in models.values())
    for tr in traces.values():
        for values in (tr.index, tr.actual, tr.predicted, tr.mean, tr.lower, tr.upper):
            del values[:-plot_last]
    return EvalResult(
        freq=freq, horizons=hs, season=m, warmup=warm, scores=scores, series=len(keys),
        series_without_scale=sum(1 for s in scales.values() if not s > 0), buckets=cost_n,
        us_per_bucket=cost_ns / max(cost_n, 1) / 1000.0,
        state_bytes_median=sizes[len(sizes) // 2], state_bytes_max=sizes[-1],
        traces=[traces[k] for k in traced],
    )


def _seasonal_naive_scale(values: Sequence[float], m: int) -> float:
    """In-sample MAE of the seasonal naive forecast: ``mean |y_t - y_{t-m}|`` (0 if too short)."""
    diffs = [abs(values[i] - values[i - m]) for i in range(m, len(values))]
    return sum(diffs) / len(diffs) if diffs else 0.0


def _aggregate(acc: dict[Key, list[list[_Acc]]], scales: dict[Key, float], hs: list[int]
               ) -> dict[str, dict[int, Scores]]:
    """Average per-series MASE and sMAPE over series, per method and horizon."""
    out: dict[str, dict[int, Scores]] = {}
    for mi, method in enumerate(METHODS):
        per_h: dict[int, Scores] = {}
        for hi, h in enumerate(hs):
            mases: list[float] = []
            smapes: list[float] = []
            covered = n = 0
            for k, per_method in acc.items():
                a = per_method[mi][hi]
                if not a.n:
                    continue
                smapes.append(a.smape / a.n)
                covered += a.covered
                n += a.n
                if scales[k] > 0:
                    mases.append(a.abs_err / a.n / scales[k])
            per_h[h] = Scores(
                mase=sum(mases) / len(mases) if mases else math.nan,
                smape=sum(smapes) / len(smapes) if smapes else math.nan,
                coverage=covered / n if method == "forecaster" and n else None,
                series=len(mases),
            )
        out[method] = per_h
    return out


def _pick_traced(series: dict[Key, dict[int, float]], count: int) -> list[Key]:
    """A few keys to plot: from the busiest series down to a typical (median-volume) one."""
    if count <= 0:
        return []
    by_volume = sorted(series, key=lambda k: -sum(series[k].values()))
    n = len(by_volume)
    picks = [by_volume[min(n - 1, round(i * (n // 2) / max(count - 1, 1)))] for i in range(count)]
    return list(dict.fromkeys(picks))


# ---------------------------------------------------------------------------------------------- plot


def plot_series(result: EvalResult, path: Path) -> Path:
    """Write a PNG of forecast vs actual, with the interval, for the traced series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = [t for t in result.traces if t.index]
    rows = max(len(traces), 1)
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.6 * rows), squeeze=False)
    seconds = bucket_seconds(result.freq)
    for ax, tr in zip(axes[:, 0], traces, strict=False):
        x = [datetime(1970, 1, 1) + timedelta(seconds=i * seconds) for i in tr.index]
        ax.fill_between(x, tr.lower, tr.upper, step="mid", alpha=0.25, color="tab:blue",
                        label=f"{round(100 * _coverage_nominal())}% interval")
        ax.step(x, tr.actual, where="mid", color="black", lw=1.0, label="actual")
        ax.plot(x, tr.predicted, color="tab:blue", lw=1.4, label=f"forecast (median), {tr.horizon} ahead")
        ax.plot(x, tr.mean, color="tab:orange", lw=0.9, ls="--", label="expected demand (mean)")
        ax.set_title(" / ".join(tr.key) or "series", fontsize=10, loc="left")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    if traces:
        axes[0, 0].legend(loc="upper left", fontsize=8, ncols=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _coverage_nominal() -> float:
    return DemandForecaster().coverage


# ---------------------------------------------------------------------------------------------- synthetic data


def simulate_retail_sales(
    stores: int = 5, skus: int = 40, days: int = 730, seed: int = 0, start: date = date(2023, 1, 2)
) -> list[Row]:
    """Seeded synthetic daily unit sales ``(date, (store, sku), quantity)``; days without sales have no row."""
    import numpy as np

    rng = np.random.default_rng(seed)
    day = np.arange(days)
    dates = [start + timedelta(days=int(d)) for d in day]
    weekday = np.array([d.weekday() for d in dates])
    doy = np.array([d.timetuple().tm_yday for d in dates])
    closed_holiday = np.array([(d.month, d.day) in {(12, 25), (1, 1)} for d in dates])
    base_week = np.array([0.85, 0.8, 0.9, 1.0, 1.2, 1.6, 0.65])
    rows: list[Row] = []
    for s in range(stores):
        size = rng.lognormal(0.0, 0.5)
        week = base_week * rng.uniform(0.85, 1.15, 7)
        if rng.random() < 0.3:
            week[6] = 0.0  # closed on Sundays
        store_year = rng.uniform(0.0, 0.25)
        ranks = rng.permutation(skus) + 1
        for j in range(skus):
            rate = size * 25.0 * ranks[j] ** -1.1  # long tail: ~25/day down to well under 1/day
            tilt = rng.uniform(0.5, 1.6)  # weekend-heavy or flat skus
            prof = np.where(week > 0, week**tilt, 0.0)
            prof = prof / prof[prof > 0].mean()
            growth = rng.normal(0.0, 0.25)
            phase = rng.uniform(0, 365)
            amp = store_year + rng.uniform(0.0, 0.2)
            mu = rate * prof[weekday] * np.exp(growth * day / 365.0)
            mu = mu * (1.0 + amp * np.sin(2 * np.pi * (doy - phase) / 365.0))
            mu = mu * np.where((doy > 330) & (rng.random() < 0.5), 1.4, 1.0)  # some skus sell for Christmas
            mu[closed_holiday] = 0.0
            alive = np.ones(days, dtype=bool)
            if rng.random() < 0.12:
                alive[: rng.integers(30, days // 2)] = False  # launched later
            if rng.random() < 0.08:
                alive[rng.integers(days // 2, days - 30):] = False  # withdrawn
            for _ in range(rng.poisson(4 * days / 365)):  # promotions and the dip after them
                p0 = int(rng.integers(0, days))
                plen = int(rng.integers(3, 11))
                mu[p0:p0 + plen] *= rng.uniform(1.5, 3.0)
                mu[p0 + plen:p0 + plen + 7] *= 0.8
            stock_out = np.zeros(days, dtype=bool)
            for _ in range(rng.poisson(3 * days / 365)):
                o0 = int(rng.integers(0, days))
                stock_out[o0:o0 + int(rng.integers(1, 8))] = True
            mu = np.where(alive & ~stock_out, mu, 0.0)
            k = 3.0  # negative binomial (gamma-Poisson) dispersion
            lam = rng.gamma(k, np.maximum(mu, 1e-12) / k)
            qty = rng.poisson(np.where(mu > 0, lam, 0.0))
            key = (f"store{s + 1:02d}", f"sku{j + 1:03d}")
            rows.extend((dates[d], key, float(qty[d])) for d in np.flatnonzero(qty))
    rows.sort(key=lambda r: (r[0], r[1]))  # type: ignore[arg-type, return-value]
    return rows
