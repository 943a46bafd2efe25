"""``opsmon eval scenario`` end to end: faults injected, processed by a real worker, scored; the report agrees
with the alerts topic and the time-series server."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from deploy.stack import Stack
from opsmon.cli import app as cli
from opsmon.settings import Settings
from opsmon.sim.faults import read_truth


def test_scenario_report_agrees_with_the_truth_the_topic_and_the_server(
        stack: Stack, stack_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "scenario"
    env = {**stack_settings.to_env(), "OPSMON_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(cli, ["eval", "scenario", "--days", "2", "--warmup-hours", "30", "--rate", "1",
                                      "--faults-per-hour", "1", "--seed", "3", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    truth = [r for r in read_truth(out / "truth.jsonl") if r["fault"]]
    assert report["faults"] == len(truth) > 0
    assert report["alerts_on_topic"] == report["alerts_in_tsdb"] > 0, "the topic and the server agree"
    scored = [r for r in truth if r["start_ts"] >= truth[0]["start_ts"] and r["kind"] in report["kinds"]]
    assert sum(k["faults"] for k in report["kinds"].values()) <= len(scored)
    assert sum(k["detected"] for k in report["kinds"].values()) >= 1
    paged = report["pages"]
    assert paged["kinds"].keys() == report["kinds"].keys() and paged["hours"] == report["hours"]
    assert paged["false_alerts"] <= report["alerts_on_topic"], "pages are some of the alerts"
    assert "fault kind" in result.output and "false alerts" in result.output and "false pages" in result.output


def test_on_call_staff_answer_pages_and_their_answers_reach_the_models(
        stack: Stack, stack_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "scenario"
    env = {**stack_settings.to_env(), "OPSMON_DATA_DIR": str(tmp_path / "data")}
    args = ["eval", "scenario", "--days", "1.5", "--warmup-hours", "24", "--rate", "1", "--faults-per-hour", "1",
            "--seed", "3", "--on-call", "--respond-minutes", "120", "--out", str(out)]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    staff = report["on_call"]
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    paged = {a["id"] for a in alerts if a["status"] == "firing" and a["severity"] != "info"}
    said = dict(staff["said"])
    assert staff["acks"] > 0 and staff["false_positives"] > 0, staff
    assert said.keys() <= paged, "only pages are answered, each once"
    assert len(staff["said"]) == len(said) == staff["acks"] + staff["false_positives"]
    assert 0 < staff["feedback_to_models"] <= len(said)
    # a page that was marked false positive and was still open is resolved with a note
    notes = [a for a in alerts if a["status"] == "resolved" and "marked false positive" in a.get("note", "")]
    assert all(said.get(a["id"]) == "false_positive" for a in notes)
    assert report["alerts_on_topic"] == report["alerts_in_tsdb"] > 0
    assert "on-call answered" in result.output
