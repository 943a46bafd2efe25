"""Typed InfluxQL queries for grafana-foundation-sdk, which ships no InfluxDB dataquery of its own.

``InfluxQL`` builds a panel or alert-rule target in the JSON shape of Grafana's InfluxDB datasource
(raw InfluxQL mode); ``InfluxAnnotation`` builds an annotation query. ``register()`` teaches the
SDK's runtime to decode both back into these types, so generated JSON round-trips.

    InfluxQL('SELECT mean("revenue") FROM "pos_window" WHERE $timeFilter GROUP BY time($__interval)')
        .ref_id("A").alias("$tag_store")
"""

from __future__ import annotations

import typing
from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "opsmon-influxdb"
DATASOURCE_NAME = "opsmon InfluxDB"

ResultFormat = Literal["time_series", "table", "logs"]


def datasource_ref() -> dashboard.DataSourceRef:
    """The reference every panel, variable and annotation uses to reach opsmon's InfluxDB."""
    return dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of Grafana's InfluxDB datasource."""

    def __init__(self, query: str = "", ref_id: str = "A", raw_query: bool = True,
                 result_format: ResultFormat = "time_series", alias: str | None = None,
                 hide: bool | None = None, datasource: dashboard.DataSourceRef | None = None) -> None:
        self.query = query
        self.ref_id = ref_id
        self.raw_query = raw_query
        self.result_format = result_format
        self.alias = alias
        self.hide = hide
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        """Grafana's JSON for this target."""
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query, "rawQuery": self.raw_query,
                                      "resultFormat": self.result_format}
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Decode Grafana's JSON of a raw InfluxQL target."""
        ds = data.get("datasource")
        return cls(query=data.get("query", ""), ref_id=data.get("refId", "A"), raw_query=data.get("rawQuery", True),
                   result_format=data.get("resultFormat", "time_series"), alias=data.get("alias"),
                   hide=data.get("hide"), datasource=dashboard.DataSourceRef.from_json(ds) if ds else None)


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of an ``InfluxQLQuery`` with the datasource reference already set."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=" ".join(query.split()), datasource=datasource_ref())

    def build(self) -> InfluxQLQuery:
        """The built target."""
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        """Reference letter of the target within its panel or rule."""
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> Self:
        """Series name pattern (``$tag_<key>``, ``$col``, ``$m``)."""
        self._internal.alias = alias
        return self

    def format(self, result_format: ResultFormat) -> Self:
        """``time_series`` (default) or ``table``."""
        self._internal.result_format = result_format
        return self

    def hide(self, hide: bool) -> Self:
        """Run the target but do not draw it (input of a transformation)."""
        self._internal.hide = hide
        return self


class InfluxAnnotationTarget(dashboard.AnnotationTarget):
    """An annotation target in the shape Grafana's InfluxDB datasource migrates annotations to."""

    def __init__(self, query: str = "", text_column: str = "", tags_column: str = "", title_column: str = "",
                 ref_id: str = "Anno") -> None:
        super().__init__()
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        """Grafana's JSON for this target."""
        return {"refId": self.ref_id, "query": self.query, "rawQuery": True, "fromAnnotations": True,
                "queryType": "tags", "textColumn": self.text_column, "tagsColumn": self.tags_column,
                "titleColumn": self.title_column, "limit": self.limit, "matchAny": self.match_any,
                "tags": self.tags, "type": self.type_val}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Decode the JSON written by ``to_json``."""
        return cls(query=data.get("query", ""), text_column=data.get("textColumn", ""),
                   tags_column=data.get("tagsColumn", ""), title_column=data.get("titleColumn", ""),
                   ref_id=data.get("refId", "Anno"))


class InfluxAnnotation(cogbuilder.Builder[dashboard.AnnotationQuery]):
    """Builder of a dashboard annotation whose events come from an InfluxQL query."""

    def __init__(self, name: str, query: str) -> None:
        self._internal = dashboard.AnnotationQuery(
            name=name, datasource=datasource_ref(), enable=True, hide=False, icon_color="red",
            target=InfluxAnnotationTarget(query=" ".join(query.split())))

    def build(self) -> dashboard.AnnotationQuery:
        """The built annotation query."""
        return self._internal

    def icon_color(self, color: str) -> Self:
        """Colour of the markers."""
        self._internal.icon_color = color
        return self

    def columns(self, text: str = "", tags: str = "", title: str = "") -> Self:
        """Which result columns become the annotation's text, tags and title."""
        target = typing.cast(InfluxAnnotationTarget, self._internal.target)
        target.text_column, target.tags_column, target.title_column = text, tags, title
        return self


def annotation_from_json(data: dict[str, Any]) -> dashboard.AnnotationQuery:
    """Decode an annotation, keeping an InfluxQL target typed (the SDK's own decoder drops its query)."""
    anno = dashboard.AnnotationQuery.from_json({k: v for k, v in data.items() if k != "target"})
    if "target" in data:
        anno.target = InfluxAnnotationTarget.from_json(data["target"])
    return anno


_registered = False


def register() -> None:
    """Register the SDK's panel and query types plus ours with its runtime (idempotent)."""
    global _registered
    if _registered:
        return
    cogplugins.register_default_plugins()
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json))
    _registered = True


def dashboard_from_json(data: dict[str, Any]) -> dashboard.Dashboard:
    """Decode a dashboard with the SDK, keeping InfluxQL annotation targets typed."""
    register()
    board = dashboard.Dashboard.from_json(data)
    annotations = (data.get("annotations") or {}).get("list")
    if annotations and board.annotations is not None:
        board.annotations.list_val = [annotation_from_json(a) for a in annotations]
    return board
