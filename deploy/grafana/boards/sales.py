"""Sales and demand: till figures per store, demand forecast against actual sales, stock-out risk.

The till figures follow the POS source's declaration (``streams.sources.POS``): its windows' measurement,
the store tag, and a graph per judged metric.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards.common import (
    UID_SALES,
    every_interval,
    finish,
    graph,
    grid,
    matches,
    metric_panels,
    new_dashboard,
    prop,
    query_variable,
    single_stat,
    where,
)
from deploy.grafana.influxql import InfluxQL
from streams.sources import SKU_MEASUREMENT, SOURCES

STORE = matches("store")
BUCKET = "\"bucket\" = '$bucket'"
FORECAST_TITLE = "$sku: forecast vs actual"
STOCK_TITLE = "Stock-out risk"


def build() -> dm.Dashboard:
    """The sales and demand board (its time range reaches a day ahead, where the forecasts are)."""
    pos = SOURCES["pos"]
    board = (new_dashboard(UID_SALES, "opsmon: sales and demand",
                           "Revenue, transactions, baskets and refunds per store; demand forecast; stock-out risk.",
                           time_from="now-24h", time_to="now+24h")
             .with_variable(query_variable("store", "Store", f'SHOW TAG VALUES FROM "{pos.measurement}" '
                                                               'WITH KEY = "store"'))
             .with_variable(query_variable("sku", "SKU", f'SHOW TAG VALUES FROM "{SKU_MEASUREMENT}" '
                                                         f'WITH KEY = "sku" WHERE {STORE}'))
             # Day by default: the pipeline forecasts days per SKU, but hours only for the store's total
             # (sku "_total"), which no SKU panel matches.
             .with_variable(db.CustomVariable("bucket").label("Forecast bucket").values("day,hour")
                            .current(dm.VariableOption(selected=True, text="day", value="day")))
             .with_panel(single_stat("Revenue", _total('sum("revenue")'), w=6).decimals(0))
             .with_panel(single_stat("Transactions", _total('sum("transactions")'), w=6).decimals(0))
             .with_panel(single_stat("Average basket", _total('sum("revenue") / sum("transactions")'), w=6)
                         .decimals(2))
             .with_panel(single_stat("Refunds", _total('sum("refunds")'), w=6,
                                     steps=[(None, "green"), (10, "orange")]).decimals(0)))
    for panel in metric_panels(pos):
        board = board.with_panel(panel)
    board = (board
             .with_panel(graph("Refunds and voids per store",
                               InfluxQL('SELECT sum("refunds") AS "refunds", sum("voids") AS "voids" '
                                        f'FROM "{pos.measurement}" {where(STORE)} {every_interval("store")} fill(0)')
                               .alias("$tag_store $col")))
             .with_panel(graph("Units sold per SKU",
                               InfluxQL(f'SELECT sum("quantity") FROM "{SKU_MEASUREMENT}" '
                                        f'{where(STORE, matches("sku"))} {every_interval("store", "sku")} fill(0)')
                               .alias("$tag_store $tag_sku"), w=24))
             .with_panel(stock_table())
             .with_row(db.Row("Forecast: $store").repeat("store").with_panel(forecast_panel())))
    return finish(board)


def forecast_panel() -> timeseries.Panel:
    """Forecast of one store and SKU (repeated per SKU): prediction, its interval, and what actually sold."""
    query = InfluxQL('SELECT "predicted", "lower", "upper", "actual" FROM "forecast" '
                     f'{where(STORE, matches("sku"), BUCKET)}').alias("$col")
    return (graph(FORECAST_TITLE, query, w=12,
                  description="Shaded: the forecast's interval. Actual appears as buckets close.")
            .repeat("sku").repeat_direction("h").max_per_row(2)
            .override_by_name("upper", [prop("custom.fillBelowTo", "lower"), prop("custom.lineWidth", 0),
                                        prop("custom.fillOpacity", 20)])
            .override_by_name("lower", [prop("custom.lineWidth", 0)])
            .override_by_name("predicted", [prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})])
            .override_by_name("actual", [prop("custom.lineWidth", 2), prop("custom.showPoints", "always")]))


def stock_table() -> table.Panel:
    """Latest stock estimate per store and SKU, soonest stock-out first."""
    query = InfluxQL('SELECT last("stock") AS "stock", last("days_to_stockout") AS "days to stock-out", '
                     f'last("at_risk") AS "at risk" FROM "stock_risk" {where(STORE, matches("sku"))} '
                     'GROUP BY "store", "sku"').format("table")
    return (grid(STOCK_TITLE, query, w=24, h=8)
            .sort_by([cb.TableSortByFieldState().display_name("days to stock-out").desc(False)])
            .override_by_name("at risk", [prop("mappings", [{"type": "value", "options": {
                "0": {"text": "no", "color": "green", "index": 0},
                "1": {"text": "yes", "color": "red", "index": 1}}}]),
                prop("custom.cellOptions", {"type": "color-background"})]))


def _total(select: str) -> InfluxQL:
    return InfluxQL(f'SELECT {select} FROM "{SOURCES["pos"].measurement}" {where(STORE)}')
