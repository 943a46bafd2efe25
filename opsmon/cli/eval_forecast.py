"""``opsmon eval forecast``: score demand forecasters on a sales CSV by the M5 rules, on rolling origins.

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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from models.forecast_eval import (
    QUANTILES,
    EvalInputError,
    EvalResult,
    bucketize,
    evaluate,
    plot_scores,
    read_csv,
    simulate_retail_sales,
    write_csv,
)
from models.river_spec import ModelSpecs, SpecError, forecaster_for
from opsmon.cli.output import print_error


def forecast(
    csv_path: Annotated[Path, typer.Option("--csv", help="CSV of sales rows (one row per sale or per bucket).")],
    time_col: Annotated[str, typer.Option(help="Time column: ISO 8601 or epoch seconds.")] = "date",
    key_cols: Annotated[str, typer.Option(help="Comma-separated columns naming a series.")] = "store,sku",
    value_col: Annotated[str, typer.Option(help="Quantity column, summed per bucket.")] = "quantity",
    freq: Annotated[str, typer.Option(help="Bucket: D (daily) or h (hourly).")] = "D",
    horizons: Annotated[str, typer.Option(help="Comma-separated horizons, in buckets.")] = "1,7,14",
    origins: Annotated[int, typer.Option(help="Rolling origins, the last one max(horizons) before the end.")] = 8,
    origin_every: Annotated[int, typer.Option(help="Buckets between two origins.")] = 7,
    min_history: Annotated[int, typer.Option(help="Buckets since the first sale before a series is scored.")] = 28,
    anchors: Annotated[bool, typer.Option(
        "--anchors", help="Also run statsforecast's SeasonalNaive, AutoETS, CrostonOptimized, TSB, ADIDA, IMAPA, "
                          "re-fitted at every origin (needs the eval extra).")] = False,
    compare: Annotated[bool, typer.Option(
        "--compare", help="Also run River's HoltWinters and SNARIMAX online, one update per bucket.")] = False,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="Also run this River forecaster online, a preset (holt-winters) or an expression such as "
                        "'time_series.SNARIMAX(p=2, d=1, q=1, m=7)' (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for forecast_scores.png and scores.json.")] = Path(
        "out/forecast"),
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="First write the seeded synthetic retail data set to --csv (date,store,sku,quantity).",
    )] = False,
    seed: Annotated[int, typer.Option(help="Seed of --simulate.")] = 0,
    stores: Annotated[int, typer.Option(help="Stores of --simulate.")] = 5,
    skus: Annotated[int, typer.Option(help="Skus per store of --simulate.")] = 40,
) -> None:
    """Score opsmon's forecaster (and River's, statsforecast's) by the M5 rules on the same rolling origins."""
    console = Console(width=max(Console().width, 130))
    if freq not in ("D", "h"):
        raise typer.BadParameter("use D or h", param_hint="--freq")
    try:
        hs = [int(h) for h in horizons.split(",") if h.strip()]
    except ValueError as exc:
        raise typer.BadParameter("comma-separated integers, e.g. 1,7,14", param_hint="--horizons") from exc
    keys = [k.strip() for k in key_cols.split(",") if k.strip()]
    extra = []
    for expr in dict.fromkeys(model or []):
        if expr.strip() == "opsmon":
            continue  # opsmon's own forecaster always runs
        try:
            # The same allow-list parser as OPSMON_FORECASTERS: literal arguments only, never eval.
            specs = ModelSpecs.parse({"*:*:*": expr}, forecasters=True)
        except SpecError as exc:
            print_error(f"error: {exc}")
            raise typer.Exit(2) from exc
        extra.append((expr, lambda specs=specs: forecaster_for(specs, "pos", "*", "*")))
    try:
        if simulate:
            rows = simulate_retail_sales(stores=stores, skus=skus, seed=seed)
            write_csv(csv_path, rows, ["date", "store", "sku", "quantity"])
            time_col, keys, value_col = "date", ["store", "sku"], "quantity"
            console.print(f"wrote synthetic data set to {csv_path}")
        series = bucketize(read_csv(csv_path, time_col, keys, value_col), freq)  # type: ignore[arg-type]
        with Progress(
            TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("series"), TimeElapsedColumn(),
            console=console, transient=True,
        ) as bar:
            task = bar.add_task("series", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = evaluate(series, freq=freq, horizons=hs, origins=origins,  # type: ignore[arg-type]
                              origin_every=origin_every, min_history=min_history, compare=compare,
                              anchors=anchors, extra=extra, progress=advance)
    except (EvalInputError, OSError) as exc:
        print_error(f"error: {exc}")
        raise typer.Exit(2) from exc

    console.print(_table(result))
    console.print(
        f"{result.series} series: {result.series_scored} scored, {result.series_unscored} never scored "
        f"(shorter than {min_history} buckets since the first sale, or no scale); {result.targets} series-origins "
        f"scored, {result.origins_without_scale} skipped for a zero scale (flat history); "
        f"{len(result.origins)} origins every {origin_every} buckets; opsmon state: "
        f"{result.state_bytes_median} B median, {result.state_bytes_max} B max (pickled)"
    )
    out.mkdir(parents=True, exist_ok=True)
    png = plot_scores(result, out / "forecast_scores.png", title=f"{csv_path.name}: {result.series_scored} series, "
                      f"{len(result.origins)} rolling origins")
    (out / "scores.json").write_text(json.dumps(_summary(result), indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {png} and {out / 'scores.json'}")


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    # A method that diverged (errors a million times the scale) is named as such, not printed in full.
    return f"{value:.{digits}f}" if abs(value) < 1e6 else "diverged"


def _table(result: EvalResult) -> Table:
    table = Table(
        title=f"Forecast accuracy by the M5 rules, {'daily' if result.freq == 'D' else 'hourly'} buckets, "
              f"{len(result.origins)} rolling origins",
        caption="RMSSE/MASE of the mean; SPL = pinball loss at q scaled by the history's mean |y_t - y_t-1|; "
                "cover = share inside \\[q0.1, q0.9] (nominal 80%); "
                "cost = CPU time per online update or per fit+forecast",
    )
    table.add_column("method")
    table.add_column("h", justify="right")
    for col in ("RMSSE", "MASE", *(f"SPL q={q}" for q in QUANTILES), "cover", "cost"):
        table.add_column(col, justify="right")
    for mres in result.methods:
        for i, h in enumerate(result.horizons):
            s = mres.scores[h]
            spl = [_fmt(s.spl[q]) if s.spl else "-" for q in QUANTILES]
            cost = "" if i else (f"{mres.cost_us:.0f} µs/update" if mres.kind == "online"
                                  else f"{mres.cost_us / 1000:.1f} ms/fit")
            if mres.name == "seasonal_naive":
                cost = ""
            table.add_row(mres.name if not i else "", str(h), _fmt(s.rmsse), _fmt(s.mase), *spl,
                          f"{100 * s.coverage:.1f}%" if s.coverage is not None else "-", cost,
                          end_section=i == len(result.horizons) - 1)
    return table


def _summary(result: EvalResult) -> dict[str, object]:
    return {
        "freq": result.freq, "season": result.season, "origins": result.origins, "series": result.series,
        "series_scored": result.series_scored, "series_unscored": result.series_unscored,
        "origins_without_scale": result.origins_without_scale, "targets": result.targets,
        "state_bytes_median": result.state_bytes_median, "state_bytes_max": result.state_bytes_max,
        "methods": {m.name: {"kind": m.kind, "cost_us": round(m.cost_us, 2),
                             "scores": {str(h): {**asdict(s), "spl": {str(q): v for q, v in (s.spl or {}).items()}}
                                        for h, s in m.scores.items()}} for m in result.methods},
    }
