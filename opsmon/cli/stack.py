"""``opsmon stack``: start, stop and inspect the local stack (deploy/stack.py) from the shell."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.stack import DEFAULT_SERVICES, SERVICES, Stack, StackError
from opsmon.settings import Settings

app = typer.Typer(help="The local stack: Kafka, InfluxDB (built from source), Alertmanager, Mosquitto.",
                  no_args_is_help=True)
_console = Console()
_errors = Console(stderr=True)


def _stack() -> Stack:
    return Stack(Settings())


def _print_status(stack: Stack) -> bool:
    table = Table(title=f"stack at {stack.root}")
    for column in ("service", "running", "healthy", "pid", "endpoint"):
        table.add_column(column)
    statuses = stack.status()
    for st in statuses.values():
        table.add_row(st.name, _yes(st.running), _yes(st.healthy), str(st.pid or "-"), st.endpoint)
    _console.print(table)
    influx = statuses["influxdb"]
    if influx.running:
        from deploy.influxdb import server_version

        auth = stack.influx_auth()
        # The source of the writer's credential, never the credential itself.
        _console.print(f"InfluxDB {server_version(influx.endpoint) or '(version unknown: not answering)'}, "
                       f"database {stack.influx_database}: writer {auth.writer_user!r} "
                       f"(token user:password from {auth.writer_source}), admin {auth.admin_user!r} "
                       f"(password in {auth.admin_password_file})", highlight=False, soft_wrap=True)
    return all(st.healthy for st in statuses.values() if st.running)


def _fail(what: str, exc: StackError) -> None:
    _errors.print(f"[red]{what}:[/]")
    # Log tails: no markup (they contain [brackets]) and no re-wrapping of their lines.
    _errors.print(str(exc), markup=False, highlight=False, soft_wrap=True)


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


@app.command()
def up(services: Annotated[list[str] | None, typer.Argument(
        help=f"Any of {', '.join(SERVICES)} (default: {', '.join(DEFAULT_SERVICES)}).")] = None) -> None:
    """Start services that are not running and wait until they are healthy."""
    stack = _stack()
    started_at = time.monotonic()
    try:
        started = stack.up(services or None)
    except StackError as exc:
        _fail("stack up failed", exc)
        raise typer.Exit(1) from exc
    took = time.monotonic() - started_at
    _console.print(f"started: {', '.join(started) or 'nothing (already running)'} in {took:.1f} s")
    _print_status(stack)


@app.command()
def down(wipe: Annotated[bool, typer.Option("--wipe", help="Also delete all data and logs.")] = False) -> None:
    """Stop every service of the stack (data is kept unless --wipe)."""
    stack = _stack()
    try:
        stack.down(wipe=wipe)
    except StackError as exc:
        _fail("stack down failed", exc)
        raise typer.Exit(1) from exc
    _console.print(f"stopped{' and wiped' if wipe else ''}: {stack.root}")


@app.command()
def status() -> None:
    """Show which services run and answer their health checks (exit 1 if a running one is unhealthy)."""
    if not _print_status(_stack()):
        raise typer.Exit(1)
