"""``opsmon limits check``: read a limits file as the worker would, before it is saved where the worker looks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from models.limits import SOURCES, LimitError
from opsmon.cli.output import print_error
from opsmon.settings import Settings
from streams.limits_file import limits_with_file

app = typer.Typer(help="Limits the business sets (OPSMON_LIMITS, OPSMON_LIMITS_FILE).", no_args_is_help=True)
console = Console()


@app.command("check")
def check(path: Path = typer.Argument(..., help="A JSON file of limits, e.g. the next OPSMON_LIMITS_FILE."),
          series: list[str] = typer.Option([], "--series", "-s",
                                            help="source:entity:metric to show the clauses of (repeatable).")) -> None:
    """Read a limits file with OPSMON_LIMITS, as the worker will; list its rules, or what applies to a series."""
    try:
        limits = limits_with_file(Settings().limits, path)
    except LimitError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    table = Table(title=f"{len(limits.rules)} rule(s): {path} with OPSMON_LIMITS (the file wins for the same key)")
    for col in ("source:entity:metric", "clauses"):
        table.add_column(col)
    for key, clauses in limits.rules:
        table.add_row(":".join(key), "; ".join(c.text for c in clauses))
    console.print(table)
    for name in series:
        parts = name.split(":")
        if len(parts) != 3 or parts[0] not in SOURCES:
            raise typer.BadParameter(f"{name!r} is not source:entity:metric (source one of {', '.join(SOURCES)})")
        found = limits.matching(*parts)
        console.print(f"{name}: " + ("; ".join(c.text for c in found) if found else "no limit"), markup=False,
                      soft_wrap=True)
