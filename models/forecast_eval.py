"""Evaluation of demand forecasters by the M5 rules on rolling origins, and a synthetic retail data set.

``evaluate`` scores forecasters on bucketed sales history (key -> bucket index -> quantity):

- Every series starts at its first non-zero sale and ends at the last bucket of the data set (days without
  a row are zero sales, so a withdrawn item keeps being scored on its zeros).
- Origins are the same calendar buckets for every series: every ``origin_every`` buckets, the last one
  ``max(horizons)`` buckets before the end, ``origins`` of them. At an origin a method has seen the series
  up to and including that bucket and forecasts the next ``max(horizons)``; no forecast sees its actual.
- A series is scored at an origin once it has ``min_history`` buckets since its first sale. The scales are
  recomputed at every origin from the history so far (M5): ``s1 = mean |y_t - y_{t-1}|`` for MASE and the
  pinball loss, ``s2 = mean (y_t - y_{t-1})^2`` for RMSSE. A series-origin whose scale is 0 (a flat
  history) cannot be scored: it is counted and reported, never silently dropped.
- Per method and horizon h, per series over its origins: ``RMSSE = sqrt(mean e^2 / s2)``, ``MASE = mean |e| / s1``,
  scaled pinball loss ``SPL_q = mean pinball_q / s1`` at q = 0.1, 0.5, 0.9, and coverage of the 80% interval
  [q0.1, q0.9]; each is then averaged over series, every series weighing the same (M5 weighs by dollar
  sales; we have no prices). The point forecast is the method's mean; forecasts below 0 are raised to 0
  for every method (demand is never negative).

Methods: ``opsmon`` (``DemandForecaster`` fed online, one ``learn_one`` per bucket, exactly as the
stream does), the built-in seasonal naive, optionally River's ``HoltWinters`` and ``SNARIMAX`` fed the same
way (``compare``) or any River forecaster given as ``extra``, and optionally statsforecast's anchors
re-fitted on the whole history at every origin, as an analyst would (``anchors``; needs the ``eval``
extra). Each reports its cost in CPU time: microseconds per online update, or milliseconds per
fit-and-forecast.

``simulate_retail_sales`` writes the synthetic benchmark: long-tail sku popularity, store and sku weekly
profiles, yearly seasonality, trend, product launches and withdrawals, promotions with a post-promotion
dip, stock-outs, closing days and negative-binomial noise. It is synthetic: figures on it say how the
method behaves on data of that shape, not on any real shop.

>>> rows = simulate_retail_sales(stores=1, skus=3, days=120, seed=1)
>>> series = bucketize(rows, freq="D")
>>> result = evaluate(series, horizons=[1, 7], origins=4)
>>> [m.name for m in result.methods], result.horizons
(['opsmon', 'seasonal_naive'], [1, 7])
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
from typing import Any

from models.forecast import DemandForecaster, Freq, bucket_index, bucket_seconds, season_length

__all__ = [
    "QUANTILES",
    "EvalInputError",
    "EvalResult",
    "MethodResult",
    "Scores",
    "bucketize",
    "evaluate",
    "plot_scores",
    "read_csv",
    "simulate_retail_sales",
    "write_csv",
]

QUANTILES = (0.1, 0.5, 0.9)
ANCHORS = ("SeasonalNaive", "AutoETS", "CrostonOptimized", "TSB", "ADIDA", "IMAPA")
Key = tuple[str, ...]
Row = tuple[object, Key, float]
# One method's forecast at one origin: means per horizon 1..H, and quantiles per horizon (or None).
Fc = tuple[Sequence[float], Sequence[Sequence[float]] | None]


class EvalInputError(ValueError):
    """The input file, its columns or the evaluation's options cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Scores:
    """Errors of one method at one horizon, averaged over the scored series."""

    rmsse: float
    mase: float
    spl: dict[float, float] | None  # scaled pinball loss per quantile level (None: no quantiles)
    coverage: float | None  # share of actuals inside [q0.1, q0.9]
    series: int  # series with at least one scored origin


@dataclass(slots=True)
class MethodResult:
    """Scores per horizon of one method, and its cost."""

    name: str
    kind: str  # "online" (one update per bucket) or "refit" (fitted anew at each origin)
    scores: dict[int, Scores]
    cost_us: float  # microseconds per update (online) or per fit+forecast (refit)


@dataclass(slots=True)
class EvalResult:
    """Scores of every method on the same series, origins and horizons."""

    freq: Freq
    horizons: list[int]
    season: int
    origins: list[int]
    methods: list[MethodResult]
    series: int
    series_scored: int
    series_unscored: int  # series with no scored origin (too short or no scale at any origin)
    origins_without_scale: int  # series-origins skipped because the history's scale was 0
    targets: int  # scored (series, origin) pairs
    state_bytes_median: int
    state_bytes_max: int

    def method(self, name: str) -> MethodResult:
        """The result of the method called ``name``."""
        return next(m for m in self.methods if m.name == name)


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




# ---------------------------------------------------------------------------------------------- methods


class _Online:
    """A forecaster fed one bucket at a time, forecasting at the origins."""

    def __init__(self, name: str, make: Callable[[], Any], quantiles: bool) -> None:
        self.name = name
        self.make = make
        self.quantiles = quantiles


def _opsmon(freq: Freq, hmax: int) -> _Online:
    return _Online("opsmon", lambda: DemandForecaster(freq, max_horizon=hmax), quantiles=True)


def _river_methods(m: int) -> list[_Online]:
    """River's usual forecasters, with settings for daily data and a weekly season."""
    from river import time_series

    return [
        _Online("river.HoltWinters", lambda: time_series.HoltWinters(
            alpha=0.1, beta=0.01, gamma=0.1, seasonality=m, multiplicative=False), quantiles=False),
        _Online("river.SNARIMAX", lambda: time_series.SNARIMAX(p=1, d=0, q=1, m=m, sp=1, sd=1, sq=1),
                quantiles=False),
    ]


def _anchor_models(m: int) -> dict[str, Any]:
    """statsforecast's models as an analyst would configure them for daily demand with a weekly season."""
    try:
        from statsforecast.models import ADIDA, IMAPA, TSB, AutoETS, CrostonOptimized, SeasonalNaive
    except ImportError as exc:
        raise EvalInputError("--anchors needs statsforecast: pip install 'opsmon[eval]'") from exc
    return {
        "SeasonalNaive": SeasonalNaive(season_length=m),
        "AutoETS": AutoETS(season_length=m),
        "CrostonOptimized": CrostonOptimized(),
        "TSB": TSB(alpha_d=0.2, alpha_p=0.2),
        "ADIDA": ADIDA(),
        "IMAPA": IMAPA(),
    }


def _anchor_forecast(model: Any, history: Sequence[float], hmax: int, with_interval: bool) -> Fc:
    """Fit ``model`` on ``history`` and forecast ``hmax`` buckets (with the 80% interval if it has one)."""
    import numpy as np

    y = np.asarray(history, dtype=float)
    if with_interval:
        out = model.forecast(y=y, h=hmax, level=[80])
        mean = [float(v) for v in out["mean"]]
        qs = [(float(lo), mu, float(hi)) for lo, mu, hi in zip(out["lo-80"], mean, out["hi-80"], strict=True)]
        return mean, qs
    out = model.forecast(y=y, h=hmax)
    return [float(v) for v in out["mean"]], None


def _seasonal_naive(history: Sequence[float], hmax: int, m: int) -> list[float]:
    n = len(history)
    return [history[n - m + (h - 1) % m] if n >= m else history[-1] for h in range(1, hmax + 1)]


# ---------------------------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class _Acc:
    """Running sums of one (series, method, horizon)."""

    sq: float = 0.0
    abs: float = 0.0
    pin: list[float] = field(default_factory=lambda: [0.0] * len(QUANTILES))
    covered: int = 0
    n: int = 0


def _pinball(y: float, q: float, tau: float) -> float:
    return tau * (y - q) if y >= q else (1.0 - tau) * (q - y)


def _score(ys: Sequence[float], fc: Fc, hs: Sequence[int], s1: float, s2: float,
           accs: list[_Acc]) -> None:
    means, qs = fc
    for i, h in enumerate(hs):
        y = ys[i]
        mu = max(means[h - 1], 0.0)
        e = y - mu
        a = accs[i]
        a.sq += e * e / s2
        a.abs += abs(e) / s1
        if qs is not None:
            row = [max(v, 0.0) for v in qs[h - 1]]
            for j, tau in enumerate(QUANTILES):
                a.pin[j] += _pinball(y, row[j], tau) / s1
            a.covered += row[0] <= y <= row[-1]
        a.n += 1


def _aggregate(per_series: list[list[_Acc]], hs: Sequence[int], quantiles: bool) -> dict[int, Scores]:
    out: dict[int, Scores] = {}
    for i, h in enumerate(hs):
        rows = [accs[i] for accs in per_series if accs[i].n]
        k = len(rows)
        nan = math.nan
        spl = {tau: sum(a.pin[j] / a.n for a in rows) / k if k else nan for j, tau in enumerate(QUANTILES)}
        covered = sum(a.covered for a in rows)
        total = sum(a.n for a in rows)
        out[h] = Scores(
            rmsse=sum(math.sqrt(a.sq / a.n) for a in rows) / k if k else nan,
            mase=sum(a.abs / a.n for a in rows) / k if k else nan,
            spl=spl if quantiles else None,
            coverage=covered / total if quantiles and total else None,
            series=k,
        )
    return out


# ---------------------------------------------------------------------------------------------- evaluation


def _span(series: dict[Key, dict[int, float]], end: int) -> dict[Key, list[float]]:
    """Each series from its first non-zero sale to ``end``, zero-filled (none if it never sold)."""
    out: dict[Key, list[float]] = {}
    for k, buckets in series.items():
        sold = [i for i, v in buckets.items() if v > 0]
        if not sold:
            continue
        first = min(sold)
        out[k] = [max(buckets.get(i, 0.0), 0.0) for i in range(first, end + 1)]
    return out


def evaluate(
    series: dict[Key, dict[int, float]],
    *,
    freq: Freq = "D",
    horizons: Sequence[int] = (1, 7, 14),
    origins: int = 8,
    origin_every: int = 7,
    min_history: int = 28,
    compare: bool = False,
    anchors: bool = False,
    make_forecaster: Callable[[], Any] | None = None,
    extra: Sequence[tuple[str, Callable[[], Any]]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Score opsmon's forecaster (and optionally River's and statsforecast's) on the same rolling origins."""
    if not series:
        raise EvalInputError("no series to evaluate")
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise EvalInputError("horizons must be >= 1")
    if origins < 1 or origin_every < 1 or min_history < 2:
        raise EvalInputError("need origins >= 1, origin_every >= 1 and min_history >= 2")
    m = season_length(freq)
    seconds = bucket_seconds(freq)
    hmax = hs[-1]
    end = max(max(b) for b in series.values() if b)
    first_sale = {k: min((i for i, v in b.items() if v > 0), default=None) for k, b in series.items()}
    ys = _span(series, end)
    origin_list = sorted(end - hmax - j * origin_every for j in range(origins))
    start0 = min(i for i in first_sale.values() if i is not None) if ys else end
    if origin_list[0] < start0:
        raise EvalInputError(f"{origins} origins {origin_every} buckets apart, plus the horizon {hmax}, "
                             f"do not fit in the data ({end - start0 + 1} buckets): use fewer origins")

    online = [_opsmon(freq, hmax)]
    if make_forecaster is not None:
        online[0] = _Online("opsmon", make_forecaster, quantiles=True)
    if compare:
        online += _river_methods(m)
    # Any other River forecaster (``--model``), fed the same way; quantiles if it has them.
    online += [_Online(name, make, quantiles=hasattr(make(), "forecast_quantiles")) for name, make in extra]
    refit = _anchor_models(m) if anchors else {}
    names = [o.name for o in online] + ["seasonal_naive"] + list(refit)
    if len(set(names)) != len(names):
        raise EvalInputError(f"two methods with the same name: {sorted(n for n in names if names.count(n) > 1)}")
    quantile_methods = {"SeasonalNaive", "AutoETS", *(o.name for o in online if o.quantiles)}
    keys = sorted(ys)
    accs = {name: [[_Acc() for _ in hs] for _ in keys] for name in names}
    cost = {name: [0, 0] for name in names}  # CPU nanoseconds, calls (CPU time: the machine may be shared)
    compiled: set[str] = set()
    no_scale = 0
    targets = 0
    sizes: list[int] = []
    scored_series: set[Key] = set()

    for si, k in enumerate(keys):
        y = ys[k]
        first = first_sale[k]
        assert first is not None
        # Origins (as positions in y) where this series has enough history and the targets exist.
        due: list[tuple[int, float, float]] = []
        for o in origin_list:
            pos = o - first
            if pos + 1 < min_history:
                continue
            hist = y[: pos + 1]
            diffs = [b - a for a, b in zip(hist, hist[1:], strict=False)]
            s1 = sum(abs(d) for d in diffs) / len(diffs)
            s2 = sum(d * d for d in diffs) / len(diffs)
            if s1 <= 0.0:
                no_scale += 1
                continue
            due.append((pos, s1, s2))
        if due:
            scored_series.add(k)
            targets += len(due)
        due_at = {pos: (s1, s2) for pos, s1, s2 in due}
        last_due = due[-1][0] if due else -1
        for method in online:
            model = method.make()
            ns = calls = 0
            for pos in range(last_due + 1):
                # opsmon reads the bucket's time from x; River's forecasters would take it as a feature.
                x = {"t": float((first + pos) * seconds)} if method.quantiles else None
                t0 = time.process_time_ns()
                model.learn_one(y[pos], x)
                ns += time.process_time_ns() - t0
                calls += 1
                if pos in due_at:
                    s1, s2 = due_at[pos]
                    means = list(model.forecast(hmax))
                    qs = model.forecast_quantiles(hmax, QUANTILES) if method.quantiles else None
                    actual = [y[pos + h] for h in hs]
                    _score(actual, (means, qs), hs, s1, s2, accs[method.name][si])
            cost[method.name][0] += ns
            cost[method.name][1] += calls
            if method.name == "opsmon" and calls:
                sizes.append(len(pickle.dumps(model)))
        for pos, s1, s2 in due:
            hist = y[: pos + 1]
            actual = [y[pos + h] for h in hs]
            _score(actual, (_seasonal_naive(hist, hmax, m), None), hs, s1, s2,
                   accs["seasonal_naive"][si])
            for name, model in refit.items():
                t0 = time.process_time_ns()
                fc = _anchor_forecast(model, hist, hmax, name in quantile_methods)
                if name in compiled:  # the first call compiles statsforecast's numba code: not a fit's cost
                    cost[name][0] += time.process_time_ns() - t0
                    cost[name][1] += 1
                compiled.add(name)
                _score(actual, fc, hs, s1, s2, accs[name][si])
        if progress is not None:
            progress(si + 1, len(keys))

    methods = []
    for name in names:
        kind = "refit" if name in refit else "online"
        ns, calls = cost[name]
        methods.append(MethodResult(
            name=name, kind=kind, scores=_aggregate(accs[name], hs, name in quantile_methods),
            cost_us=ns / calls / 1000.0 if calls else math.nan,
        ))
    sizes.sort()
    return EvalResult(
        freq=freq, horizons=hs, season=m, origins=origin_list, methods=methods, series=len(series),
        series_scored=len(scored_series), series_unscored=len(series) - len(scored_series),
        origins_without_scale=no_scale, targets=targets,
        state_bytes_median=sizes[len(sizes) // 2] if sizes else 0, state_bytes_max=sizes[-1] if sizes else 0,
    )


# ---------------------------------------------------------------------------------------------- plot


def plot_scores(result: EvalResult, path: Path, title: str = "") -> Path:
    """Write a PNG of RMSSE per horizon and scaled pinball loss at q=0.1/0.9 per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    hs = result.horizons
    width = 0.8 / max(len(result.methods), 1)
    for i, mres in enumerate(result.methods):
        xs = [j + i * width for j in range(len(hs))]
        ax1.bar(xs, [mres.scores[h].rmsse for h in hs], width, label=mres.name)
        if mres.scores[hs[0]].spl is not None:
            for tau, marker in ((0.1, "v"), (0.9, "^")):
                ax2.plot([str(h) for h in hs], [mres.scores[h].spl[tau] for h in hs],  # type: ignore[index]
                         marker=marker, label=f"{mres.name} q={tau}")
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(hs))], [f"h={h}" for h in hs])
    ax1.set_ylabel("RMSSE (lower is better)")
    ax1.legend(fontsize=7)
    ax1.grid(axis="y", alpha=0.3)
    ax2.set_xlabel("horizon")
    ax2.set_ylabel("scaled pinball loss")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.suptitle(title or f"{result.series_scored} series, {len(result.origins)} rolling origins", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
