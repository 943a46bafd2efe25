"""IoT devices: each device's readings with the model's expected band, anomaly scores and anomaly markers.

It follows the IoT source's declaration (``streams.sources.IOT``): the readings' measurement and its site
and device tags. A reading source judges every measurement a device sends, so the board repeats its panels
over the readings' field keys rather than over the declared metrics.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards.common import (
    LIMIT_LINE,
    UID_IOT,
    every_interval,
    finish,
    fixed_color,
    graph,
    grid,
    matches,
    new_dashboard,
    prop,
    query_variable,
    where,
)
from deploy.grafana.influxql import InfluxAnnotation, InfluxQL
from streams.sources import SOURCES

SPEC = SOURCES["iot"]
READINGS = SPEC.measurement
# anomaly_score names an IoT series by entity "site/device"; the slash is escaped inside /regex/.
ENTITY = '"entity" =~ /^$site\\/$device$/'
IOT = f"\"source\" = '{SPEC.name}'"
DEVICE = f'{matches("site")} AND {matches("device")}'

READING_TITLE = "$metric"
SCORE_TITLE = "Anomaly score"


def build() -> dm.Dashboard:
    """The IoT devices board."""
    board = (new_dashboard(UID_IOT, "opsmon: IoT devices",
                           "Readings per device and metric with the expected band; anomaly scores and markers.")
             .with_variable(query_variable("site", "Site", f'SHOW TAG VALUES FROM "{READINGS}" WITH KEY = "site"',
                                           multi=False))
             .with_variable(query_variable("device", "Device", f'SHOW TAG VALUES FROM "{READINGS}" '
                                                               f'WITH KEY = "device" WHERE {matches("site")}'))
             .with_variable(query_variable("metric", "Metric", f'SHOW FIELD KEYS FROM "{READINGS}"'))
             .annotation(InfluxAnnotation("Anomalies", 'SELECT "score", "observed", "metric", "entity" '
                                                       f'FROM "anomaly_score" WHERE {IOT} AND "is_anomaly" = 1 '
                                                       f'AND {ENTITY} AND $timeFilter')
                         .columns(text="metric", tags="entity,metric"))
             .with_panel(grid("Latest readings",
                              InfluxQL(f'SELECT last(*) FROM "{READINGS}" {where(DEVICE)} GROUP BY "device"')
                              .format("table"), w=16, h=7,
                              description="The last value of every metric of each selected device."))
             .with_panel(grid("Anomalies by device and metric",
                              InfluxQL('SELECT sum("is_anomaly") AS "anomalies", max("score") AS "max score" '
                                       f'FROM "anomaly_score" {where(IOT, ENTITY)} GROUP BY "entity", "metric"')
                              .format("table"), w=8, h=7))
             .with_row(db.Row("Device $device").repeat("device")
                       .with_panel(reading_panel())
                       .with_panel(score_panel())))
    return finish(board)


def reading_panel() -> timeseries.Panel:
    """One metric of one device (repeated per metric): the reading, expected value and band."""
    reading = InfluxQL(f'SELECT mean("$metric") AS "reading" FROM "{READINGS}" {where(DEVICE)} '
                       f'{every_interval()} fill(none)').alias("$col")
    band = InfluxQL('SELECT mean("expected") AS "expected", min("lower") AS "lower", max("upper") AS "upper", '
                    'min("limit_above") AS "limit above", max("limit_below") AS "limit below" '
                    f'FROM "anomaly_score" {where(IOT, ENTITY, matches("metric"))} {every_interval()} fill(none)'
                    ).alias("$col")
    return (graph(READING_TITLE, reading, band, w=12,
                  description="Shaded: the band the model expects the reading in; outside it the score rises. "
                              "Red: a limit the business set (OPSMON_LIMITS), which alerts whenever crossed.")
            .repeat("metric").repeat_direction("h").max_per_row(2)
            .override_by_name("upper", [prop("custom.fillBelowTo", "lower"), prop("custom.lineWidth", 0),
                                        prop("custom.fillOpacity", 20), prop("color", fixed_color("blue"))])
            .override_by_name("lower", [prop("custom.lineWidth", 0), prop("color", fixed_color("blue"))])
            .override_by_name("expected", [prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                                           prop("color", fixed_color("blue"))])
            .override_by_name("reading", [prop("color", fixed_color("yellow")), prop("custom.lineWidth", 2)])
            .override_by_regexp("/^limit /", LIMIT_LINE))


def score_panel() -> timeseries.Panel:
    """Anomaly score of each selected metric of one device, against the model's threshold."""
    score = InfluxQL(f'SELECT max("score") FROM "anomaly_score" {where(IOT, ENTITY, matches("metric"))} '
                     f'{every_interval("metric")} fill(none)').alias("$tag_metric")
    threshold = InfluxQL(f'SELECT mean("threshold") FROM "anomaly_score" {where(IOT, ENTITY, matches("metric"))} '
                         f'{every_interval("metric")} fill(none)').alias("$tag_metric threshold")
    return (graph(SCORE_TITLE, score, threshold, unit="percentunit", w=24, h=6,
                  description="0..1; above its threshold (dashed) a value is an anomaly.")
            .min(0).max(1)
            .override_by_regexp("/ threshold$/", [prop("custom.lineStyle", {"fill": "dash", "dash": [4, 4]})]))
