"""Cost per value of the anomaly detectors the stream could run, measured in one process, one core.

    .venv/bin/python bench/bench_models.py [--n 50000] [--repeat 3]

Runs score + learn on the same synthetic five-minute series (daily cycle, noise, a few spikes) for
opsmon's ``SeriesDetector`` and, as baselines, river's ``HalfSpaceTrees`` (given the value range,
as it expects features in [0, 1]) and ``QuantileFilter(GaussianScorer)``. Prints microseconds per
value (best of ``--repeat`` runs) and the pickled size of each warmed-up model.
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
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from river import anomaly  # noqa: E402

from models.anomaly import SeriesDetector  # noqa: E402

STEP = 300.0


def series(n: int, seed: int = 0) -> list[float]:
    """Daily cycle plus noise, with a spike every few thousand values."""
    rng = random.Random(seed)
    xs = [20 + 5 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.5) for i in range(n)]
    for i in range(2000, n, 3001):
        xs[i] += 8.0
    return xs


def opsmon_process(xs: list[float]) -> tuple[Callable[[], None], object]:
    """``process_one``: score then learn, returning a Verdict (what the stream calls)."""
    det = SeriesDetector()

    def go() -> None:
        p = det.process_one
        for i, x in enumerate(xs):
            p(x, i * STEP)
    return go, det


def opsmon_split(xs: list[float]) -> tuple[Callable[[], None], object]:
    """``score_one`` then ``learn_one``, River style (features computed twice)."""
    det = SeriesDetector()

    def go() -> None:
        s, learn = det.score_one, det.learn_one
        for i, x in enumerate(xs):
            t = i * STEP
            s(x, t)
            learn(x, t)
    return go, det


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


def measure(make: Callable[[list[float]], tuple[Callable[[], None], object]], xs: list[float],
            repeat: int) -> tuple[float, int]:
    """Best-of-``repeat`` microseconds per value (fresh model each run), and the model's pickle size."""
    best = math.inf
    model: object = None
    for _ in range(repeat):
        go, model = make(xs)
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        go()
        dt = time.perf_counter() - t0
        gc.enable()
        best = min(best, dt / len(xs) * 1e6)
    return best, len(pickle.dumps(model))


def main() -> None:
    """Run every detector and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="values per run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    xs = series(args.n)
    slow = xs[: max(2_000, args.n // 10)]  # HalfSpaceTrees is slow: a shorter run is enough
    rows = [
        ("opsmon SeriesDetector.process_one", opsmon_process, xs),
        ("opsmon score_one + learn_one", opsmon_split, xs),
        ("river QuantileFilter(GaussianScorer)", river_quantile_gauss, xs),
        ("river HalfSpaceTrees", river_hst, slow),
    ]
    table = Table(title=f"score + learn, per value (Python {sys.version.split()[0]}, one core)")
    for col in ("detector", "µs / value", "values", "pickle bytes"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for name, make, data in rows:
        us, size = measure(make, data, args.repeat)
        table.add_row(name, f"{us:.2f}", str(len(data)), str(size))
    Console().print(table)


if __name__ == "__main__":
    main()
