"""``opsmon alerts list|ack|false-positive|link|silence``: what on-call staff do with alerts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import typer
from rich.console import Console
from rich.table import Table

from opsmon.cli.output import print_error
from opsmon.feedback import link as feedback_link
from opsmon.feedback import send_feedback
from opsmon.settings import Settings

app = typer.Typer(help="Open alerts, feedback on them, and silences for planned work.", no_args_is_help=True)
console = Console()
_DURATION = re.compile(r"^(\d+)([smhd])$")


def _am(settings: Settings) -> str:
    if not settings.alertmanager_url:
        raise typer.BadParameter("no Alertmanager configured (OPSMON_ALERTMANAGER_URL)")
    return settings.alertmanager_url.rstrip("/")


@app.command("list")
def list_alerts(all_: bool = typer.Option(False, "--all", help="Include silenced alerts."),
                as_json: bool = typer.Option(False, "--json", help="One JSON object per line, for scripts.")) -> None:
    """Open alerts, from Alertmanager, newest first."""
    settings = Settings()
    resp = httpx.get(f"{_am(settings)}/api/v2/alerts", params={"silenced": str(all_).lower(), "active": "true"},
                     timeout=10, trust_env=False)
    resp.raise_for_status()
    alerts = sorted(resp.json(), key=lambda a: a["startsAt"], reverse=True)
    if as_json:
        for a in alerts:
            typer.echo(json.dumps({"id": a.get("annotations", {}).get("alert_id"), "labels": a["labels"],
                                   "annotations": a.get("annotations", {}), "startsAt": a["startsAt"]}))
        return
    table = Table(title=f"{len(alerts)} open alert(s)")
    for col in ("id", "severity", "since", "what", "incident"):
        table.add_column(col)
    for a in alerts:
        lab, ann = a["labels"], a.get("annotations", {})
        table.add_row(ann.get("alert_id", "?"), lab.get("severity", ""), a["startsAt"][:19].replace("T", " "),
                      ann.get("description", ann.get("summary", "")), lab.get("incident", ""))
    console.print(table)


def _feedback(alert_id: str, kind: str, user: str, note: str) -> None:
    try:
        resp = send_feedback(Settings(), alert_id, kind, user, note)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if resp.status_code != 202:
        print_error(f"refused ({resp.status_code}): {resp.json().get('error', resp.text)}")
        raise typer.Exit(1)
    console.print(f"{kind.replace('_', ' ')} recorded for {alert_id}")


@app.command()
def ack(alert_id: str, user: str = typer.Option("", help="Who acknowledges."), note: str = "") -> None:
    """Acknowledge an alert: someone is on it. It was real, so the model does not learn it as ordinary."""
    _feedback(alert_id, "ack", user, note)


@app.command("false-positive")
def false_positive(alert_id: str, user: str = typer.Option("", help="Who says so."), note: str = "") -> None:
    """Mark an alert as wrong: that series will not alert on the same pattern again."""
    _feedback(alert_id, "false_positive", user, note)


@app.command()
def link(alert_id: str,
         action: str = typer.Option("false-positive", help="ack, false-positive, or chart (the picture only)."),
         by: str = typer.Option("", help="The person the link is for: the feedback records them.")) -> None:
    """Print a signed one-click link for an alert (as notifications carry), e.g. one naming a person."""
    kinds = {"ack": "ack", "false-positive": "false_positive", "chart": "view"}
    if action not in kinds:
        raise typer.BadParameter(f"--action must be one of {', '.join(kinds)}, not {action!r}")
    try:
        typer.echo(feedback_link(Settings(), alert_id, kinds[action], by))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def silence(entity: str, for_: str = typer.Option(..., "--for", help="How long, e.g. 30m, 2h, 1d."),
            comment: str = typer.Option("planned maintenance"), user: str = typer.Option("opsmon")) -> None:
    """Mute an entity's alerts during planned work (an Alertmanager silence on its ``entity`` label)."""
    m = _DURATION.match(for_)
    if not m:
        raise typer.BadParameter("duration like 30m, 2h or 1d")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    now = datetime.now(UTC)
    body = {"matchers": [{"name": "entity", "value": entity, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(seconds=seconds)).isoformat(),
            "createdBy": user, "comment": comment}
    resp = httpx.post(f"{_am(Settings())}/api/v2/silences", json=body, timeout=10, trust_env=False)
    resp.raise_for_status()
    console.print(f"silenced {entity} for {for_} (silence {resp.json()['silenceID']})")
