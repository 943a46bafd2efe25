"""Cost per value of the anomaly detectors the stream could run, measured in one process, one core.

    .venv/bin/python bench/bench_models.py [--n 50000] [--repeat 3] [--nab DATA_DIR]

Runs score + learn on the same synthetic five-minute series (daily cycle, noise, a few spikes; 170
days at the default ``--n``, so the weekly correction is in use) for opsmon's ``SeriesDetector`` and,
as baselines, river's ``HalfSpaceTrees`` (given the value range, as it expects features in [0, 1])
and ``QuantileFilter(GaussianScorer)``; then opsmon on a till's per-minute transaction counts (what
the stream scores per closed window) and, with ``--nab``, over every file of a NAB corpus (spiky,
flat and seasonal series alike). Prints microseconds per value (best of ``--repeat`` runs) and the
pickled size of each model at the end of its run.
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from river import anomaly  # noqa: E402

from models.alert_filter import AlertFilter  # noqa: E402
from models.anomaly import SeriesDetector  # noqa: E402
from models.calibrated import CalibratedDetector  # noqa: E402

STEP = 300.0


def series(n: int, seed: int = 0) -> list[float]:
    """Daily cycle plus noise, with a spike every few thousand values."""
    rng = random.Random(seed)
    xs = [20 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.5) for i in range(n)]
    for i in range(2000, n, 3001):
        xs[i] += 8.0
    return xs


def opsmon_process(xs: list[float]) -> tuple[Callable[[], None], object]:
    """``AlertFilter(SeriesDetector()).process_one``: score, decide, learn (what the stream calls)."""
    det = AlertFilter(SeriesDetector())

    def go() -> None:
        p = det.process_one
        for i, x in enumerate(xs):
            p(x, i * STEP)
    return go, det


def opsmon_split(xs: list[float]) -> tuple[Callable[[], None], object]:
    """``score_one`` then ``learn_one``, River's signature (a dict per value; features computed twice)."""
    det = SeriesDetector()

    def go() -> None:
        s, learn = det.score_one, det.learn_one
        for i, y in enumerate(xs):
            x = {"t": i * STEP}
            s(x, y)
            learn(x, y)
    return go, det


def calibrated_gauss(xs: list[float]) -> tuple[Callable[[], None], object]:
    """River's GaussianScorer behind opsmon's calibration and decision, as ``OPSMON_MODELS`` runs it."""
    det = AlertFilter(CalibratedDetector(anomaly.GaussianScorer(window_size=None, grace_period=100)))

    def go() -> None:
        p = det.process_one
        for i, x in enumerate(xs):
            p(x, i * STEP)
    return go, det


def till(n: int, seed: int = 0) -> list[float]:
    """Transactions per minute at a till: about 3, busier at midday and on Saturdays."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hour, day = (i % 1440) / 60, (i // 1440) % 7
        mean = 3.0 * (1.5 if 11 <= hour < 14 else 1.0) * (1.4 if day == 2 else 1.0)
        out.append(float(sum(rng.random() < mean / 8 for _ in range(8))))
    return out


def opsmon_minutes(xs: list[float]) -> tuple[Callable[[], None], object]:
    """``process_one`` on per-minute windows (timestamps a minute apart)."""
    det = AlertFilter(SeriesDetector(warmup=60))

    def go() -> None:
        p = det.process_one
        for i, x in enumerate(xs):
            p(x, i * 60.0)
    return go, det


def nab_corpus(data: Path) -> list[tuple[list[float], list[float]]]:
    """Every ``<category>/<name>.csv`` of a NAB data directory: (timestamps, values)."""
    from opsmon.cli.eval_nab import read_series

    out = []
    for path in sorted(data.glob("*/*.csv")):
        stamps, values = read_series(path)
        out.append(([ts.replace(tzinfo=UTC).timestamp() for ts in stamps], values))
    return out


def opsmon_nab(files: list[tuple[list[float], list[float]]]) -> tuple[Callable[[], None], object]:
    """A fresh production detector per NAB file, as ``opsmon eval nab`` runs it."""
    dets = [AlertFilter(SeriesDetector()) for _ in files]

    def go() -> None:
        for det, (ts, xs) in zip(dets, files, strict=True):
            p = det.process_one
            for t, x in zip(ts, xs, strict=True):
                p(x, t)
    return go, max(dets, key=lambda d: len(pickle.dumps(d)))


def river_hst(xs: list[float]) -> tuple[Callable[[], None], object]:
    """river HalfSpaceTrees on {'x': value} with the value range as limits."""
    det = anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, limits={"x": (min(xs), max(xs))}, seed=1)

    def go() -> None:
        for x in xs:
            d = {"x": x}
            det.score_one(d)
            det.learn_one(d)
    return go, det


def river_quantile_gauss(xs: list[float]) -> tuple[Callable[[], None], object]:
    """river QuantileFilter(GaussianScorer, q=0.995): score, classify, learn."""
    det = anomaly.QuantileFilter(anomaly.GaussianScorer(window_size=None, grace_period=100), q=0.995)

    def go() -> None:
        for x in xs:
            det.classify(det.score_one(None, x))
            det.learn_one(None, x)
    return go, det


def measure(make: Callable[[Any], tuple[Callable[[], None], object]], data: Any, n: int,
            repeat: int) -> tuple[float, int]:
    """Best-of-``repeat`` microseconds per value over ``n`` values (fresh models each run), and the
    (largest) model's pickle size."""
    best = math.inf
    model: object = None
    for _ in range(repeat):
        go, model = make(data)
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        go()
        dt = time.perf_counter() - t0
        gc.enable()
        best = min(best, dt / n * 1e6)
    return best, len(pickle.dumps(model))


def main() -> None:
    """Run every detector and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="values per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nab", type=Path, help="NAB data directory (<category>/<name>.csv): also time the corpus")
    args = ap.parse_args()
    xs = series(args.n)
    slow = xs[: max(2_000, args.n // 10)]  # HalfSpaceTrees is slow: a shorter run is enough
    minutes = till(min(args.n, 20_160))  # two weeks of per-minute windows
    rows: list[tuple[str, Callable[[Any], tuple[Callable[[], None], object]], Any, int]] = [
        ("opsmon AlertFilter(SeriesDetector).process_one", opsmon_process, xs, len(xs)),
        ("opsmon score_one(x, y) + learn_one(x, y)", opsmon_split, xs, len(xs)),
        ("opsmon, a till's per-minute windows", opsmon_minutes, minutes, len(minutes)),
        ("river QuantileFilter(GaussianScorer)", river_quantile_gauss, xs, len(xs)),
        ("opsmon AlertFilter(CalibratedDetector(GaussianScorer))", calibrated_gauss, xs, len(xs)),
        ("river HalfSpaceTrees", river_hst, slow, len(slow)),
    ]
    if args.nab is not None:
        files = nab_corpus(args.nab)
        rows.insert(3, (f"opsmon over NAB ({len(files)} files)", opsmon_nab, files, sum(len(v) for _, v in files)))
    table = Table(title=f"score + learn, per value (Python {sys.version.split()[0]}, one core)")
    for col in ("detector", "µs / value", "values", "pickle bytes"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for name, make, data, n in rows:
        us, size = measure(make, data, n, args.repeat)
        table.add_row(name, f"{us:.2f}", str(n), str(size))
    Console().print(table)


if __name__ == "__main__":
    main()
