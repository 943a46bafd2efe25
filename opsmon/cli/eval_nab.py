"""``opsmon eval nab``: run the stream's ``SeriesDetector`` (or any configured model) over the NAB corpus and score it.

Only wiring: reading the corpus, one pass per file through the production detector (the class and
threshold the stream uses), NAB's results files, a table of scores (``--details``: where each file's
score comes from), a summary JSON and a PNG. The scoring rules live in ``models.nab``. ``--model EXPR`` runs a River
model as ``OPSMON_MODELS`` would (calibrated and decided as in the stream: ``models.calibrated``); ``--compare``
runs opsmon's detector beside River's usual choices and prints one table with their cost per value. With
``--loco``: every setting of a small grid run once over the corpus, then leave one category out
(``models.nab_holdout``): held-out scores per category next to the in-sample ones, a JSON report and a PNG.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from models import nab as scorer
from models import nab_holdout as holdout
from models.alert_filter import AlertFilter
from models.anomaly import SeriesDetector, Verdict
from models.calibrated import CalibratedDetector
from models.river_spec import DETECTOR_CLASSES, DETECTOR_PRESETS, OPSMON, SpecError, check_detector, parse_expression
from opsmon.cli.output import print_error

DETECTOR = "opsmon"
# River's usual choices for one numeric series, beside opsmon's own (``--compare``): HalfSpaceTrees behind the
# MinMaxScaler River's docs pair it with, GaussianScorer, StandardAbsoluteDeviation and LODA. (LocalOutlierFactor
# keeps every point it has seen: quadratic over a NAB file, so it is left out.)
COMPARE = (OPSMON, "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)",
           "anomaly.GaussianScorer(window_size=None, grace_period=100)", "anomaly.StandardAbsoluteDeviation()",
           "preprocessing.StandardScaler() | anomaly.LODA(seed=7)")


class CorpusError(ValueError):
    """The data directory or label file cannot be used as a NAB corpus."""


@dataclass
class FileRun:
    """One data file after a pass of the detector."""

    key: str  # category/name.csv, as in the label file
    stamps: list[datetime]
    values: list[float]
    verdicts: list[Verdict]
    windows: list[tuple[datetime, datetime]]
    threshold: float


def read_series(path: Path) -> tuple[list[datetime], list[float]]:
    """Read one NAB data file (``timestamp,value``)."""
    stamps: list[datetime] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise CorpusError(f"{path}: expected columns timestamp,value")
        for row in reader:
            stamps.append(scorer.parse_timestamp(row["timestamp"]))
            values.append(float(row["value"]))
    return stamps, values


def corpus_files(data: Path, windows: dict[str, list[tuple[datetime, datetime]]]) -> list[str]:
    """``category/name.csv`` of every data file under ``data``; each must have labels."""
    keys = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*.csv"))
    if not keys:
        raise CorpusError(f"no <category>/<name>.csv files under {data}")
    missing = [k for k in keys if k not in windows]
    if missing:
        raise CorpusError(f"no labels for {len(missing)} file(s), e.g. {missing[0]}")
    return keys


def read_corpus(data: Path, labels: Path) -> tuple[dict[str, list[tuple[datetime, datetime]]], list[str],
                                                 dict[str, tuple[list[datetime], list[float]]]]:
    """The labelled windows, the files in time order and their series; a clear error (exit 2) if unreadable."""
    try:
        windows = scorer.parse_windows(json.loads(labels.read_text()))
        keys = corpus_files(data, windows)
        return windows, keys, {k: read_series(data / k) for k in keys}
    except (OSError, ValueError) as exc:  # CorpusError, bad JSON, bad numbers
        print_error(f"cannot read the corpus: {exc}")
        raise typer.Exit(2) from exc


def detector_factory(model: str, threshold: float) -> Callable[[], AlertFilter]:
    """Fresh detectors for ``model`` (``opsmon``, a preset or a River expression), deciding as the stream does."""
    if model.strip() == OPSMON:
        return lambda: AlertFilter(SeriesDetector(), threshold=threshold)
    expr = DETECTOR_PRESETS.get(model.strip(), model)
    check_detector(parse_expression(expr, DETECTOR_CLASSES, "--model"), "--model")  # SpecError before any work

    def make() -> AlertFilter:
        return AlertFilter(CalibratedDetector(parse_expression(expr, DETECTOR_CLASSES, "--model"), spec=model),
                           threshold=threshold)
    return make


def run_file(key: str, stamps: list[datetime], values: list[float],
             windows: list[tuple[datetime, datetime]], threshold: float,
             make: Callable[[], AlertFilter] | None = None) -> FileRun:
    """One pass of a fresh detector (the production one unless ``make`` says) over a series, in time order."""
    det = make() if make is not None else AlertFilter(SeriesDetector(), threshold=threshold)
    # NAB timestamps carry no zone: read them as UTC so time-of-day is the file's own.
    verdicts = [det.process_one(x, ts.replace(tzinfo=UTC).timestamp()) for ts, x in zip(stamps, values, strict=True)]
    return FileRun(key, stamps, values, verdicts, windows, threshold)


def write_results(run: FileRun, out: Path, threshold: float, detector: str = DETECTOR) -> Path:
    """NAB's results file ``OUT/<detector>/<category>/<detector>_<file>.csv``."""
    category, name = run.key.split("/", 1)
    path = out / detector / category / f"{detector}_{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    spans = scorer.window_indices(run.stamps, run.windows)
    inside = [0] * len(run.stamps)
    for lo, hi in spans:
        for i in range(lo, hi + 1):
            inside[i] = 1
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for ts, x, v, lab in zip(run.stamps, run.values, run.verdicts, inside, strict=True):
            w.writerow([ts.strftime("%Y-%m-%d %H:%M:%S"), repr(x),
                        f"{scorer.results_score(v.score, v.is_anomaly, threshold):.6f}", lab])
    return path


def score_table(scores: dict[str, dict[str, scorer.CorpusScore]], threshold: float, detector: str = DETECTOR
                ) -> Table:
    """Per-category and total normalised scores for each profile."""
    profiles = list(scores)
    table = Table(title=f"NAB scores of {detector} (threshold {threshold:g}; null 0, perfect 100)")
    table.add_column("category", no_wrap=True)
    for p in profiles:
        table.add_column(p.replace("reward_", "").replace("_rate", ""), justify="right")
    table.add_column("TP / windows", justify="right")
    table.add_column("FP", justify="right")
    cats = sorted(c for c in scores[profiles[0]] if c != "total") + ["total"]
    for c in cats:
        first = scores[profiles[0]][c]
        cells = []
        for p in profiles:
            s = scores[p][c]
            cells.append(f"{s.normalised:.1f}" if s.perfect != s.null else f"raw {s.detector.raw:+.2f}")
        table.add_row(c, *cells, f"{first.detector.tp} / {first.detector.windows}", str(first.detector.fp),
                      style="bold" if c == "total" else None)
    return table


@dataclass
class FileDetail:
    """Where one file's score comes from: each window's first flag, and the flags outside windows."""

    key: str
    raw: float  # standard profile
    hits: list[tuple[int, int, int | None, str]]  # (first row, last row, first flag or None, its reason)
    false_positives: list[tuple[int, str]]  # (row, reason) of flags outside every window


def file_detail(run: FileRun) -> FileDetail:
    """Per-window first flags and the false positives of one run (scored rows only)."""
    spans = scorer.window_indices(run.stamps, run.windows)
    probation = scorer.probation_rows(len(run.stamps))
    flags = [v.is_anomaly for v in run.verdicts]
    hits: list[tuple[int, int, int | None, str]] = []
    for lo, hi in spans:
        if hi < probation:
            continue
        first = next((i for i in range(max(lo, probation), hi + 1) if flags[i]), None)
        hits.append((lo, hi, first, run.verdicts[first].reason if first is not None else ""))
    fps = [(i, run.verdicts[i].reason) for i in range(probation, len(flags))
           if flags[i] and not any(lo <= i <= hi for lo, hi in spans)]
    raw = scorer.score_file(run.stamps, flags, run.windows, scorer.PROFILES["standard"]).raw
    return FileDetail(run.key, raw, hits, fps)


def detail_table(details: list[FileDetail]) -> Table:
    """One row per file: windows found (and how early), false positives and their reasons."""
    table = Table(title="Per file (standard profile): first flag in each window, flags outside windows")
    table.add_column("file", overflow="fold")
    table.add_column("raw", justify="right")
    table.add_column("windows: first flag (reason)")
    table.add_column("FP", justify="right")
    table.add_column("FP reasons")
    for d in details:
        cells = []
        for lo, hi, first, reason in d.hits:
            # position of the first flag within its window: 0% is its left edge (NAB's best)
            cells.append("missed" if first is None else f"{100 * (first - lo) / max(1, hi - lo):.0f}% ({reason})")
        reasons: dict[str, int] = {}
        for _, r in d.false_positives:
            reasons[r] = reasons.get(r, 0) + 1
        name = d.key.split("/", 1)[-1].removesuffix(".csv")
        why = " ".join(f"{r} {c}" for r, c in sorted(reasons.items()))
        table.add_row(name, f"{d.raw:+.2f}", ", ".join(cells) or "-", str(len(d.false_positives)), why)
    return table


def plot_runs(runs: list[FileRun], path: Path, n: int) -> None:
    """PNG of a few series: values, scores, label windows and detections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one labelled series per category first, so the picture shows each kind of data
    labelled = [r for r in runs if r.windows] or runs
    chosen: list[FileRun] = []
    while len(chosen) < min(n, len(labelled)):
        seen = {r.key.split("/")[0] for r in chosen}
        pick = next((r for r in labelled if r not in chosen and r.key.split("/")[0] not in seen), None)
        chosen.append(pick or next(r for r in labelled if r not in chosen))
    fig, axes = plt.subplots(len(chosen), 1, figsize=(14, 2.6 * len(chosen)), squeeze=False)
    for ax, run in zip(axes[:, 0], chosen, strict=True):
        ax.plot(run.stamps, run.values, lw=0.6, color="black", label="value")
        for a, b in run.windows:
            ax.axvspan(a, b, color="tab:red", alpha=0.15)
        probation = scorer.probation_rows(len(run.stamps))
        ax.axvline(run.stamps[probation], color="tab:green", lw=0.8, ls="--")
        for ts, v in zip(run.stamps, run.verdicts, strict=True):
            if v.is_anomaly:
                ax.axvline(ts, color="tab:blue", lw=0.9)
        ax2 = ax.twinx()
        ax2.plot(run.stamps, [v.score for v in run.verdicts], lw=0.5, color="tab:orange")
        ax2.axhline(run.threshold, color="tab:orange", lw=0.6, ls=":")
        ax2.set_ylim(0, 2)
        ax2.set_ylabel("score", fontsize=7)
        ax.set_title(f"{run.key}: windows (red), flags (blue), probation end (green), score (orange)",
                     fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def nab(
    data: Annotated[Path, typer.Option("--data", help="NAB data directory: <category>/<name>.csv.")],
    labels: Annotated[Path, typer.Option("--labels", help="NAB combined_windows.json.")],
    out: Annotated[Path, typer.Option("--out", help="Results directory (NAB's layout).")],
    threshold: Annotated[float, typer.Option(help="Detector threshold, as in production.")] = 0.5,
    plots: Annotated[int, typer.Option(help="Series drawn in the PNG.")] = 4,
    details: Annotated[bool, typer.Option("--details", help="Also print where each file's score comes from.")] = False,
    loco: Annotated[bool, typer.Option("--loco", help="Leave one category out: settings chosen on the other "
                                       "categories, scores reported on the held-out one.")] = False,
    loco_grid_kind: Annotated[str, typer.Option("--loco-grid", help="What --loco may choose: 'detector' "
                                                "(threshold, min_effect, refractory) or 'threshold'.")] = "detector",
    model: Annotated[str, typer.Option("--model", help="'opsmon', a preset (hst, gaussian) or a River expression, "
                                       "as in OPSMON_MODELS.")] = OPSMON,
    compare: Annotated[bool, typer.Option("--compare", help="Run opsmon's detector and River's usual choices; one "
                                          "table with their scores and cost per value.")] = False,
) -> None:
    """Score the production anomaly detector (or ``--model``) on NAB: one pass per file, in time order."""
    console = Console()
    if not 0.0 < threshold <= 1.0:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--threshold")
    if loco:
        nab_loco(data, labels, out, threshold, loco_grid_kind, plots)
        return
    try:
        makers = {m: detector_factory(m, threshold) for m in (COMPARE if compare else (model,))}
    except SpecError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    windows, keys, series = read_corpus(data, labels)
    if compare:
        _compare(console, makers, keys, series, windows, threshold, out)
        return
    detector = DETECTOR if model.strip() == OPSMON else "model"
    runs, _ = _run_corpus(console, makers[model], keys, series, windows, threshold, out, detector)
    scores = scorer.score_corpus((r.key, r.stamps, [v.is_anomaly for v in r.verdicts], r.windows) for r in runs)
    per_file = [file_detail(r) for r in runs]
    if details:
        console.print(detail_table(per_file))
    console.print(score_table(scores, threshold, DETECTOR if detector == DETECTOR else model))
    summary = {p: {c: {"score": round(s.normalised, 2) if s.perfect != s.null else None,
                       "raw": round(s.detector.raw, 4), "tp": s.detector.tp, "fn": s.detector.fn,
                       "fp": s.detector.fp, "windows": s.detector.windows}
                   for c, s in cats.items()} for p, cats in scores.items()}
    files = {d.key: {"raw": round(d.raw, 4), "windows": [[lo, hi, first, reason] for lo, hi, first, reason in d.hits],
                     "false_positives": [[i, reason] for i, reason in d.false_positives]} for d in per_file}
    summary_path = out / detector / f"{detector}_scores.json"
    summary_path.write_text(json.dumps({"threshold": threshold, "model": model, "scores": summary, "files": files},
                                       indent=2))
    png = out / f"{detector}_nab.png"
    if plots > 0:
        plot_runs(runs, png, plots)
    total_std = scores["standard"]["total"].normalised
    console.print(f"standard profile {total_std:.1f}; results in {out / detector}, summary {summary_path}"
                  + (f", plot {png}" if plots > 0 else ""))
    if not math.isfinite(total_std):
        raise typer.Exit(1)


def _run_corpus(console: Console, make: Callable[[], AlertFilter], keys: list[str],
                series: dict[str, tuple[list[datetime], list[float]]],
                windows: dict[str, list[tuple[datetime, datetime]]], threshold: float, out: Path,
                detector: str | None) -> tuple[list[FileRun], float]:
    """Every file through fresh detectors (results written under ``detector`` unless None); seconds spent detecting."""
    runs: list[FileRun] = []
    spent = 0.0
    total = sum(len(v) for _, v in series.values())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("detecting", total=total)
        for key in keys:
            progress.update(task, description=key)
            stamps, values = series[key]
            t0 = time.perf_counter()
            run = run_file(key, stamps, values, windows[key], threshold, make)
            spent += time.perf_counter() - t0
            if detector is not None:
                write_results(run, out, threshold, detector)
            runs.append(run)
            progress.advance(task, len(values))
    return runs, spent


# ---------------------------------------------------------------- leave one category out (--loco)
# The grid searched by ``--loco``: the production value first in each, as ties go to production. The threshold is
# the setting a reader would tune first; the effect-size floor and the refractory period are the two detector
# arguments that decide most false positives (a rare but small departure; a second flag for the same episode).
LOCO_THRESHOLDS = (0.5, 0.45, 0.55, 0.6)
LOCO_PARAMS: dict[str, tuple[float, ...]] = {"min_effect": (2.5, 3.5), "refractory": (150, 300)}
LOCO_GRIDS = ("detector", "threshold")
_INT_PARAMS = ("warmup", "refractory", "hold", "max_bins")  # constructor arguments that count values
_DECISION_PARAMS = ("threshold", "refractory", "escalate")  # AlertFilter's; the others are SeriesDetector's


def loco_grid(kind: str, production_threshold: float) -> list[holdout.Setting]:
    """The settings ``--loco`` searches: thresholds only, or thresholds times the detector arguments."""
    if kind not in LOCO_GRIDS:
        raise typer.BadParameter(f"must be one of {', '.join(LOCO_GRIDS)}", param_hint="--loco-grid")
    thresholds = [production_threshold] + [t for t in LOCO_THRESHOLDS if t != production_threshold]
    params = LOCO_PARAMS if kind == "detector" else {}
    grid: list[holdout.Setting] = [(("threshold", t),) for t in thresholds]
    for name, values in params.items():
        grid = [s + ((name, v),) for s in grid for v in values]
    return grid


def run_flags(stamps: list[datetime], values: list[float], setting: holdout.Setting) -> list[bool]:
    """One pass of a fresh detector built with ``setting``: its flags, row by row."""
    kwargs: dict[str, Any] = {name: int(v) if name in _INT_PARAMS else v for name, v in setting}
    # the decision's settings go to the alert filter, the rest to the detector (score and decision apart)
    decision = {name: kwargs.pop(name) for name in _DECISION_PARAMS if name in kwargs}
    det = AlertFilter(SeriesDetector(**kwargs), **decision)
    return [det.process_one(x, ts.replace(tzinfo=UTC).timestamp()).is_anomaly
            for ts, x in zip(stamps, values, strict=True)]


def loco_scores(series: dict[str, tuple[list[datetime], list[float]]],
                windows: dict[str, list[tuple[datetime, datetime]]], grid: list[holdout.Setting],
                console: Console) -> dict[holdout.Setting, dict[str, dict[str, scorer.CorpusScore]]]:
    """Every grid point run once over every file (the folds reuse these runs) and scored per category."""
    out: dict[holdout.Setting, dict[str, dict[str, scorer.CorpusScore]]] = {}
    total = len(grid) * sum(len(v) for _, v in series.values())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("detecting", total=total)
        for i, setting in enumerate(grid, 1):
            runs = []
            for key, (stamps, values) in series.items():
                progress.update(task, description=f"{i}/{len(grid)} {holdout.describe(setting)} {key}")
                runs.append((key, stamps, run_flags(stamps, values, setting), windows[key]))
                progress.advance(task, len(values))
            out[setting] = scorer.score_corpus(runs)
    return out


def _cell(s: scorer.CorpusScore) -> str:
    """A normalised score, or the raw one where a category has no window to normalise by."""
    return f"{s.normalised:.1f}" if s.perfect != s.null else f"raw {s.detector.raw:+.2f}"


def _found(s: scorer.CorpusScore) -> str:
    return f"{s.detector.tp} / {s.detector.fp}"


def _short(profile: str) -> str:
    return {"standard": "std", "reward_low_FP_rate": "low-FP", "reward_low_FN_rate": "low-FN"}.get(profile, profile)


def loco_table(cats: list[str], files: dict[str, int], in_sample: dict[str, dict[str, scorer.CorpusScore]],
               folds: list[holdout.Fold], held_total: dict[str, scorer.CorpusScore], production: holdout.Setting
               ) -> Table:
    """Per category: in-sample scores at the production setting next to the held-out ones and the setting chosen."""
    profiles = list(in_sample)
    table = Table(title=f"NAB, leave one category out: in-sample at {holdout.describe(production)} vs held out "
                        "(setting chosen on the other categories)")
    table.add_column("category", no_wrap=True)
    table.add_column("files", justify="right")
    table.add_column("windows", justify="right")
    for p in profiles:
        table.add_column(f"in {_short(p)}", justify="right")
    table.add_column("in found / FP", justify="right")
    for p in profiles:
        table.add_column(f"out {_short(p)}", justify="right")
    table.add_column("out found / FP", justify="right")
    table.add_column("chosen without it", no_wrap=True)
    by_cat = {f.category: f for f in folds}
    for c in cats + ["total"]:
        ins = {p: in_sample[p][c] for p in profiles}
        outs = held_total if c == "total" else by_cat[c].scores
        n = sum(files.values()) if c == "total" else files[c]
        table.add_row(c, str(n), str(ins[profiles[0]].detector.windows), *(_cell(ins[p]) for p in profiles),
                      _found(ins[profiles[0]]), *(_cell(outs[p]) for p in profiles), _found(outs[profiles[0]]),
                      "" if c == "total" else holdout.describe(by_cat[c].setting),
                      style="bold" if c == "total" else None)
    return table


def _score_json(s: scorer.CorpusScore) -> dict[str, Any]:
    return {"score": round(s.normalised, 2) if s.perfect != s.null else None, "raw": round(s.detector.raw, 4),
            "tp": s.detector.tp, "fn": s.detector.fn, "fp": s.detector.fp, "windows": s.detector.windows}


def _setting_json(setting: holdout.Setting) -> dict[str, float]:
    return dict(setting)


def plot_loco(cats: list[str], in_sample: dict[str, dict[str, scorer.CorpusScore]], folds: list[holdout.Fold],
              held_total: dict[str, scorer.CorpusScore], path: Path) -> None:
    """PNG: per category and in total, in-sample vs held-out standard and low-FP scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cat = {f.category: f.scores for f in folds} | {"total": held_total}
    labels = cats + ["total"]
    bars = [("standard", "in-sample", in_sample["standard"], "tab:blue"),
            ("standard", "held out", {c: by_cat[c]["standard"] for c in labels}, "tab:cyan"),
            ("reward_low_FP_rate", "in-sample", in_sample["reward_low_FP_rate"], "tab:red"),
            ("reward_low_FP_rate", "held out", {c: by_cat[c]["reward_low_FP_rate"] for c in labels}, "tab:orange")]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.2
    for j, (profile, kind, scores, colour) in enumerate(bars):
        xs = [i + (j - 1.5) * width for i in range(len(labels))]
        ax.bar(xs, [scores[c].normalised for c in labels], width, color=colour, label=f"{_short(profile)} {kind}")
    ax.set_xticks(range(len(labels)), [c.replace("artificial", "art.") for c in labels], fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("NAB score (null 0, perfect 100)")
    ax.set_title("NAB: in-sample (production setting) vs held out (setting chosen on the other categories)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def nab_loco(data: Path, labels: Path, out: Path, threshold: float, grid_kind: str, plots: int) -> None:
    """``opsmon eval nab --loco``: leave-one-category-out scores next to the in-sample ones."""
    # the table has a dozen columns: at least 200 wide, so a narrow terminal wraps lines instead of eliding numbers
    console = Console(width=max(Console().width, 200))
    grid = loco_grid(grid_kind, threshold)
    production = grid[0]  # the production value of every parameter comes first
    windows, keys, series = read_corpus(data, labels)
    cats = sorted({k.split("/", 1)[0] for k in keys})
    if len(cats) < 2:
        print_error(f"leave-one-category-out needs at least two categories under {data}, found {cats}")
        raise typer.Exit(2)
    grid_scores = loco_scores(series, windows, grid, console)
    folds = holdout.leave_one_out(grid_scores, production)
    held_total = holdout.combine(folds)
    in_sample = grid_scores[production]
    tuned = holdout.choose(grid_scores, cats, production)
    files = {c: sum(1 for k in keys if k.startswith(c + "/")) for c in cats}
    console.print(loco_table(cats, files, in_sample, folds, held_total, production))
    tuned_total = grid_scores[tuned]
    console.print(f"tuned on all categories (in-sample, optimistic): {holdout.describe(tuned)} gives "
                  + " / ".join(f"{_short(p)} {tuned_total[p]['total'].normalised:.1f}" for p in tuned_total))
    by_cat = {f.category: f for f in folds}
    report = {
        "production": _setting_json(production),
        "grid": [_setting_json(s) for s in grid],
        "categories": {c: {"files": files[c],
                           "in_sample": {p: _score_json(in_sample[p][c]) for p in in_sample},
                           "held_out": {p: _score_json(s) for p, s in by_cat[c].scores.items()},
                           "chosen": _setting_json(by_cat[c].setting)} for c in cats},
        "total": {"files": len(keys), "in_sample": {p: _score_json(in_sample[p]["total"]) for p in in_sample},
                  "held_out": {p: _score_json(s) for p, s in held_total.items()}},
        "tuned_on_all": {"setting": _setting_json(tuned),
                         "scores": {p: _score_json(tuned_total[p]["total"]) for p in tuned_total}},
        "grid_scores": [{"setting": _setting_json(s),
                         "scores": {p: {c: _score_json(v) for c, v in sc[p].items()} for p in sc}}
                        for s, sc in grid_scores.items()],
    }
    report_path = out / DETECTOR / f"{DETECTOR}_loco.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    png = out / f"{DETECTOR}_nab_loco.png"
    if plots > 0:
        plot_loco(cats, in_sample, folds, held_total, png)
    held_std = held_total["standard"].normalised
    console.print(f"held-out standard {held_std:.1f}, low-FP {held_total['reward_low_FP_rate'].normalised:.1f} "
                  f"({len(grid)} settings x {len(keys)} files); report {report_path}"
                  + (f", plot {png}" if plots > 0 else ""))
    if not math.isfinite(held_std):
        raise typer.Exit(1)


def _compare(console: Console, makers: dict[str, Callable[[], AlertFilter]], keys: list[str],
             series: dict[str, tuple[list[datetime], list[float]]],
             windows: dict[str, list[tuple[datetime, datetime]]], threshold: float, out: Path) -> None:
    """``--compare``: each model over the corpus, one row each (scores, windows found, false positives, cost)."""
    n = sum(len(v) for _, v in series.values())
    rows = {}
    for name, make in makers.items():
        runs, spent = _run_corpus(console, make, keys, series, windows, threshold, out, None)
        scores = scorer.score_corpus((r.key, r.stamps, [v.is_anomaly for v in r.verdicts], r.windows) for r in runs)
        total = {p: scores[p]["total"] for p in scores}
        rows[name] = {"scores": {p: round(s.normalised, 2) for p, s in total.items()},
                      "tp": total["standard"].detector.tp, "windows": total["standard"].detector.windows,
                      "fp": total["standard"].detector.fp, "us_per_value": round(spent / n * 1e6, 2)}
    table = Table(title=f"NAB, opsmon's detector beside River's (threshold {threshold:g}, {n:,} values; River models "
                        "calibrated per series as in the stream)")
    table.add_column("model", overflow="fold")
    profiles = list(next(iter(rows.values()))["scores"])
    for p in profiles:
        table.add_column(p.replace("reward_", "").replace("_rate", ""), justify="right")
    for col in ("TP / windows", "FP", "µs / value"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        table.add_row(name, *(f"{r['scores'][p]:.1f}" for p in profiles), f"{r['tp']} / {r['windows']}",
                      str(r["fp"]), f"{r['us_per_value']:.1f}", style="bold" if name == OPSMON else None)
    # a wide table: piped to a file or a log, it keeps each expression on one line rather than folding it at 80
    (console if console.is_terminal else Console(width=max(console.width, 200))).print(table)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compare.json"
    path.write_text(json.dumps({"threshold": threshold, "values": n, "models": rows}, indent=2))
    console.print(f"summary {path}")
