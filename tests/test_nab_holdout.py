"""Leave-one-category-out on NAB: the choice per fold, the held-out total, and ``opsmon eval nab --loco``."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models import nab
from models import nab_holdout as holdout
from models.alert_filter import AlertFilter
from models.anomaly import SeriesDetector
from opsmon.cli import eval_nab
from tests.test_nab import write_corpus

TS = [datetime(2024, 1, 1) + timedelta(minutes=5 * i) for i in range(1000)]
WIN = [(TS[400], TS[499])]
PROD: holdout.Setting = (("threshold", 0.5),)
LOW: holdout.Setting = (("threshold", 0.4),)
HIGH: holdout.Setting = (("threshold", 0.6),)


def flags(*rows: int) -> list[bool]:
    """Detections at ``rows``."""
    hit = set(rows)
    return [i in hit for i in range(len(TS))]


def scored(runs: dict[str, list[bool]]) -> dict[str, dict[str, nab.CorpusScore]]:
    """``models.nab`` scores of one detection list per ``category/file``, every file with the same window."""
    return nab.score_corpus((key, TS, f, WIN) for key, f in runs.items())


# Category a and b reward the low threshold (it finds the window early), c punishes it (false positives).
GRID = {
    PROD: scored({"a/1.csv": flags(480), "b/1.csv": flags(480), "c/1.csv": flags(400)}),
    LOW: scored({"a/1.csv": flags(400), "b/1.csv": flags(400), "c/1.csv": flags(200, 210, 220, 400)}),
    HIGH: scored({"a/1.csv": flags(), "b/1.csv": flags(), "c/1.csv": flags(400)}),
}


def test_each_fold_chooses_on_the_other_categories_only() -> None:
    folds = {f.category: f for f in holdout.leave_one_out(GRID, PROD)}
    # without a, b decides alone with c: the low threshold gains more on b than it loses on c
    assert folds["a"].setting == LOW and folds["b"].setting == LOW
    assert folds["c"].setting == LOW  # a and b both prefer it; c's own false positives play no part
    # a held-out fold reports the held-out category's own scores under the chosen setting
    assert folds["c"].scores["standard"].detector.fp == 3
    assert folds["c"].scores["standard"].detector.raw == pytest.approx(GRID[LOW]["standard"]["c"].detector.raw)


def test_held_out_total_is_nab_normalisation_over_the_union_of_the_folds() -> None:
    folds = holdout.leave_one_out(GRID, PROD)
    total = holdout.combine(folds)
    # every fold chose LOW: the held-out total is then LOW's in-sample total, computed NAB's way
    for profile in nab.PROFILES:
        assert total[profile].normalised == pytest.approx(GRID[LOW][profile]["total"].normalised)
        assert total[profile].detector.fp == GRID[LOW][profile]["total"].detector.fp


def test_ties_go_to_the_production_setting_whatever_the_grid_order() -> None:
    same = {HIGH: GRID[PROD], PROD: GRID[PROD]}  # HIGH first, scoring exactly as PROD
    assert holdout.choose(same, ["a", "b", "c"], PROD) == PROD
    assert all(f.setting == PROD for f in holdout.leave_one_out(same, PROD))


def test_a_setting_that_wins_only_on_the_held_out_category_is_not_chosen_for_it() -> None:
    grid = {PROD: GRID[PROD],
            HIGH: scored({"a/1.csv": flags(400), "b/1.csv": flags(), "c/1.csv": flags()})}
    folds = {f.category: f for f in holdout.leave_one_out(grid, PROD)}
    assert holdout.choose(grid, ["a"], PROD) == HIGH  # HIGH is best on a alone...
    assert folds["a"].setting == PROD  # ...but a's fold never looks at a


def test_bad_grids_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="at least two categories"):
        holdout.leave_one_out({PROD: scored({"a/1.csv": flags(400)})}, PROD)
    with pytest.raises(ValueError, match="not in the grid"):
        holdout.choose({LOW: GRID[LOW]}, ["a"], PROD)
    with pytest.raises(ValueError, match="empty grid"):
        holdout.categories_of({})


def test_the_grid_starts_at_the_detectors_production_values() -> None:
    defaults = {**inspect.signature(SeriesDetector).parameters, **inspect.signature(AlertFilter).parameters}
    for name, values in eval_nab.LOCO_PARAMS.items():
        assert values[0] == defaults[name].default, name
    grid = eval_nab.loco_grid("detector", 0.5)
    assert grid[0] == (("threshold", 0.5), ("min_effect", 2.5), ("refractory", 150))
    assert len(grid) == len(set(grid)) == len(eval_nab.LOCO_THRESHOLDS) * 4
    assert eval_nab.loco_grid("threshold", 0.42)[0] == (("threshold", 0.42),)


def run_loco(tmp_path: Path, *extra: str) -> tuple[int, str, Path]:
    """``opsmon eval nab --loco`` on the small synthetic corpus of ``tests.test_nab``."""
    label_file = write_corpus(tmp_path)
    app = typer.Typer()
    app.command()(eval_nab.nab)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                      "--out", str(out), "--loco", *extra])
    return result.exit_code, result.output, out


def test_eval_nab_loco_reports_in_sample_and_held_out_per_category(tmp_path: Path) -> None:
    code, output, out = run_loco(tmp_path, "--loco-grid", "threshold")
    assert code == 0, output
    assert "leave one category out" in output and "held-out standard" in output
    report = json.loads((out / "opsmon" / "opsmon_loco.json").read_text())
    assert set(report["categories"]) == {"artificialWithAnomaly", "artificialNoAnomaly"}
    assert report["production"] == {"threshold": 0.5}
    assert len(report["grid"]) == len(eval_nab.LOCO_THRESHOLDS)
    # the in-sample scores are those of the plain command at the production threshold
    plain = tmp_path / "plain"
    app = typer.Typer()
    app.command()(eval_nab.nab)
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels",
                                      str(tmp_path / "labels" / "windows.json"), "--out", str(plain), "--plots", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads((plain / "opsmon" / "opsmon_scores.json").read_text())["scores"]
    for profile in nab.PROFILES:
        assert report["total"]["in_sample"][profile] == summary[profile]["total"]
    # each held-out category reports its own scores under the setting chosen on the other one
    by_setting = {json.dumps(g["setting"]): g["scores"] for g in report["grid_scores"]}
    for cat, row in report["categories"].items():
        assert row["held_out"]["standard"] == by_setting[json.dumps(row["chosen"])]["standard"][cat]
    assert report["total"]["held_out"]["standard"]["windows"] == 2
    assert (out / "opsmon_nab_loco.png").stat().st_size > 10_000


def test_eval_nab_loco_refuses_a_single_category_and_an_unknown_grid(tmp_path: Path) -> None:
    code, output, _ = run_loco(tmp_path, "--loco-grid", "everything")
    assert code == 2 and "--loco-grid" in output
    label_file = tmp_path / "labels" / "windows.json"
    for path in (tmp_path / "data" / "artificialNoAnomaly").glob("*.csv"):
        path.unlink()
    (tmp_path / "data" / "artificialNoAnomaly").rmdir()
    app = typer.Typer()
    app.command()(eval_nab.nab)
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                      "--out", str(tmp_path / "out"), "--loco"])
    assert result.exit_code == 2 and "at least two categories" in result.output
