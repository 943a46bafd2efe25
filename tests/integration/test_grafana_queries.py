"""Every InfluxQL query of the generated boards, annotations, variables and alert rules, run for real.

The fixture (tests/fixtures_influx.py) goes into a database of its own on the stack's InfluxDB; each query
gets Grafana's macros and template variables substituted the way Grafana does it (deploy/grafana/live.py),
then runs through ``/query``.
Each must succeed and return data; key panels and every alert rule must give the known figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.grafana import rules
from deploy.grafana.boards import all_boards
from deploy.grafana.boards.common import UID_IOT, UID_OVERVIEW, UID_PIPELINE, UID_SALES, UID_WEB
from deploy.grafana.influxql import InfluxAnnotationTarget, InfluxQLQuery
from deploy.grafana.live import Series, substitute
from deploy.stack import Stack
from opsmon.settings import Settings
from tests import fixtures_influx as fx

DATABASE = "opsmon_grafana"
# A repeated panel or row shows one value of its variable: these, so the known incidents are in view.
REPEAT_VALUES = {"device": "fridge-1", "metric": "temperature", "store": "store-a", "sku": "sku-1"}
SINGLE_VALUES = {"bucket": "hour"}
BOARDS = {b.uid: b for b in all_boards()}


class Influx:
    """The loaded test database: runs InfluxQL and substitutes Grafana's macros."""

    def __init__(self, base_url: str, fixture: fx.Fixture, auth: tuple[str, str]) -> None:
        self.base_url = base_url
        self.fixture = fixture
        self.auth = auth

    def query(self, q: str) -> list[Series]:
        """Run one InfluxQL statement; an InfluxDB error fails the test with the query."""
        r = httpx.post(f"{self.base_url}/query", data={"db": DATABASE, "q": q, "epoch": "ms"}, timeout=30,
                       auth=self.auth)
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{q}"
        result = r.json()["results"][0]
        assert "error" not in result, f"{result['error']}\n{q}"
        return [Series(s["name"], s.get("tags", {}), s["columns"], s["values"]) for s in result.get("series", [])]

    def time_filter(self, time_from: str | None = None) -> str:
        """``$timeFilter`` for the fixture's range (reaching 3 h ahead for forecasts) or a panel's override."""
        end = self.fixture.end_ms
        if time_from is not None:
            return f"time >= {end - _duration_ms(time_from)}ms and time <= {end}ms"
        return f"time >= {self.fixture.start_ms}ms and time <= {end + 3 * fx.HOUR_MS}ms"


def _duration_ms(text: str) -> int:
    number, unit = int(text[:-1]), text[-1]
    return number * {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]


@pytest.fixture(scope="module")
def influx(stack: Stack, stack_settings: Settings) -> Influx:
    """The stack's InfluxDB with the fixture loaded into its own database (as the admin: it creates one)."""
    fixture = fx.build()
    url = f"http://127.0.0.1:{stack_settings.stack_influxdb_port}"
    auth = stack.influx_auth()
    admin = (auth.admin_user, auth.admin_password())
    fx.load(url, DATABASE, fixture, admin)
    return Influx(url, fixture, admin)


@pytest.fixture(scope="module")
def variable_values(influx: Influx) -> dict[str, dict[str, list[str]]]:
    """Each board's template variables as Grafana fills them: query ones by running their queries."""
    out: dict[str, dict[str, list[str]]] = {}
    for uid, board in BOARDS.items():
        chosen: dict[str, list[str]] = {}
        for var in (board.templating.list_val if board.templating else None) or []:
            if var.type_val != "query":
                chosen[var.name] = [SINGLE_VALUES[var.name]]
                continue
            series = influx.query(substitute(str(var.query), chosen, influx.time_filter()))
            values = sorted({str(row[-1]) if "fieldKey" not in s.columns else str(row[0])
                             for s in series for row in s.values})
            # Multi-value variables default to All; single-value ones to their first option.
            chosen[var.name] = values if var.multi else values[:1]
        out[str(uid)] = chosen
    return out


def _targets() -> Iterator[tuple[str, str, str]]:
    for uid, board in BOARDS.items():
        for panel in board.panels or []:
            for target in getattr(panel, "targets", None) or []:
                yield str(uid), str(panel.title), target.ref_id


def panel_variables(board_uid: str, title: str, all_values: dict[str, list[str]]) -> dict[str, list[str]]:
    """The variables one panel sees: a repeated panel or row pins its variable to one value."""
    board = BOARDS[board_uid]
    row_repeat = None
    for panel in board.panels or []:
        if getattr(panel, "type_val", "") == "row":
            row_repeat = panel.repeat
            continue
        if panel.title == title:
            values = dict(all_values)
            for name in (row_repeat, getattr(panel, "repeat", None)):
                if name:
                    values[name] = [REPEAT_VALUES[name]]
            return values
    raise KeyError(title)


def run_panel(influx: Influx, variables: dict[str, dict[str, list[str]]], board_uid: str, title: str,
              ref_id: str = "A") -> list[Series]:
    """Run one target of one panel as Grafana would, with its time override if it has one."""
    panel = next(p for p in BOARDS[board_uid].panels or [] if p.title == title)
    target = next(t for t in panel.targets if t.ref_id == ref_id)
    assert isinstance(target, InfluxQLQuery)
    q = substitute(target.query, panel_variables(board_uid, title, variables[board_uid]),
                   influx.time_filter(panel.time_from))
    return influx.query(q)


def numbers(series: list[Series]) -> list[float]:
    """Every non-null number in the results, all columns but time."""
    return [v for s in series for row in s.values for v in row[1:] if isinstance(v, int | float)]


def single(series: list[Series]) -> float:
    """The one value of a one-row, one-column result."""
    assert len(series) == 1 and len(series[0].values) == 1, series
    return float(series[0].values[0][1])


def test_variable_queries_give_the_fixture_tags(variable_values: dict[str, dict[str, list[str]]]) -> None:
    assert variable_values[UID_IOT] == {
        "site": ["plant-north"], "device": ["fridge-1", "fridge-2"],
        "metric": ["humidity", "power", "temperature", "vibration"]}
    assert variable_values[UID_SALES] == {"store": ["store-a", "store-b"], "sku": ["sku-1", "sku-2", "sku-3"],
                                          "bucket": ["hour"]}
    assert variable_values[UID_WEB] == {"site": ["shop-eu", "shop-us"]}
    assert variable_values[UID_PIPELINE] == {"topic": sorted(fx.TOPICS.values())}


@pytest.mark.parametrize(("board_uid", "title", "ref_id"), list(_targets()))
def test_every_panel_query_returns_data(influx: Influx, variable_values: dict[str, dict[str, list[str]]],
                                        board_uid: str, title: str, ref_id: str) -> None:
    series = run_panel(influx, variable_values, board_uid, title, ref_id)
    assert series, "no series"
    assert numbers(series) or any("Time" in s.columns for s in series), "only nulls"


def test_annotation_marks_each_anomalous_reading(influx: Influx,
                                                 variable_values: dict[str, dict[str, list[str]]]) -> None:
    annotations = BOARDS[UID_IOT].annotations.list_val
    assert [a.name for a in annotations] == ["Anomalies"]
    target = annotations[0].target
    assert isinstance(target, InfluxAnnotationTarget)
    series = influx.query(substitute(target.query, variable_values[UID_IOT], influx.time_filter()))
    rows = [dict(zip(s.columns, row, strict=True)) for s in series for row in s.values]
    assert len(rows) == fx.MINUTES - fx.SPIKE_FROM
    assert {(r["entity"], r[target.text_column]) for r in rows} == {(fx.ANOMALOUS_ENTITY, fx.ANOMALOUS_METRIC)}
    assert set(target.tags_column.split(",")) <= set(series[0].columns)


def test_overview_figures(influx: Influx, variable_values: dict[str, dict[str, list[str]]]) -> None:
    def run(title: str) -> list[Series]:
        return run_panel(influx, variable_values, UID_OVERVIEW, title)

    assert single(run("Revenue, last hour")) == pytest.approx(fx.EXPECTED["revenue_last_hour"])
    assert single(run("Transactions, last hour")) == fx.EXPECTED["transactions_last_hour"]
    assert single(run("Web conversion, last hour")) == pytest.approx(fx.EXPECTED["web_conversion_last_hour"])
    assert single(run("Web error rate, last hour")) == pytest.approx(fx.EXPECTED["web_error_rate_last_hour"])
    # The panel's reduceRow transformation shows the widest column.
    assert max(numbers(run("Devices reporting, last 5 min"))) == fx.EXPECTED["devices_reporting_last_5m"]
    assert single(run("Open alerts")) == len(fx.EXPECTED["open_alerts"])
    open_rows = {(s.tags["source"], s.tags["entity"], s.tags["metric"]) for s in run("Alerts open now")}
    assert open_rows == fx.EXPECTED["open_alerts"]
    anomalies = {(s.tags["source"], s.tags["entity"]): s.column("anomalies")[0]
                 for s in run("Anomalies by source and entity")}
    assert {k: v for k, v in anomalies.items() if v} == fx.EXPECTED["anomalies"]


def test_iot_reading_band_and_score(influx: Influx, variable_values: dict[str, dict[str, list[str]]]) -> None:
    reading, band = (run_panel(influx, variable_values, UID_IOT, "$metric", ref) for ref in ("A", "B"))
    assert reading[0].column("reading")[-1] == fx.SPIKE  # fridge-1 temperature, the last minute
    assert reading[0].column("reading")[0] == fx.NORMAL["temperature"][0]
    assert band[0].columns[1:] == ["expected", "lower", "upper", "limit above", "limit below"]
    assert band[0].values[-1][1:4] == pytest.approx([4.0, 3.2, 4.8])
    assert band[0].values[-1][4:] == [fx.FRIDGE_LIMIT, None]  # a fridge has a limit above, none below
    scores = {s.tags["metric"]: max(s.column("max")) for s in run_panel(influx, variable_values, UID_IOT,
                                                                         "Anomaly score")}
    assert scores == {"humidity": 0.1, "power": 0.1, "temperature": 0.97, "vibration": 0.1}


def test_sales_figures(influx: Influx, variable_values: dict[str, dict[str, list[str]]]) -> None:
    assert single(run_panel(influx, variable_values, UID_SALES, "Revenue")) == pytest.approx(
        fx.EXPECTED["revenue_total"])
    stock = {(s.tags["store"], s.tags["sku"]): s.values[0][1:] for s in run_panel(
        influx, variable_values, UID_SALES, "Stock-out risk")}
    assert stock == {("store-a", "sku-1"): [5.0, 0.5, 1], ("store-a", "sku-2"): [100.0, 20.0, 0],
                     ("store-b", "sku-3"): [30.0, 3.0, 0]}
    forecast = run_panel(influx, variable_values, UID_SALES, "$sku: forecast vs actual")[0]
    assert forecast.columns == ["time", "predicted", "lower", "upper", "actual"]
    assert len(forecast.values) == 5  # two past hours, the current one and two ahead
    assert [v for v in forecast.column("actual") if v is not None] == [350.0] * 2


def test_web_funnel(influx: Influx, variable_values: dict[str, dict[str, list[str]]]) -> None:
    funnel = run_panel(influx, variable_values, UID_WEB, "Conversion funnel")[0]
    assert dict(zip(funnel.columns[1:], funnel.values[0][1:], strict=True)) == fx.EXPECTED["funnel"]
    errors = run_panel(influx, variable_values, UID_WEB, "Errors and error rate", "B")
    assert max(max(v for v in s.column("sum_sum") if v is not None) for s in errors) == pytest.approx(0.2)
    limits = run_panel(influx, variable_values, UID_WEB, "Latency p50 / p95", "B")
    assert {s.tags["entity"]: set(s.column("p95 limit")) - {None} for s in limits} == {
        site: {fx.LATENCY_LIMIT} for site in fx.WEB_SITES}


def test_pipeline_figures(influx: Influx, variable_values: dict[str, dict[str, list[str]]]) -> None:
    rates = {s.tags["topic"]: [v for v in s.column("sum") if v is not None]
             for s in run_panel(influx, variable_values, UID_PIPELINE, "Events per second per topic")}
    for topic, per_second in fx.EXPECTED["events_per_second"].items():
        assert statistics.median(rates[topic]) == pytest.approx(per_second)
    assert min(rates["web.events"]) >= 0, "the counter reset must not show as a negative rate"
    assert rates["iot.readings"][-1] == 0  # stalled
    assert single(run_panel(influx, variable_values, UID_PIPELINE, "Dead-lettered")) == \
        fx.EXPECTED["dead_lettered_total"]
    assert single(run_panel(influx, variable_values, UID_PIPELINE, "Alert precision")) == pytest.approx(
        fx.EXPECTED["precision"])
    lag = {s.tags["topic"]: s.column("sum")[-1] for s in run_panel(influx, variable_values, UID_PIPELINE,
                                                                  "Consumer lag per topic")}
    assert lag == {"iot.readings": 0, "pos.transactions": 5, "web.events": 50_000}
    fresh = run_panel(influx, variable_values, UID_PIPELINE, "Model freshness")
    assert {s.tags["source"] for s in fresh} == {"iot", "pos", "web"}


def _reduce(values: list[Any], reducer: str) -> float | None:
    """Grafana's reduce expression in dropNN mode."""
    kept = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(v)]
    if not kept:
        return None
    return {"last": kept[-1], "max": max(kept), "min": min(kept), "sum": sum(kept), "count": len(kept),
            "mean": statistics.fmean(kept), "median": statistics.median(kept)}[reducer]


@pytest.mark.parametrize("spec", rules.specs(), ids=lambda s: s.uid)
def test_alert_rule_fires_for_exactly_the_incident(influx: Influx, spec: rules.RuleSpec) -> None:
    end = influx.fixture.end_ms
    time_filter = f"time >= {end - spec.lookback_s * 1000}ms and time <= {end}ms"
    series = influx.query(substitute(spec.query, {}, time_filter))
    assert series, "the rule's query returned nothing: every instance would be NoData"
    firing = []
    for s in series:
        value = _reduce(s.column(s.columns[1]), spec.reducer)
        if value is not None and (value > spec.threshold if spec.comparison == "gt" else value < spec.threshold):
            firing.append(s.tags)
    assert firing == fx.EXPECTED["firing"][spec.uid]


def test_rule_queries_in_the_provisioning_file_are_the_tested_ones() -> None:
    queries = {r["uid"]: r["data"][0]["model"]["query"] for r in rules.file_groups()[0]["rules"]}
    assert queries == {s.uid: " ".join(s.query.split()) for s in rules.specs()}
