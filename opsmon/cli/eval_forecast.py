"""``opsmon eval forecast``: replay a sales CSV online through ``DemandForecaster`` and score it.

Only wiring: reading options, a progress bar and a table around ``models.forecast_eval``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from models.forecast_eval import (
    EvalInputError,
    EvalResult,
    bucketize,
    evaluate,
    plot_series,
    read_csv,
    simulate_retail_sales,
    write_csv,
)


def forecast(
    csv_path: Annotated[Path, typer.Option("--csv", help="CSV of sales rows (one row per sale or per bucket).")],
    time_col: Annotated[str, typer.Option(help="Time column: ISO 8601 or epoch seconds.")] = "date",
    key_cols: Annotated[str, typer.Option(help="Comma-separated columns naming a series.")] = "store,sku",
    value_col: Annotated[str, typer.Option(help="Quantity column, summed per bucket.")] = "quantity",
    freq: Annotated[str, typer.Option(help="Bucket: D (daily) or h (hourly).")] = "D",
    horizons: Annotated[str, typer.Option(help="Comma-separated horizons, in buckets.")] = "1,7,14",
    out: Annotated[Path, typer.Option(help="Directory for the PNG and scores.json.")] = Path("out/forecast"),
    warmup: Annotated[int | None, typer.Option(help="In-sample buckets per series [8 weeks D, 2 weeks h].")] = None,
    plots: Annotated[int, typer.Option(help="Series to plot.")] = 4,
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="First write the seeded synthetic retail data set to --csv (date,store,sku,quantity).",
    )] = False,
    seed: Annotated[int, typer.Option(help="Seed of --simulate.")] = 0,
) -> None:
    """Replay history in time order through one DemandForecaster per key and compare with baselines."""
    console = Console()
    if freq not in ("D", "h"):
        raise typer.BadParameter("use D or h", param_hint="--freq")
    try:
        hs = [int(h) for h in horizons.split(",") if h.strip()]
    except ValueError as exc:
        raise typer.BadParameter("comma-separated integers, e.g. 1,7,14", param_hint="--horizons") from exc
    keys = [k.strip() for k in key_cols.split(",") if k.strip()]
    try:
        if simulate:
            write_csv(csv_path, simulate_retail_sales(seed=seed), ["date", "store", "sku", "quantity"])
            time_col, keys, value_col = "date", ["store", "sku"], "quantity"
            console.print(f"wrote synthetic data set to {csv_path}")
        series = bucketize(read_csv(csv_path, time_col, keys, value_col), freq)  # type: ignore[arg-type]
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TextColumn("buckets"),
            TimeRemainingColumn(), console=console, transient=True,
        ) as bar:
            task = bar.add_task("replay", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = evaluate(series, freq=freq, horizons=hs, warmup=warmup,  # type: ignore[arg-type]
                              plots=plots, progress=advance)
    except (EvalInputError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc

    console.print(_table(result))
    console.print(
        f"{result.series} series ({result.series_without_scale} without a MASE scale), "
        f"{result.buckets} buckets, warm-up {result.warmup}, season {result.season}; "
        f"learn_one+forecast({max(result.horizons)}): {result.us_per_bucket:.0f} µs/bucket; "
        f"state: {result.state_bytes_median} B median, {result.state_bytes_max} B max (pickled)"
    )
    out.mkdir(parents=True, exist_ok=True)
    png = plot_series(result, out / "forecast_vs_actual.png")
    (out / "scores.json").write_text(json.dumps(_summary(result), indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {png} and {out / 'scores.json'}")


def _table(result: EvalResult) -> Table:
    table = Table(
        title=f"Online forecast accuracy, {'daily' if result.freq == 'D' else 'hourly'} buckets",
        caption="fc = DemandForecaster (median), sn = seasonal naive, nv = naive; "
                "Δ = MASE fc vs sn; cover = share of actuals inside fc's interval",
    )
    for col in ("h", "MASE fc", "MASE sn", "MASE nv", "Δ", "sMAPE fc", "sMAPE sn", "sMAPE nv", "cover"):
        table.add_column(col, justify="right")
    for h in result.horizons:
        f, s, n = (result.scores[m][h] for m in ("forecaster", "seasonal_naive", "naive"))
        rel = f.mase / s.mase - 1 if s.mase and math.isfinite(s.mase) else math.nan
        table.add_row(
            str(h), f"{f.mase:.3f}", f"{s.mase:.3f}", f"{n.mase:.3f}", f"{100 * rel:+.1f}%",
            f"{f.smape:.1f}", f"{s.smape:.1f}", f"{n.smape:.1f}",
            f"{100 * f.coverage:.1f}%" if f.coverage is not None else "-",
        )
    return table


def _summary(result: EvalResult) -> dict[str, object]:
    return {
        "freq": result.freq, "season": result.season, "warmup": result.warmup, "series": result.series,
        "series_without_scale": result.series_without_scale, "buckets": result.buckets,
        "us_per_bucket": round(result.us_per_bucket, 1), "state_bytes_median": result.state_bytes_median,
        "state_bytes_max": result.state_bytes_max,
        "scores": {m: {str(h): asdict(s) for h, s in per_h.items()} for m, per_h in result.scores.items()},
    }
