"""Operations overview: every site, store and web shop on one screen, for the operations manager."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards.common import (
    UID_OVERVIEW,
    every_interval,
    finish,
    graph,
    grid,
    new_dashboard,
    prop,
    single_stat,
    transformation,
    where,
)
from deploy.grafana.influxql import InfluxQL
from streams.sources import SOURCES

# The sources' measurements, as their declarations name them (streams.sources).
READINGS, POS, WEB = (SOURCES[name].measurement for name in ("iot", "pos", "web"))
CONVERSION, ERROR_RATE = (SOURCES["web"].metric(name).select for name in ("conversion", "error_rate"))

# An alert's points: open=1 when it starts (state=firing), open=0 when it resolves (state=resolved).
# The state tag splits them into two series, so the latest `open` per identity says whether it is open.
_ALERT_IDENTITY = '"source", "entity", "metric", "severity"'
_LATEST_ALERTS = (f'SELECT last("open") AS "open", last("score") AS "score", last("observed") AS "observed", '
                  f'last("expected") AS "expected" FROM "alert" {where()} GROUP BY {_ALERT_IDENTITY}')
# Open alerts older than the board's time range still count: these panels look back a week.
ALERT_LOOKBACK = "7d"


def build() -> dm.Dashboard:
    """The operations overview board."""
    board = new_dashboard(UID_OVERVIEW, "opsmon: operations overview",
                          "Health of every site, store and web shop: sales, web, devices, open alerts.")
    board = (board
             .with_panel(single_stat("Revenue, last hour",
                                     InfluxQL(f'SELECT sum("revenue") FROM "{POS}" {where()}'),
                                     calc="sum", description="Sum of all stores' till revenue in the last hour.")
                         .time_from("1h").decimals(0))
             .with_panel(single_stat("Transactions, last hour",
                                     InfluxQL(f'SELECT sum("transactions") FROM "{POS}" {where()}'),
                                     calc="sum").time_from("1h").decimals(0))
             .with_panel(single_stat("Web conversion, last hour",
                                     InfluxQL(f'SELECT {CONVERSION} FROM "{WEB}" {where()}'),
                                     unit="percentunit", description="Purchases per session, all web shops.")
                         .time_from("1h").decimals(1))
             .with_panel(single_stat("Web error rate, last hour",
                                     InfluxQL(f'SELECT {ERROR_RATE} FROM "{WEB}" {where()}'),
                                     unit="percentunit", steps=[(None, "green"), (0.02, "orange"), (0.05, "red")])
                         .time_from("1h").decimals(1))
             .with_panel(devices_reporting())
             .with_panel(single_stat("Open alerts",
                                     InfluxQL(f'SELECT sum("open") FROM ({_LATEST_ALERTS})'),
                                     steps=[(None, "green"), (1, "red")],
                                     description="Alerts whose latest point has open=1 (looks back a week).")
                         .time_from(ALERT_LOOKBACK).no_value("0"))
             .with_panel(grid("Alerts open now",
                              InfluxQL(f'SELECT "score", "observed", "expected" FROM ({_LATEST_ALERTS}) '
                                       f'WHERE "open" = 1 GROUP BY {_ALERT_IDENTITY}').format("table"),
                              w=14, h=9, description="One row per open alert; Time is when it last fired.")
                         .time_from(ALERT_LOOKBACK)
                         .sort_by([cb.TableSortByFieldState().display_name("score").desc(True)])
                         .override_by_name("severity", [prop("custom.cellOptions", {"type": "color-text"}),
                                                         prop("mappings", _severity_colours())]))
             .with_panel(grid("Anomalies by source and entity",
                              InfluxQL('SELECT sum("is_anomaly") AS "anomalies", max("score") AS "max score" '
                                       f'FROM "anomaly_score" {where()} GROUP BY "source", "entity"').format("table"),
                              w=10, h=9, description="Scored values flagged anomalous in the time range.")
                         .override_by_name("anomalies", [prop("custom.cellOptions", {"type": "color-background"}),
                                                          prop("thresholds", {"mode": "absolute", "steps": [
                                                              {"value": None, "color": "green"},
                                                              {"value": 1, "color": "red"}]})]))
             .with_panel(graph("Anomalies per source",
                               InfluxQL(f'SELECT sum("is_anomaly") FROM "anomaly_score" {where()} '
                                        f'{every_interval("source")} fill(0)').alias("$tag_source"), w=8))
             .with_panel(graph("Revenue per store",
                               InfluxQL(f'SELECT sum("revenue") FROM "{POS}" {where()} '
                                        f'{every_interval("store")} fill(0)').alias("$tag_store"), w=8))
             .with_panel(graph("Web error rate per shop",
                               InfluxQL(f'SELECT {ERROR_RATE} FROM "{WEB}" {where()} '
                                        f'{every_interval("site")} fill(none)').alias("$tag_site"),
                               unit="percentunit", w=8)))
    return finish(board)


def devices_reporting() -> stat.Panel:
    """Devices with at least one reading in the last 5 minutes.

    InfluxQL has no count of distinct tag values over a time range: count one row per device
    (fill(0) keeps a row for devices that reported only some fields), then the widest column.
    """
    inner = f'SELECT count(*) FROM "{READINGS}" {where()} GROUP BY "site", "device" fill(0)'
    return (single_stat("Devices reporting, last 5 min", InfluxQL(f"SELECT count(*) FROM ({inner})"),
                        description="Devices with at least one reading in the last five minutes.")
            .time_from("5m").decimals(0)
            .with_transformation(transformation("calculateField", mode="reduceRow", reduce={"reducer": "max"},
                                                alias="devices", replaceFields=True)))


def _severity_colours() -> list[dict[str, object]]:
    return [{"type": "value", "options": {
        "critical": {"color": "red", "index": 0}, "warning": {"color": "orange", "index": 1},
        "info": {"color": "blue", "index": 2}}}]
