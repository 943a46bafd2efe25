"""``opsmon eval scenario``: inject faults with the simulator, run the real pipeline, score detection."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from opsmon.settings import Settings

console = Console()
DEFAULT_OUT = Path("out/scenario")


def parse_end(text: str) -> float:
    """``--end`` as epoch seconds: ISO 8601, UTC unless it names a zone, and not in the future.

    >>> parse_end("2026-11-20T20:00")
    1795204800.0
    """
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 date-time (e.g. 2026-11-20T20:00)",
                                 param_hint="--end") from exc
    ts = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if ts > time.time():
        raise typer.BadParameter("must not be in the future (the time-series server drops future points)",
                                 param_hint="--end")
    return ts


def _minutes(seconds: float | None) -> str:
    return f"{seconds / 60:.1f} min" if seconds is not None else "-"


def scenario(
    days: float = typer.Option(2.5, help="Simulated days, ending at --end."),
    warmup_hours: float = typer.Option(36.0, help="Leading hours not scored: the models learn there."),
    rate: float = typer.Option(2.0, help="Average simulated events per second, all sources."),
    faults_per_hour: float = typer.Option(0.5, help="Random faults injected per simulated hour."),
    seed: int = typer.Option(1),
    devices: int = typer.Option(4, help="Devices per site."),
    out: Path = typer.Option(DEFAULT_OUT, help="Truth, worker log, report.json."),
    keep_stack: bool = typer.Option(False, help="Leave the run's own stack up (to look at its data)."),
    calendars: bool = typer.Option(True, help="Configure the simulated opening hours and machine shifts, as the "
                                              "business would (--no-calendars: judge every series by the clock)."),
    limits: bool = typer.Option(True, help="Configure the limits the business would set: food safety, machine "
                                           "temperature, page latency (--no-limits: the models alone)."),
    end: str = typer.Option("", help="Last simulated moment, ISO 8601 (UTC unless a zone is given), in the "
                                     "past; default now. The same --end and --seed give the same events."),
    on_call: bool = typer.Option(False, help="Simulated on-call staff answer each page within --respond-minutes: "
                                             "acknowledged if a fault explains it, a false positive if not."),
    respond_minutes: float = typer.Option(60.0, help="How soon the on-call staff answer (simulated minutes)."),
) -> None:
    """Per fault kind: detected or not, time to detect; and false alerts per hour, after the warm-up."""
    from opsmon.scenario import Scenario, run_scenario

    sc = Scenario(days=days, warmup_hours=warmup_hours, rate=rate, faults_per_hour=faults_per_hour, seed=seed,
                  devices_per_site=devices, end=parse_end(end) if end else None, calendars=calendars,
                  limits=limits, on_call=on_call, respond_minutes=respond_minutes)
    settings = Settings()
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TimeElapsedColumn(), console=console) as bar:
        tasks = {name: bar.add_task(name, total=1.0) for name in ("simulate", "process")}
        result = run_scenario(settings, sc, out, lambda what, share: bar.update(tasks[what], completed=share),
                              keep_stack=keep_stack)
    r, p = result.report, result.pages
    table = Table(title=f"detection after {warmup_hours:g} h of warm-up, {r.hours:.1f} h scored")
    for col in ("fault kind", "faults", "alerted", "median time to alert", "paged", "median time to page"):
        table.add_column(col, justify="left" if col == "fault kind" else "right")
    for kind, kr in sorted(r.kinds.items()):
        kp = p.kinds[kind]
        table.add_row(kind, str(kr.faults), str(kr.detected), _minutes(kr.median_ttd), str(kp.detected),
                      _minutes(kp.median_ttd))
    console.print(table)
    console.print(f"false alerts (boards): {r.false_alerts} ({r.false_alerts_per_hour:.2f} per hour); false pages "
                  f"(on-call, {settings.page_min_severity} and above): {p.false_alerts} "
                  f"({p.false_alerts_per_hour:.2f} per hour); alerts during known business events (promotions): "
                  f"{r.business_alerts}")
    console.print(f"{result.events:,} events, {result.faults} faults; firing alerts on the alerts topic: "
                  f"{result.alerts_on_topic}, in the time-series server: {result.alerts_in_tsdb}; "
                  f"{result.wall_seconds:.0f} s")
    staff = result.on_call
    if staff is not None:
        console.print(f"on-call answered {len(staff.answered)} pages: {staff.acks} acknowledged, "
                      f"{staff.false_positives} marked false positive; {result.feedback_to_models} changed a model")
    summary = {**r.as_dict(), "pages": p.as_dict(), "events": result.events, "faults": result.faults,
               "alerts_on_topic": result.alerts_on_topic, "alerts_in_tsdb": result.alerts_in_tsdb,
               "scenario": vars(sc), "unmatched": r.unmatched[:50],
               "on_call": None if staff is None else {"pages": len(staff.answered), "acks": staff.acks,
                                                      "false_positives": staff.false_positives,
                                                      "feedback_to_models": result.feedback_to_models,
                                                      "said": staff.said}}
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"report: {out / 'report.json'}; ground truth: {out / 'truth.jsonl'}; alerts: {out / 'alerts.jsonl'}")
