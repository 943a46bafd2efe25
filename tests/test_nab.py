"""NAB scorer on hand-made cases, and ``opsmon eval nab`` end to end on a tiny synthetic corpus."""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models import nab
from models.alert_filter import AlertFilter
from models.anomaly import SeriesDetector
from opsmon.cli import eval_nab

STD = nab.PROFILES["standard"]
T0 = datetime(2024, 1, 1)


def stamps(n: int) -> list[datetime]:
    """Five-minute timestamps from T0."""
    return [T0 + timedelta(minutes=5 * i) for i in range(n)]


def at(*rows: int, n: int = 1000) -> list[bool]:
    """Detections at the given rows."""
    hits = set(rows)
    return [i in hits for i in range(n)]


TS = stamps(1000)
WIN = [(TS[400], TS[499]), (TS[800], TS[849])]  # probation is rows 0..149


def raw(*rows: int, profile: nab.Profile = STD, windows: list = WIN) -> float:
    """Raw standard-profile score of detections at ``rows``."""
    return nab.score_file(TS, at(*rows), windows, profile).raw


# ---------------------------------------------------------------- scorer
def test_perfect_is_100_and_null_is_0() -> None:
    inside = [any(a <= t <= b for a, b in WIN) for t in TS]
    for detections, expected in ((inside, 100.0), ([False] * 1000, 0.0), (at(400, 800), 100.0)):
        scores = nab.score_corpus([("cat/f.csv", TS, detections, WIN)])
        for profile in nab.PROFILES:
            assert scores[profile]["total"].normalised == pytest.approx(expected)
            assert scores[profile]["cat"].normalised == pytest.approx(expected)


def test_first_row_of_a_window_earns_the_full_true_positive() -> None:
    assert raw(400, 800) == pytest.approx(2.0)
    assert raw() == pytest.approx(-2.0)


def test_early_detection_beats_late_detection() -> None:
    early, middle, late = raw(410, 800), raw(450, 800), raw(495, 800)
    assert early > middle > late > raw(800)
    # scaled sigmoid: half-way through the window is worth 2 sigmoid(2.5) - 1 over 2 sigmoid(5) - 1
    mid_weight = (2 / (1 + math.exp(-5 * 0.5)) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert raw(450, 800) - raw(800) == pytest.approx(mid_weight + 1.0)  # x = -(499 - 450 + 1) / 100


def test_only_the_first_detection_in_a_window_counts() -> None:
    assert raw(420, 430, 499, 800) == pytest.approx(raw(420, 800))


def test_false_positives_cost_fp_weight_and_less_just_after_a_window() -> None:
    base = raw(400, 800)
    before_any = raw(300, 400, 800)
    assert base - before_any == pytest.approx(STD.fp)  # full cost before the first window
    right_after = raw(400, 500, 800)
    far_after = raw(400, 700, 800)
    assert right_after > far_after  # weighted by the sigmoid of the distance past the window
    assert base - far_after == pytest.approx(STD.fp, rel=1e-3)
    assert base - raw(400, 300, 310, 320, 800) == pytest.approx(3 * STD.fp)
    low_fp = nab.PROFILES["reward_low_FP_rate"]
    assert raw(400, 800, profile=low_fp) - raw(300, 400, 800, profile=low_fp) == pytest.approx(0.22)


def test_false_negatives_cost_double_in_reward_low_fn_rate() -> None:
    low_fn = nab.PROFILES["reward_low_FN_rate"]
    assert raw(400, profile=low_fn) == pytest.approx(1.0 - 2.0)


def test_probationary_period_is_not_scored() -> None:
    assert nab.probation_rows(1000) == 150
    assert nab.probation_rows(20_000) == 750  # capped at 15% of 5000
    assert raw(10, 100, 400, 800) == pytest.approx(raw(400, 800))  # flags while learning are free
    early_window = [(TS[20], TS[60])] + WIN
    assert nab.score_file(TS, at(400, 800), early_window, STD).windows == 2  # a window inside it is dropped


def test_counts() -> None:
    fs = nab.score_file(TS, at(300, 420, 430, 900), WIN, STD)
    assert (fs.tp, fs.fn, fs.fp, fs.windows) == (1, 1, 2, 2)


# ---------------------------------------------------------------- results rescaling
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_results_score_crosses_half_exactly_at_the_flag(threshold: float) -> None:
    for s in (0.0, threshold * 0.99, threshold, 0.9, 1.0):
        assert (nab.results_score(s, s >= threshold, threshold) >= 0.5) == (s >= threshold)
    assert nab.results_score(0.95, False, threshold) < 0.5  # suppressed (refractory) stays below


# ---------------------------------------------------------------- opsmon eval nab
def write_corpus(root: Path) -> Path:
    """Three small NAB-layout files: two with an injected anomaly, one clean; returns the label file."""
    rng = random.Random(0)
    labels: dict[str, list[list[str]]] = {}
    specs = [("artificialWithAnomaly", "jump.csv", 1500, 1200, 10.0),
             ("artificialWithAnomaly", "spike.csv", 1200, 900, 0.0),
             ("artificialNoAnomaly", "clean.csv", 1000, None, 0.0)]
    for category, name, n, anomaly, shift in specs:
        rows = []
        for i in range(n):
            x = 50 + 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1)
            if anomaly is not None and i >= anomaly:
                x += shift
            if anomaly is not None and i == anomaly and not shift:
                x += 25
            rows.append((T0 + timedelta(minutes=5 * i), x))
        (root / "data" / category).mkdir(parents=True, exist_ok=True)
        with (root / "data" / category / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows((ts.strftime("%Y-%m-%d %H:%M:%S"), f"{x:.4f}") for ts, x in rows)
        wins = []
        if anomaly is not None:
            a, b = rows[anomaly - 30][0], rows[anomaly + 30][0]
            wins.append([a.strftime("%Y-%m-%d %H:%M:%S.%f"), b.strftime("%Y-%m-%d %H:%M:%S.%f")])
        labels[f"{category}/{name}"] = wins
    (root / "labels").mkdir()
    path = root / "labels" / "windows.json"
    path.write_text(json.dumps(labels))
    return path


def test_eval_nab_writes_nab_results_that_match_the_detector(tmp_path: Path) -> None:
    label_file = write_corpus(tmp_path)
    app = typer.Typer()
    app.command()(eval_nab.nab)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                      "--out", str(out), "--plots", "2"])
    assert result.exit_code == 0, result.output
    assert "standard" in result.output and "total" in result.output
    windows = nab.parse_windows(json.loads(label_file.read_text()))
    for key in windows:
        category, name = key.split("/")
        path = out / "opsmon" / category / f"opsmon_{name}"
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
        stamps_, values = eval_nab.read_series(tmp_path / "data" / key)
        assert len(rows) == len(values)
        # the same detector, run again, flags exactly the rows scored >= 0.5
        det = AlertFilter(SeriesDetector())
        flagged = [det.process_one(x, ts.replace(tzinfo=UTC).timestamp()).is_anomaly
                   for ts, x in zip(stamps_, values, strict=True)]
        assert [float(r["anomaly_score"]) >= 0.5 for r in rows] == flagged
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
        inside = [any(a <= t <= b for a, b in windows[key]) for t in stamps_]
        assert [r["label"] == "1" for r in rows] == inside
    # both injected anomalies are caught, the clean file stays quiet
    summary = json.loads((out / "opsmon" / "opsmon_scores.json").read_text())
    assert summary["scores"]["standard"]["artificialWithAnomaly"]["tp"] == 2
    assert summary["scores"]["standard"]["artificialNoAnomaly"]["fp"] == 0
    assert (out / "opsmon_nab.png").stat().st_size > 10_000


def test_eval_nab_details_say_where_each_file_score_comes_from(tmp_path: Path) -> None:
    label_file = write_corpus(tmp_path)
    app = typer.Typer()
    app.command()(eval_nab.nab)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                      "--out", str(out), "--plots", "0", "--details"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Per file" in result.output and "jump" in result.output
    files = json.loads((out / "opsmon" / "opsmon_scores.json").read_text())["files"]
    assert set(files) == {"artificialWithAnomaly/jump.csv", "artificialWithAnomaly/spike.csv",
                          "artificialNoAnomaly/clean.csv"}
    (lo, hi, first, reason), = files["artificialWithAnomaly/spike.csv"]["windows"]
    assert lo <= first <= hi and reason in ("spike", "level")  # the injected spike, found
    assert files["artificialNoAnomaly/clean.csv"] == {"raw": 0.0, "windows": [], "false_positives": []}


def test_eval_nab_refuses_files_without_labels(tmp_path: Path) -> None:
    label_file = write_corpus(tmp_path)
    label_file.write_text(json.dumps({"artificialNoAnomaly/clean.csv": []}))
    app = typer.Typer()
    app.command()(eval_nab.nab)
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "no labels" in result.output


def test_eval_nab_is_registered() -> None:
    from opsmon.cli import eval_app

    assert "nab" in [c.name for c in eval_app.registered_commands]


def test_eval_nab_runs_a_river_model_through_the_same_harness(tmp_path: Path) -> None:
    label_file = write_corpus(tmp_path)
    app = typer.Typer()
    app.command()(eval_nab.nab)
    out = tmp_path / "out"
    args = ["--data", str(tmp_path / "data"), "--labels", str(label_file), "--out", str(out), "--plots", "0"]
    result = CliRunner().invoke(app, [*args, "--model", "anomaly.StandardAbsoluteDeviation()"], terminal_width=200)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "model" / "model_scores.json").read_text())
    assert summary["model"] == "anomaly.StandardAbsoluteDeviation()"
    assert summary["scores"]["standard"]["artificialWithAnomaly"]["tp"] >= 1  # the spike, at least
    rows = list(csv.DictReader((out / "model" / "artificialWithAnomaly" / "model_spike.csv").open()))
    assert len(rows) == 1200 and any(float(r["anomaly_score"]) >= 0.5 for r in rows)
    bad = CliRunner().invoke(app, [*args, "--model", "anomaly.HalfSpaceTrees(sead=7)"])
    assert bad.exit_code == 2 and "--model" in bad.output and "sead" in bad.output


def test_eval_nab_compare_prints_one_table_of_every_model(tmp_path: Path) -> None:
    label_file = write_corpus(tmp_path)
    app = typer.Typer()
    app.command()(eval_nab.nab)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                      "--out", str(out), "--compare"], terminal_width=250)
    assert result.exit_code == 0, result.output
    models = json.loads((out / "compare.json").read_text())["models"]
    assert list(models) == list(eval_nab.COMPARE)
    assert all(m["us_per_value"] > 0 and m["windows"] == 2 for m in models.values())
    # opsmon's row is the same detector as a plain run's
    plain = CliRunner().invoke(app, ["--data", str(tmp_path / "data"), "--labels", str(label_file),
                                     "--out", str(tmp_path / "plain"), "--plots", "0"])
    assert plain.exit_code == 0
    std = json.loads((tmp_path / "plain" / "opsmon" / "opsmon_scores.json").read_text())["scores"]["standard"]
    assert models["opsmon"]["scores"]["standard"] == std["total"]["score"]
    assert "opsmon's detector beside River's" in result.output and "opsmon" in result.output
