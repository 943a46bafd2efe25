"""The ``opsmon`` command line: it only wires the rooms (streams, models, sinks, deploy) together."""

from __future__ import annotations

import typer

from opsmon.cli.output import PlainErrorsGroup

app = typer.Typer(help="opsmon: live operations boards and alerts from your devices, tills and web shop.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False, cls=PlainErrorsGroup)
eval_app = typer.Typer(help="Evaluate the stream's models offline (same classes as the stream).",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")

# Sub-command groups, one module each (registered below).
from opsmon.cli import alerts as _alerts  # noqa: E402
from opsmon.cli import run as _run  # noqa: E402
from opsmon.cli import scenario as _scenario  # noqa: E402
from opsmon.cli import stack as _stack  # noqa: E402

app.add_typer(_stack.app, name="stack")
app.add_typer(_run.topics_app, name="topics")
app.add_typer(_alerts.app, name="alerts")
eval_app.command("scenario")(_scenario.scenario)
app.command()(_run.worker)
app.command()(_run.simulate)
app.command()(_run.demo)

from opsmon.cli import ingest as _ingest  # noqa: E402

app.command()(_ingest.publish)
app.add_typer(_ingest.bridge_app, name="bridge")

from opsmon.cli import eval_forecast as _eval_forecast  # noqa: E402
from opsmon.cli import grafana as _grafana  # noqa: E402

eval_app.command("forecast")(_eval_forecast.forecast)
app.add_typer(_grafana.app, name="grafana")

from opsmon.cli import eval_nab as _eval_nab  # noqa: E402

eval_app.command("nab")(_eval_nab.nab)

from opsmon.cli import dlq as _dlq  # noqa: E402

app.add_typer(_dlq.app, name="dlq")

from opsmon.cli import bench as _bench  # noqa: E402

app.command()(_bench.bench)

from opsmon.cli import limits as _limits  # noqa: E402

app.add_typer(_limits.app, name="limits")


def main() -> None:
    """Console-script entry point."""
    app()
