"""opsmon itself: throughput, consumer lag, dead letters, late events, model freshness, alert precision.

``opsmon_pipeline`` holds cumulative counters per worker and topic (they restart from 0 with the
worker), so rates come from ``non_negative_derivative`` / ``non_negative_difference`` per worker and
topic, summed across workers in an outer query.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards.common import (
    UID_PIPELINE,
    every_interval,
    finish,
    graph,
    matches,
    new_dashboard,
    query_variable,
    single_stat,
    where,
)
from deploy.grafana.influxql import InfluxQL

TOPIC = matches("topic")
EVENTS_TITLE = "Events per second per topic"
LAG_TITLE = "Consumer lag per topic"


def build() -> dm.Dashboard:
    """The board about opsmon's own health."""
    board = (new_dashboard(UID_PIPELINE, "opsmon: pipeline health",
                           "Is opsmon keeping up, and are its alerts right? Throughput, lag, dead letters, models.")
             .with_variable(query_variable("topic", "Topic",
                                           'SHOW TAG VALUES FROM "opsmon_pipeline" WITH KEY = "topic"'))
             .with_panel(single_stat("Events per second", _rate("events", "1s"), w=5).decimals(1))
             .with_panel(single_stat("Consumer lag", InfluxQL(f'SELECT sum("lag") FROM ({_latest_lag()})'), w=5,
                                     steps=[(None, "green"), (1000, "orange"), (10000, "red")]))
             .with_panel(single_stat("Dead-lettered", _increase("dead_lettered"), w=5,
                                     steps=[(None, "green"), (1, "orange")],
                                     description="Events sent to a dead-letter topic in the time range.")
                         .no_value("0"))
             .with_panel(single_stat("Alert precision", InfluxQL(precision_query()), w=5, unit="percentunit",
                                     steps=[(None, "red"), (0.5, "orange"), (0.8, "green")],
                                     description="Acknowledged alerts / (acknowledged + marked false positive) "
                                                 "by staff in the time range.").decimals(0))
             .with_panel(model_freshness())
             .with_panel(graph(EVENTS_TITLE, _rate("events", "1s", "topic").alias("$tag_topic"), unit="eps"))
             .with_panel(graph(LAG_TITLE, InfluxQL(f'SELECT sum("lag") FROM ({_latest_lag(per_interval=True)}) '
                                                   f'{every_interval("topic")} fill(none)').alias("$tag_topic"),
                               description="Messages behind the end of each topic, all workers together."))
             .with_panel(graph("Dead-lettered per minute", _rate("dead_lettered", "1m", "topic").alias("$tag_topic"),
                               w=8))
             .with_panel(graph("Late events per minute", _rate("late", "1m", "topic").alias("$tag_topic"), w=8,
                               description="Events older than their window's grace period (rewritten in place)."))
             .with_panel(graph("Windows written per minute", _rate("windows_written", "1m", "topic")
                               .alias("$tag_topic"), w=8))
             .with_panel(graph("Scored values per source",
                               InfluxQL(f'SELECT count("score") FROM "anomaly_score" {where()} '
                                        f'{every_interval("source")} fill(0)').alias("$tag_source"),
                               description="Falls to zero when a model stops scoring: a stale model.", w=8))
             .with_panel(graph("Staff feedback",
                               InfluxQL(f'SELECT sum("count") FROM "feedback" {where()} '
                                        f'{every_interval("kind")} fill(0)').alias("$tag_kind"), w=8)
                         .draw_style(cm.GraphDrawStyle.BARS))
             .with_panel(graph("Alert precision over time", InfluxQL(precision_query(per_interval=True))
                               .alias("precision"), unit="percentunit", w=8).min(0).max(1)))
    return finish(board)


def precision_query(per_interval: bool = False) -> str:
    """ack / (ack + false_positive) from the ``feedback`` measurement.

    The third subquery adds a zero of each kind wherever there is any feedback, so a kind with no
    points at all counts as 0 instead of making the whole ratio null. ``* 1.0`` makes the integer
    counts floats: InfluxDB 1.6 loses integer columns read from several subqueries (null sums).
    """
    group = f" {every_interval()}" if per_interval else ""

    def part(select: str, kind: str | None) -> str:
        cond = (f"\"kind\" = '{kind}'",) if kind else ()
        return f'(SELECT {select} FROM "feedback" {where(*cond)}{group})'

    parts = ", ".join((part('sum("count") * 1.0 AS "ack"', "ack"),
                       part('sum("count") * 1.0 AS "fp"', "false_positive"),
                       part('sum("count") * 0.0 AS "ack", sum("count") * 0.0 AS "fp"', None)))
    return f'SELECT sum("ack") / (sum("ack") + sum("fp")) FROM {parts}{group}'


def model_freshness() -> stat.Panel:
    """When each source's model last wrote a score: shown as 'n minutes ago'."""
    return (single_stat("Model freshness", InfluxQL(f'SELECT last("score") FROM "anomaly_score" {where()} '
                                                    'GROUP BY "source"').alias("$tag_source"),
                        unit="dateTimeFromNow", w=4,
                        description="Time of the latest anomaly score per source; old means a stalled model.")
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/^Time$/"))
            .graph_mode(cm.BigValueGraphMode.NONE))


def _latest_lag(per_interval: bool = False) -> str:
    group = f'{every_interval("worker", "topic")} fill(none)' if per_interval else 'GROUP BY "worker", "topic"'
    return f'SELECT last("lag") AS "lag" FROM "opsmon_pipeline" {where(TOPIC)} {group}'


def _rate(counter: str, unit: str, *tags: str) -> InfluxQL:
    """Per-second (or per-minute) rate of a cumulative counter, summed over workers."""
    inner = (f'SELECT non_negative_derivative(last("{counter}"), {unit}) AS "rate" FROM "opsmon_pipeline" '
             f'{where(TOPIC)} {every_interval("worker", "topic")}')
    return InfluxQL(f'SELECT sum("rate") FROM ({inner}) {every_interval(*tags)} fill(none)')


def _increase(counter: str) -> InfluxQL:
    """How much a cumulative counter grew in the time range, across worker restarts."""
    inner = (f'SELECT non_negative_difference("{counter}") AS "n" FROM "opsmon_pipeline" {where(TOPIC)} '
             'GROUP BY "worker", "topic"')
    return InfluxQL(f'SELECT sum("n") FROM ({inner})')
