"""One declaration per source: its events, how they fold, which metrics are judged and how, where they show.

The pipeline, the scoring, the alert wording and the boards read these declarations instead of asking which
source they serve. Adding a source, or a metric to one, is an edit here.

>>> SOURCES["web"].metric("error_rate").pooled
('errors', 'events')
>>> SOURCES["iot"].metric("humidity").harmful, SOURCES["iot"].group_of("site-1/fridge-2")
(0, 'site-1')
>>> SOURCES["pos"].board_link("http://grafana:3000", "store-4")
'http://grafana:3000/d/opsmon-sales?var-store=store-4'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from models.anomaly import LINEAR, LOG
from sinks.lineproto import line
from streams.windows import Aggregate, PosAggregate, WebAggregate

DEFAULT_RUNBOOK = "Open the board and compare with the same time last week."
SILENCE = "reporting"  # the metric name of missing-data alerts


@dataclass(frozen=True)
class MetricSpec:
    """How one metric of a source is judged and explained.

    ``harmful``: +1 when only a rise is an incident (error rate, latency), -1 when only a fall is (conversion),
    0 both ways. Fewer errors or slow pages than usual is nobody's incident, and a zero error rate that lasts
    is not a stuck sensor.

    ``per``: the field the metric is taken over; with none of it the value is undefined (the window shows 0)
    and is not judged. A silent till's missing sales are news; its average basket of 0 is not, nor is the
    0 ms latency of a night minute without a visitor, which would teach the model that 0 ms is usual.

    ``pooled``: the (successes, trials) fields of a ratio, judged once it rests on enough trials, quiet
    windows pooled until it does: one error in four night-time requests is not an error rate of 25%, it is
    too few requests to say.

    ``counted``: the ratio's count is judged too, against its usual rate (``models.ratio.CountTail``), on the
    harmful side: on a shop whose history is full of checkout failures, 25% errors over 36 requests scores
    just under the detector's bar, while its count (9 of 36 at 0.4%) is rarer than one in a billion.

    ``scale``: ``"log"`` for counts whose spread grows with their level (a page's events: a busy hour's
    ordinary swings are a quiet hour's whole level), judged as ``log(1 + x)`` (``models.anomaly.SeriesDetector``);
    ``"linear"`` for the rest.

    ``title``, ``unit`` and ``rollup`` say how the source's board draws a windowed metric: a panel per
    metric, its windows added up over each point of the graph by ``rollup``, an InfluxQL selection of the
    fields written (empty: the field's sum, or a pooled ratio's sum of successes over its sum of trials; a
    derived field such as the refund rate is not written, so it spells its ratio out).
    """

    name: str
    harmful: int = 0
    per: str | None = None
    pooled: tuple[str, str] | None = None
    counted: bool = False
    scale: str = LINEAR
    runbook: str = DEFAULT_RUNBOOK
    title: str = ""  # empty: the name, capitalised
    unit: str = "short"  # a Grafana unit: short, percentunit, ms, ...
    rollup: str = ""

    @property
    def label(self) -> str:
        """The metric as people read it on a board."""
        return self.title or self.name.replace("_", " ").capitalize()

    @property
    def select(self) -> str:
        """The InfluxQL selection that adds the metric's windows up (see ``rollup``)."""
        if self.rollup:
            return self.rollup
        if self.pooled is not None:
            return f'sum("{self.pooled[0]}") / sum("{self.pooled[1]}")'
        return f'sum("{self.name}")'


def _pos_totals(fields: dict[str, float]) -> dict[str, float]:
    """The refund rate and its trials, which a POS window does not carry."""
    n = fields["transactions"] + fields["refunds"]
    return {**fields, "sales_and_refunds": n, "refund_rate": fields["refunds"] / n if n else 0.0}


def _same(fields: dict[str, float]) -> dict[str, float]:
    return fields


SKU_MEASUREMENT = "pos_sku_window"


def _sku_lines(entity: str, agg: Aggregate, ts_ms: int) -> list[str]:
    """Units and revenue per SKU of a POS window (what demand forecasts and the sales board read)."""
    assert isinstance(agg, PosAggregate)
    return [line(SKU_MEASUREMENT, {"store": entity, "sku": sku},
                 {"quantity": round(qty, 6), "revenue": round(revenue, 6)}, ts_ms)
            for sku, (qty, revenue) in agg.skus.items()]


def _no_lines(entity: str, agg: Aggregate, ts_ms: int) -> list[str]:
    return []


@dataclass(frozen=True)
class SourceSpec:
    """Everything that differs between sources, declared once.

    A source whose events are readings (``aggregate`` None) judges every measurement of a reading as it
    arrives; otherwise events fold into tumbling windows of ``aggregate``, written to ``measurement`` and
    judged once final, and an entity without events gets windows of ``zero_fields``.
    """

    name: str
    measurement: str  # of the readings, or of the windows
    entity_tags: tuple[str, ...]  # the tags naming an entity in ``measurement`` (IoT: site, device)
    board: str  # the Grafana board's uid
    metrics: tuple[MetricSpec, ...] = ()  # judged metrics; a reading source judges every measurement too
    aggregate: Callable[[], Aggregate] | None = None
    zero_fields: dict[str, float] = field(default_factory=dict)
    with_totals: Callable[[dict[str, float]], dict[str, float]] = _same  # derived fields, e.g. a ratio's trials
    event_id: Callable[[Any], str] | None = None  # an id each event must be accepted once under (a retrying till)
    detail_lines: Callable[[str, Aggregate, int], list[str]] = _no_lines  # more points per window
    floor: float = float("-inf")  # no value goes below it (a window's counts and ratios: 0)
    forecasts_demand: bool = False  # its windows' units per SKU feed the demand forecasts (streams.demand)
    grouped_by_site: bool = False  # entities are ``site/device``: their place is the site

    @property
    def windowed(self) -> bool:
        """Whether events fold into windows (judged when final) rather than being judged on arrival."""
        return self.aggregate is not None

    @property
    def judged(self) -> tuple[str, ...]:
        """The names of the declared metrics, in their order."""
        return tuple(m.name for m in self.metrics)

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields written to ``measurement``: a window's, or the declared readings (a device may send more)."""
        if self.windowed:
            return tuple(self.zero_fields)
        return tuple(m.name for m in self.metrics if m.name != SILENCE)

    @cached_property
    def _by_name(self) -> dict[str, MetricSpec]:
        return {m.name: m for m in self.metrics}

    def metric(self, name: str) -> MetricSpec:
        """The declaration of ``name`` (a measurement not declared is judged both ways, with the usual runbook)."""
        spec = self._by_name.get(name)
        if spec is None:  # asked for on every value of the series: made once
            spec = self._by_name[name] = MetricSpec(name)
        return spec

    def group_of(self, entity: str) -> str:
        """The place an entity belongs to (alerts of one place form incidents): IoT site, store, web site."""
        return entity.split("/", 1)[0] if self.grouped_by_site else entity

    def entity_tag_values(self, entity: str) -> dict[str, str]:
        """The entity as the tags of ``measurement``."""
        return dict(zip(self.entity_tags, entity.split("/", 1) if len(self.entity_tags) > 1 else (entity,),
                        strict=True))

    def board_link(self, grafana_url: str, entity: str) -> str:
        """The Grafana board that shows ``entity``, with its variables set."""
        query = "&".join(f"var-{k}={v}" for k, v in self.entity_tag_values(entity).items())
        return f"{grafana_url}/d/{self.board}?{query}"


IOT = SourceSpec(
    name="iot", measurement="iot_reading", entity_tags=("site", "device"), board="opsmon-iot",
    grouped_by_site=True,
    metrics=(
        MetricSpec("temperature", runbook="Check the unit's door seal and compressor; move stock if it keeps warming."),
        MetricSpec("vibration", runbook="Inspect bearings and mounts; plan maintenance before the machine fails."),
        MetricSpec("power", runbook="Check the circuit and the unit's load; a rising draw often precedes a failure."),
        MetricSpec(SILENCE, runbook="Check the device's power and network; the gateway log shows its last contact."),
    ),
)

POS = SourceSpec(
    name="pos", measurement="pos_window", entity_tags=("store",), board="opsmon-sales",
    aggregate=PosAggregate, event_id=lambda ev: ev.txn_id, with_totals=_pos_totals, detail_lines=_sku_lines,
    floor=0.0, forecasts_demand=True,
    zero_fields={"revenue": 0.0, "transactions": 0.0, "items": 0.0, "avg_basket": 0.0, "refunds": 0.0,
                 "refund_amount": 0.0, "voids": 0.0},
    metrics=(
        MetricSpec("revenue", runbook="Call the store: tills, card terminal and queue; compare with last week's "
                                      "same hour."),
        MetricSpec("transactions", runbook="Check that every till is online and the card terminal accepts "
                                           "payments."),
        MetricSpec("avg_basket", per="transactions", pooled=("revenue", "transactions"), title="Average basket",
                   runbook="Check prices and promotions that went live recently."),
        MetricSpec("refund_rate", harmful=1, per="sales_and_refunds", pooled=("refunds", "sales_and_refunds"),
                   counted=True, unit="percentunit",
                   rollup='sum("refunds") / (sum("transactions") + sum("refunds"))',
                   runbook="Review recent refunds at the store for a faulty product or misuse."),
    ),
)

WEB = SourceSpec(
    name="web", measurement="web_window", entity_tags=("site",), board="opsmon-web",
    aggregate=WebAggregate, floor=0.0,
    zero_fields={"events": 0.0, "page_views": 0.0, "sessions": 0.0, "add_to_cart": 0.0, "checkouts": 0.0,
                 "purchases": 0.0, "conversion": 0.0, "errors": 0.0, "error_rate": 0.0, "latency_p50": 0.0,
                 "latency_p95": 0.0},
    metrics=(
        MetricSpec("events", scale=LOG, runbook="Traffic changed: check campaigns, DNS and the CDN."),
        MetricSpec("error_rate", harmful=1, per="events", pooled=("errors", "events"), counted=True,
                   unit="percentunit",
                   runbook="Open the web board: which paths fail; roll back the last deploy if it matches."),
        MetricSpec("latency_p95", harmful=1, per="events", title="Latency p95", unit="ms", rollup='max("latency_p95")',
                   runbook="Check the shop's backend and database load; scale or shed traffic."),
        MetricSpec("conversion", harmful=-1, per="sessions", pooled=("purchases", "sessions"), counted=True,
                   unit="percentunit",
                   runbook="Walk through checkout by hand; payment provider status; recent changes."),
    ),
)

SOURCES: dict[str, SourceSpec] = {spec.name: spec for spec in (IOT, POS, WEB)}
