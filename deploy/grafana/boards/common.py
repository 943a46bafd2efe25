"""What every opsmon board shares: dashboard defaults, panel shorthands, InfluxQL snippets, panel ids.

The boards of the sources read the sources' declarations (``streams.sources``): uid, measurement, entity
tags, and a graph per judged metric (``metric_panels``), so a metric added to a source's spec is drawn
on its board.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.influxql import InfluxQL, datasource_ref
from streams.sources import SOURCES, MetricSpec, SourceSpec

P = TypeVar("P", bound=cogbuilder.Builder[dm.Panel])

TAG = "opsmon"
FOLDER_UID = "opsmon"
FOLDER_TITLE = "opsmon"

# Stable UIDs: alert rules, links and people's bookmarks point at them.
UID_OVERVIEW = "opsmon-overview"
UID_IOT = SOURCES["iot"].board
UID_SALES = SOURCES["pos"].board
UID_WEB = SOURCES["web"].board
UID_PIPELINE = "opsmon-pipeline"

TIME_FILTER = "$timeFilter"


def where(*conditions: str) -> str:
    """A WHERE clause of the conditions and Grafana's time range macro, joined with AND."""
    return "WHERE " + " AND ".join((*conditions, TIME_FILTER))


def matches(tag: str, variable: str | None = None) -> str:
    """Tag condition for a (multi-value) template variable: Grafana renders it as a regex alternative."""
    return f'"{tag}" =~ /^${variable or tag}$/'


def every_interval(*tags: str) -> str:
    """GROUP BY Grafana's auto interval and the given tags."""
    return "GROUP BY " + ", ".join(("time($__interval)", *(f'"{t}"' for t in tags)))


def new_dashboard(uid: str, title: str, description: str, time_from: str = "now-6h",
                  time_to: str = "now") -> db.Dashboard:
    """A dashboard with opsmon's defaults: tag, refresh, shared crosshair, links to the other boards."""
    return (db.Dashboard(title).uid(uid).description(description).tags([TAG])
            .refresh("1m").time(time_from, time_to).timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(db.DashboardLink("opsmon boards").type(dm.DashboardLinkType.DASHBOARDS).tags([TAG])
                  .as_dropdown(True).keep_time(True).include_vars(False)))


def query_variable(name: str, label: str, query: str, multi: bool = True) -> db.QueryVariable:
    """A template variable filled by an InfluxQL SHOW query, refreshed when the board loads."""
    var = (db.QueryVariable(name).label(label).query(" ".join(query.split())).datasource(datasource_ref())
           .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        var = var.multi(True).include_all(True)
    return var


def graph(title: str, *targets: InfluxQL, unit: str = "short", w: int = 12, h: int = 8,
          description: str = "") -> timeseries.Panel:
    """A time series panel with a legend table and a shared tooltip."""
    panel = (timeseries.Panel().title(title).datasource(datasource_ref()).unit(unit).span(w).height(h)
             .line_width(1).fill_opacity(10).span_nulls(True)
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True).calcs(["mean", "max", "lastNotNull"]))
             .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def single_stat(title: str, *targets: InfluxQL, unit: str = "short", w: int = 4, h: int = 4,
                calc: str = "lastNotNull", description: str = "",
                steps: list[tuple[float | None, str]] | None = None) -> stat.Panel:
    """A stat panel reducing each series to one value, coloured by threshold steps."""
    panel = (stat.Panel().title(title).datasource(datasource_ref()).unit(unit).span(w).height(h)
             .graph_mode(cm.BigValueGraphMode.AREA).color_mode(cm.BigValueColorMode.VALUE)
             .reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False).fields(""))
             .thresholds(thresholds(steps or [(None, "green")])))
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def grid(title: str, *targets: InfluxQL, w: int = 12, h: int = 8, description: str = "") -> table.Panel:
    """A table panel of InfluxQL results in table format."""
    panel = table.Panel().title(title).datasource(datasource_ref()).span(w).height(h).filterable(True)
    if description:
        panel = panel.description(description)
    return _with_targets(panel, targets)


def metric_panel(spec: SourceSpec, metric: MetricSpec) -> timeseries.Panel:
    """A windowed source's metric per entity over time, added up as its declaration says, with its runbook."""
    tag = spec.entity_tags[0]
    query = InfluxQL(f'SELECT {metric.select} FROM "{spec.measurement}" {where(matches(tag))} '
                     f'{every_interval(tag)} fill(none)').alias(f"$tag_{tag}")
    return graph(metric_title(spec, metric), query, unit=metric.unit,
                 description=f"When it is anomalous: {metric.runbook}")


def metric_title(spec: SourceSpec, metric: MetricSpec) -> str:
    """The title of ``metric_panel``'s graph, e.g. 'Average basket per store'."""
    return f"{metric.label} per {spec.entity_tags[0]}"


def metric_panels(spec: SourceSpec, drawn: Collection[str] = ()) -> list[timeseries.Panel]:
    """A ``metric_panel`` for each judged metric of ``spec`` in declaration order, but those in ``drawn``.

    ``drawn``: metrics the board draws in a panel of its own (the web board's errors beside their rate).
    """
    return [metric_panel(spec, m) for m in spec.metrics if m.name not in drawn]


def thresholds(steps: list[tuple[float | None, str]]) -> db.ThresholdsConfig:
    """Absolute threshold steps; the first step's value is None (minus infinity)."""
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=color) for value, color in steps])


def prop(name: str, value: object) -> dm.DynamicConfigValue:
    """One field-config property of an override."""
    return dm.DynamicConfigValue(id_val=name, value=value)


def fixed_color(color: str) -> dict[str, str]:
    """A field colour that does not depend on the value."""
    return {"mode": "fixed", "fixedColor": color}


# A limit the business set (OPSMON_LIMITS), drawn beside the data it bounds.
LIMIT_LINE = [prop("color", fixed_color("red")), prop("custom.lineStyle", {"fill": "dash", "dash": [4, 4]}),
              prop("custom.lineWidth", 1)]


def transformation(kind: str, **options: object) -> dm.DataTransformerConfig:
    """A Grafana transformation step."""
    return dm.DataTransformerConfig(id_val=kind, options=options)


def finish(board: db.Dashboard) -> dm.Dashboard:
    """Build the dashboard: rows expanded, panels numbered 1, 2, ... in layout order (stable across runs).

    The SDK nests a row's panels inside it, which is Grafana's shape for a *collapsed* row; an
    expanded row's panels follow it at the top level, so they are moved there.
    """
    built = board.build()
    flat: list[dm.Panel | dm.RowPanel] = []
    for panel in built.panels or []:
        flat.append(panel)
        if isinstance(panel, dm.RowPanel):
            panel.collapsed = False
            flat += panel.panels
            panel.panels = []
    for number, panel in enumerate(flat, start=1):
        panel.id_val = number
    built.panels = flat
    _lay_out(flat)
    return built


def _lay_out(panels: list[dm.Panel | dm.RowPanel]) -> None:
    """Left to right, wrapping at Grafana's 24 columns; a row starts a new line of its own."""
    x = y = line_height = 0
    for panel in panels:
        pos = panel.grid_pos or dm.GridPos()
        if isinstance(panel, dm.RowPanel) or x + pos.w > 24:
            x, y, line_height = 0, y + line_height, 0
        if isinstance(panel, dm.RowPanel):
            panel.grid_pos = dm.GridPos(x=0, y=y, w=24, h=1)
            y += 1
            continue
        panel.grid_pos = dm.GridPos(x=x, y=y, w=pos.w, h=pos.h)
        x += pos.w
        line_height = max(line_height, pos.h)


def all_panels(board: dm.Dashboard) -> list[dm.Panel]:
    """Every panel with queries (rows have none)."""
    return [p for p in board.panels or [] if isinstance(p, dm.Panel)]


def panel_id(board: dm.Dashboard, title: str) -> int:
    """The id of the panel titled ``title`` (alert rules link to it)."""
    for panel in all_panels(board):
        if panel.title == title and panel.id_val is not None:
            return panel.id_val
    raise KeyError(f"{board.uid}: no panel titled {title!r}")


def _with_targets(panel: P, targets: tuple[InfluxQL, ...]) -> P:
    for index, target in enumerate(targets):
        if target.build().ref_id == "A" and index:
            target.ref_id(chr(ord("A") + index))
        panel.with_target(target)  # type: ignore[attr-defined]
    return panel
