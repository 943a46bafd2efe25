"""``opsmon grafana provision`` and ``opsmon grafana push``: boards, datasource and alert rules as code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.grafana.provision import DEFAULT_DIR

app = typer.Typer(help="Grafana boards, InfluxDB datasource and alert rules, generated from deploy/grafana.",
                  no_args_is_help=True)
_console = Console()
_errors = Console(stderr=True)


@app.command()
def provision(out: Annotated[Path, typer.Option(
        "--out", help="Directory to write the provisioning tree to.")] = DEFAULT_DIR) -> None:
    """Write Grafana's provisioning files (datasource, dashboard provider, boards, alert rules)."""
    from deploy.grafana.provision import write

    for path in write(out):
        _console.print(f"wrote {path}")


@app.command()
def push(
    url: Annotated[str, typer.Option(envvar="OPSMON_GRAFANA_URL", help="Grafana's base URL.")],
    token: Annotated[str, typer.Option(envvar="OPSMON_GRAFANA_TOKEN", show_default=False,
                                       help="Service-account token (Editor or Admin role).")],
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL as Grafana reaches it "
                                                        "[default: OPSMON_INFLUX_URL]")] = None,
    influx_database: Annotated[str | None, typer.Option(help="Database or bucket [default: OPSMON_INFLUX_BUCKET]")]
    = None,
    influx_token: Annotated[str | None, typer.Option(envvar="OPSMON_GRAFANA_INFLUX_TOKEN", show_default=False,
                                                     help="InfluxDB token for Grafana [default: OPSMON_INFLUX_TOKEN]")]
    = None,
    timeout: Annotated[float, typer.Option(help="Seconds per API call.")] = 10.0,
) -> None:
    """Create or update the folder, datasource, boards and alert rules in a running Grafana."""
    from grafana_client import GrafanaApi

    from deploy.grafana.datasource import InfluxTarget
    from deploy.grafana.push import GrafanaPushError
    from deploy.grafana.push import push as do_push
    from opsmon.settings import Settings

    settings = Settings()
    target = InfluxTarget(url=influx_url or settings.influx_url, database=influx_database or settings.influx_bucket,
                          token=influx_token or settings.influx_token.get_secret_value())
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        report = do_push(api, target)
    except GrafanaPushError as exc:
        _errors.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from exc
    table = Table(title=f"pushed to {url}")
    for column in ("kind", "name", "action"):
        table.add_column(column)
    for kind, name, action in report.actions:
        table.add_row(kind, name, action)
    _console.print(table)
