"""Web shop: traffic, the conversion funnel, errors and latency per site.

It follows the web source's declaration (``streams.sources.WEB``): its windows' measurement and a graph per
judged metric; the board draws conversion, error rate and latency in panels of its own (with the errors'
count, the p50 and the limit beside them), and every other judged metric in ``metric_panels``' graph.
"""

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
    metric_panels,
    new_dashboard,
    prop,
    query_variable,
    single_stat,
    thresholds,
    where,
)
from deploy.grafana.influxql import InfluxQL, datasource_ref
from streams.sources import SOURCES

SITE = matches("site")
WEB = "\"source\" = 'web'"
LATENCY = "\"metric\" = 'latency_p95'"
# The judged metrics this board draws in panels of its own.
DRAWN = ("conversion", "error_rate", "latency_p95")
ERRORS_TITLE = "Errors and error rate"
FUNNEL_STEPS = (("page_views", "page views"), ("add_to_cart", "add to cart"), ("checkouts", "checkouts"),
                ("purchases", "purchases"))


def build() -> dm.Dashboard:
    """The web shop board."""
    web = SOURCES["web"]
    conversion, error_rate, latency = (web.metric(name).select for name in DRAWN)
    board = (new_dashboard(UID_WEB, "opsmon: web shop", "Traffic, conversion funnel, errors and latency per site.")
             .with_variable(query_variable("site", "Site", f'SHOW TAG VALUES FROM "{web.measurement}" '
                                                           'WITH KEY = "site"'))
             .with_panel(single_stat("Sessions", _total('sum("sessions")'), w=5).decimals(0))
             .with_panel(single_stat("Purchases", _total('sum("purchases")'), w=5).decimals(0))
             .with_panel(single_stat("Conversion", _total(conversion), w=5,
                                     unit="percentunit").decimals(1))
             .with_panel(single_stat("Error rate", _total(error_rate), w=5, unit="percentunit",
                                     steps=[(None, "green"), (0.02, "orange"), (0.05, "red")]).decimals(1))
             .with_panel(single_stat("Latency p95 (worst window)", _total(latency), w=4, unit="ms",
                                     steps=[(None, "green"), (1000, "orange"), (3000, "red")]))
             .with_panel(graph("Traffic",
                               InfluxQL('SELECT sum("page_views") AS "page views", sum("sessions") AS "sessions" '
                                        f'FROM "{web.measurement}" {where(SITE)} {every_interval("site")} fill(0)')
                               .alias("$tag_site $col")))
             .with_panel(funnel())
             .with_panel(graph("Conversion rate",
                               InfluxQL(f'SELECT {conversion} FROM "{web.measurement}" '
                                        f'{where(SITE)} {every_interval("site")} fill(none)').alias("$tag_site"),
                               unit="percentunit"))
             .with_panel(graph(ERRORS_TITLE,
                               InfluxQL(f'SELECT sum("errors") FROM "{web.measurement}" {where(SITE)} '
                                        f'{every_interval("site")} fill(0)').alias("$tag_site errors"),
                               InfluxQL(f'SELECT {error_rate} FROM "{web.measurement}" {where(SITE)} '
                                        f'{every_interval("site")} fill(none)').alias("$tag_site error rate"))
                         .override_by_regexp("/ error rate$/", [prop("unit", "percentunit"),
                                                                 prop("custom.axisPlacement", "right")]))
             .with_panel(graph("Latency p50 / p95",
                               InfluxQL(f'SELECT mean("latency_p50") AS "p50", {latency} AS "p95" '
                                        f'FROM "{web.measurement}" {where(SITE)} {every_interval("site")} fill(none)')
                               .alias("$tag_site $col"),
                               InfluxQL('SELECT min("limit_above") AS "p95 limit" FROM "anomaly_score" '
                                        f'{where(WEB, LATENCY, matches("entity", "site"))} '
                                        f'{every_interval("entity")} fill(none)').alias("$tag_entity $col"),
                               unit="ms", w=24,
                               description="Dashed red: the p95 limit the business set (OPSMON_LIMITS), "
                                           "which alerts whenever crossed.")
                         .override_by_regexp("/ limit$/", LIMIT_LINE)))
    for panel in metric_panels(web, drawn=DRAWN):
        board = board.with_panel(panel)
    return finish(board)


def funnel() -> bargauge.Panel:
    """Page views, add-to-cart, checkouts and purchases in the time range, as horizontal bars."""
    select = ", ".join(f'sum("{field}") AS "{name}"' for field, name in FUNNEL_STEPS)
    return (bargauge.Panel().title("Conversion funnel").datasource(datasource_ref()).span(12).height(8)
            .description("Each step of the shop's funnel, all selected sites together.")
            .with_target(InfluxQL(f'SELECT {select} FROM "{SOURCES["web"].measurement}" {where(SITE)}')
                         .alias("$col"))
            .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(False))
            .thresholds(thresholds([(None, "blue")])).min(0))


def _total(select: str) -> InfluxQL:
    return InfluxQL(f'SELECT {select} FROM "{SOURCES["web"].measurement}" {where(SITE)}')
