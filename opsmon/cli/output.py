"""How the CLI prints errors: whole, on stderr, never re-wrapped to the terminal's width.

A message broken mid-phrase is harder to read and to search for (and to assert on in a test whose
temporary path changes the line breaks), so errors are printed as one logical line each, whatever
``COLUMNS`` says; the terminal soft-wraps them.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click; a ClickException of the installed click is another class
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer builds on click itself
    from click.exceptions import ClickException

_stderr = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """Print ``message`` in red on stderr, unwrapped, with no markup read in it (``[x]`` stays ``[x]``)."""
    _stderr.print(Text(message, style="red"), soft_wrap=True)


class PlainErrorsGroup(TyperGroup):
    """The top-level command group: usage errors printed by click's plain ``Error: ...`` line.

    Typer draws a usage error in a panel sized to the terminal, which breaks the message across lines.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command; in standalone mode, print a usage error whole and exit with its code."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        # Without standalone mode click returns typer.Exit's code instead of exiting with it.
        sys.exit(result if isinstance(result, int) else 0)
