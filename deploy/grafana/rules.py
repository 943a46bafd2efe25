"""Grafana-managed alert rules for opsmon's anomalies, as typed SDK objects, in both provisioning shapes.

Each rule is one InfluxQL query (A) grouped by the identity tags, so every site/device, store, shop
or topic becomes its own alert instance labelled with those tags; B reduces A's series to one
number and C compares it with a threshold. ``file_groups()`` gives the shape of a provisioning file
(``alerting/rules.yaml``), ``api_groups()`` the body of the provisioning HTTP API's rule-group PUT.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import expr as eb
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards import iot, pipeline
from deploy.grafana.boards import web as web_board
from deploy.grafana.boards.common import (
    FOLDER_TITLE,
    FOLDER_UID,
    UID_PIPELINE,
    panel_id,
    where,
)
from deploy.grafana.influxql import DATASOURCE_UID, InfluxQL, register
from streams.sources import SOURCES

GROUP_TITLE = "opsmon anomalies"
GROUP_INTERVAL_S = 60
EXPR = dm.DataSourceRef(type_val="__expr__", uid="__expr__")
Reducer = Literal["sum", "mean", "min", "max", "count", "last", "median"]
Comparison = Literal["gt", "lt"]
REVENUE = "\"metric\" = 'revenue'"
# A sales anomaly with the value under its expectation: a drop, not a rush.
BELOW_EXPECTED = '"observed" < "expected"'


@dataclass(frozen=True)
class RuleSpec:
    """What one rule checks, in opsmon's terms; ``build_rule`` turns it into Grafana's."""

    uid: str
    title: str
    query: str  # InfluxQL with $timeFilter; GROUP BY the tags that name an alert instance
    lookback_s: int  # the time range $timeFilter covers at each evaluation
    reducer: Reducer
    comparison: Comparison
    threshold: float
    pending: str  # how long the condition must hold before the alert fires
    severity: str
    source: str
    summary: str  # Go template over $labels / $values
    runbook: str
    dashboard_uid: str
    panel_title: str | None = None
    no_data: Literal["OK", "NoData", "Alerting"] = "OK"


def specs() -> list[RuleSpec]:
    """The rules opsmon ships with; a rule about one metric of a source takes its runbook from the declaration."""
    pos, web = SOURCES["pos"], SOURCES["web"]
    return [
        RuleSpec(
            uid="opsmon-iot-anomaly", title="IoT reading anomalous",
            query=(f'SELECT max("score") FROM "anomaly_score" {where(_source("iot"))} '
                   'GROUP BY time(1m), "entity", "metric" fill(none)'),
            lookback_s=600, reducer="last", comparison="gt", threshold=0.9, pending="2m",
            severity="warning", source="iot",
            summary="{{ $labels.entity }}: {{ $labels.metric }} is anomalous (score {{ $values.B.Value }})",
            runbook="Check the device on site: sensor fault, door left open, failing compressor or motor? "
                    "Acknowledge or mark false positive so the model learns.",
            dashboard_uid=SOURCES["iot"].board, panel_title=iot.SCORE_TITLE),
        RuleSpec(
            uid="opsmon-sales-drop", title="Sales below forecast",
            query=('SELECT sum("is_anomaly") FROM "anomaly_score" '
                   f'{where(_source("pos"), REVENUE, BELOW_EXPECTED)} GROUP BY "entity"'),
            lookback_s=900, reducer="last", comparison="gt", threshold=0, pending="5m",
            severity="warning", source="pos",
            summary="{{ $labels.entity }}: revenue anomalously low ({{ $values.B.Value }} low windows in 15 min)",
            runbook=pos.metric("revenue").runbook, dashboard_uid=pos.board),
        RuleSpec(
            uid="opsmon-web-errors", title="Web shop error rate high",
            query=f'SELECT {web.metric("error_rate").select} FROM "{web.measurement}" {where()} GROUP BY "site"',
            lookback_s=600, reducer="last", comparison="gt", threshold=0.05, pending="5m",
            severity="critical", source="web",
            summary="{{ $labels.site }}: {{ humanizePercentage $values.B.Value }} of requests fail",
            runbook=web.metric("error_rate").runbook, dashboard_uid=web.board, panel_title=web_board.ERRORS_TITLE),
        RuleSpec(
            uid="opsmon-pipeline-stalled", title="opsmon pipeline stalled",
            query=f'SELECT spread("events") FROM "opsmon_pipeline" {where()} GROUP BY "worker", "topic"',
            lookback_s=600, reducer="last", comparison="lt", threshold=1, pending="5m",
            severity="critical", source="opsmon", no_data="Alerting",
            summary="{{ $labels.worker }} processed no {{ $labels.topic }} events for 10 minutes",
            runbook="opsmon worker down or stuck, or the producer stopped: `opsmon stack status`, worker logs, "
                    "Kafka consumer group.",
            dashboard_uid=UID_PIPELINE, panel_title=pipeline.EVENTS_TITLE),
        RuleSpec(
            uid="opsmon-consumer-lag", title="opsmon falling behind",
            query=('SELECT sum("lag") FROM (SELECT last("lag") AS "lag" FROM "opsmon_pipeline" '
                   f'{where()} GROUP BY "worker", "topic") GROUP BY "topic"'),
            lookback_s=300, reducer="last", comparison="gt", threshold=10000, pending="10m",
            severity="warning", source="opsmon",
            summary="{{ $labels.topic }}: {{ $values.B.Value }} messages behind",
            runbook="Add workers (up to the topic's partitions) or partitions; check InfluxDB write latency.",
            dashboard_uid=UID_PIPELINE, panel_title=pipeline.LAG_TITLE),
    ]


def build_rule(spec: RuleSpec, boards: dict[str, dm.Dashboard]) -> am.Rule:
    """One Grafana alert rule (API shape) from a spec."""
    board = boards[spec.dashboard_uid]
    annotations = {"summary": spec.summary, "runbook": spec.runbook, "dashboard": f"/d/{spec.dashboard_uid}",
                   "__dashboardUid__": spec.dashboard_uid}
    if spec.panel_title is not None:
        annotations["__panelId__"] = str(panel_id(board, spec.panel_title))
    rule = (ab.Rule(spec.title).uid(spec.uid).folder_uid(FOLDER_UID).rule_group(GROUP_TITLE).org_id(1)
            .condition("C").for_val(spec.pending).no_data_state(spec.no_data).exec_err_state("Error")
            .labels({"severity": spec.severity, "source": spec.source, "team": "operations"})
            .annotations(annotations)
            .with_query(ab.Query("A").datasource_uid(DATASOURCE_UID)
                        .relative_time_range(am.RelativeTimeRange(from_val=spec.lookback_s, to=0))
                        .model(InfluxQL(spec.query).ref_id("A")))
            .with_query(ab.Query("B").datasource_uid("__expr__")
                        .model(eb.TypeReduce().ref_id("B").datasource(EXPR).expression("A").reducer(spec.reducer)
                               .settings(eb.ExprTypeReduceSettings().mode("dropNN"))))
            .with_query(ab.Query("C").datasource_uid("__expr__")
                        .model(eb.TypeThreshold().ref_id("C").datasource(EXPR).expression("B").conditions([
                            eb.ExprTypeThresholdConditions().evaluator(
                                eb.ExprTypeThresholdConditionsEvaluator().type(spec.comparison)
                                .params([spec.threshold]))]))))
    return rule.build()


def rules() -> list[am.Rule]:
    """Every rule, built against the boards it links to."""
    from deploy.grafana.boards import all_boards

    register()
    boards = {b.uid or "": b for b in all_boards()}
    return [build_rule(spec, boards) for spec in specs()]


def api_groups() -> list[dict[str, object]]:
    """Rule groups as the body of ``PUT /api/v1/provisioning/folder/{folder}/rule-groups/{group}``."""
    group = am.RuleGroup(folder_uid=FOLDER_UID, interval=GROUP_INTERVAL_S, rules=rules(), title=GROUP_TITLE)
    return [_plain(group)]


def file_groups() -> list[dict[str, object]]:
    """Rule groups in the shape of Grafana's alerting provisioning files (``apiVersion: 1``)."""
    out_rules = []
    for rule in rules():
        api = _plain(rule)
        annotations = dict(api.get("annotations") or {})
        # Files name the linked dashboard and panel with fields of their own, not annotations.
        dashboard_uid = annotations.pop("__dashboardUid__", None)
        panel = annotations.pop("__panelId__", None)
        entry: dict[str, object] = {"uid": api["uid"], "title": api["title"], "condition": api["condition"],
                                    "data": api["data"]}
        if dashboard_uid:
            entry["dashboardUid"] = dashboard_uid
        if panel:
            entry["panelId"] = int(panel)
        entry.update({"noDataState": api["noDataState"], "execErrState": api["execErrState"], "for": api["for"],
                      "annotations": annotations, "labels": api["labels"], "isPaused": False})
        out_rules.append(entry)
    return [{"orgId": 1, "name": GROUP_TITLE, "folder": FOLDER_TITLE, "interval": f"{GROUP_INTERVAL_S}s",
             "rules": out_rules}]


def _plain(obj: object) -> dict:
    """SDK objects to plain JSON types."""
    return json.loads(json.dumps(obj, cls=JSONEncoder))



def _source(name: str) -> str:
    return f"\"source\" = '{name}'"
