"""Web shop: traffic, the conversion funnel, errors and latency per site."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards.common import (
    LIMIT_LINE,
    UID_WEB,
    every_interval,
    finish,
    graph,
    matches,
    new_dashboard,
    prop,
    query_variable,
    single_stat,
    thresholds,
    where,
)
from deploy.grafana.influxql import InfluxQL, datasource_ref

SITE = matches("site")
WEB = "\"source\" = 'web'"
LATENCY = "\"metric\" = 'latency_p95'"
ERRORS_TITLE = "Errors and error rate"
FUNNEL_STEPS = (("page_views", "page views"), ("add_to_cart", "add to cart"), ("checkouts", "checkouts"),
                ("purchases", "purchases"))


def build() -> dm.Dashboard:
    """The web shop board."""
    board = (new_dashboard(UID_WEB, "opsmon: web shop", "Traffic, conversion funnel, errors and latency per site.")
             .with_variable(query_variable("site", "Site", 'SHOW TAG VALUES FROM "web_window" WITH KEY = "site"'))
             .with_panel(single_stat("Sessions", _total('sum("sessions")'), w=5).decimals(0))
             .with_panel(single_stat("Purchases", _total('sum("purchases")'), w=5).decimals(0))
             .with_panel(single_stat("Conversion", _total('sum("purchases") / sum("sessions")'), w=5,
                                     unit="percentunit").decimals(1))
             .with_panel(single_stat("Error rate", _total('sum("errors") / sum("events")'), w=5, unit="percentunit",
                                     steps=[(None, "green"), (0.02, "orange"), (0.05, "red")]).decimals(1))
             .with_panel(single_stat("Latency p95 (worst window)", _total('max("latency_p95")'), w=4, unit="ms",
                                     steps=[(None, "green"), (1000, "orange"), (3000, "red")]))
             .with_panel(graph("Traffic",
                               InfluxQL('SELECT sum("page_views") AS "page views", sum("sessions") AS "sessions" '
                                        f'FROM "web_window" {where(SITE)} {every_interval("site")} fill(0)')
                               .alias("$tag_site $col")))
             .with_panel(funnel())
             .with_panel(graph("Conversion rate",
                               InfluxQL('SELECT sum("purchases") / sum("sessions") FROM "web_window" '
                                        f'{where(SITE)} {every_interval("site")} fill(none)').alias("$tag_site"),
                               unit="percentunit"))
             .with_panel(graph(ERRORS_TITLE,
                               InfluxQL(f'SELECT sum("errors") FROM "web_window" {where(SITE)} '
                                        f'{every_interval("site")} fill(0)').alias("$tag_site errors"),
                               InfluxQL(f'SELECT sum("errors") / sum("events") FROM "web_window" {where(SITE)} '
                                        f'{every_interval("site")} fill(none)').alias("$tag_site error rate"))
                         .override_by_regexp("/ error rate$/", [prop("unit", "percentunit"),
                                                                 prop("custom.axisPlacement", "right")]))
             .with_panel(graph("Latency p50 / p95",
                               InfluxQL('SELECT mean("latency_p50") AS "p50", max("latency_p95") AS "p95" '
                                        f'FROM "web_window" {where(SITE)} {every_interval("site")} fill(none)')
                               .alias("$tag_site $col"),
                               InfluxQL('SELECT min("limit_above") AS "p95 limit" FROM "anomaly_score" '
                                        f'{where(WEB, LATENCY, matches("entity", "site"))} '
                                        f'{every_interval("entity")} fill(none)').alias("$tag_entity $col"),
                               unit="ms", w=24,
                               description="Dashed red: the p95 limit the business set (OPSMON_LIMITS), "
                                           "which alerts whenever crossed.")
                         .override_by_regexp("/ limit$/", LIMIT_LINE)))
    return finish(board)


def funnel() -> bargauge.Panel:
    """Page views, add-to-cart, checkouts and purchases in the time range, as horizontal bars."""
    select = ", ".join(f'sum("{field}") AS "{name}"' for field, name in FUNNEL_STEPS)
    return (bargauge.Panel().title("Conversion funnel").datasource(datasource_ref()).span(12).height(8)
            .description("Each step of the shop's funnel, all selected sites together.")
            .with_target(InfluxQL(f'SELECT {select} FROM "web_window" {where(SITE)}').alias("$col"))
            .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(False))
            .thresholds(thresholds([(None, "blue")])).min(0))


def _total(select: str) -> InfluxQL:
    return InfluxQL(f'SELECT {select} FROM "web_window" {where(SITE)}')
