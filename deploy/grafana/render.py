"""Boards as PNG images without Grafana: each panel's own InfluxQL run live, drawn with matplotlib.

Panels sit where the dashboard JSON's ``gridPos`` puts them (24 columns; a grid row is drawn 0.45 in
high), rows are section titles, and the panel types are drawn the way Grafana shows them closely enough
for a person to read the board: ``timeseries`` as lines, ``stat`` as the reduced number, ``table``
and ``bargauge`` as a table or bars. What each panel drew is returned, so tests can check every panel
shows data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.grafana.live import BoardRun, QueryError, Series, duration_ms

COLUMNS = 24
INCH_PER_COLUMN = 0.75
INCH_PER_ROW = 0.45
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642",
           "#cca300")


@dataclass(frozen=True)
class PanelDrawn:
    """What one panel of a rendered board showed."""

    board: str
    title: str
    kind: str
    points: int  # non-null numbers drawn (rows for a table)
    error: str | None = None


def _alias(alias: str | None, series: Series, column: str) -> str:
    """A series' legend as Grafana's ``alias``: ``$tag_x``, ``$col``, ``$m`` substituted."""
    tags = ", ".join(f"{v}" for v in series.tags.values() if v)
    if not alias:
        label = series.name if column in ("value", "mean", "sum", "last", "max", "count") else column
        return f"{label} {{{tags}}}" if tags else label
    out = re.sub(r"\$tag_(\w+)", lambda m: series.tags.get(m.group(1), ""), alias)
    return out.replace("$col", column).replace("$measurement", series.name).replace("$m", series.name).strip()


def _reduce(values: list[float], calc: str) -> float | None:
    if not values:
        return None
    return {"lastNotNull": values[-1], "last": values[-1], "sum": sum(values), "max": max(values),
            "min": min(values), "mean": sum(values) / len(values), "count": float(len(values))}.get(calc, values[-1])


def _fmt(value: float, unit: str | None, decimals: int | None) -> str:
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "percent":
        return f"{value:.{1 if decimals is None else decimals}f}%"
    if decimals is None:
        decimals = 0 if float(value).is_integer() else 2
    text = f"{value:,.{decimals}f}"
    suffix = {"ms": " ms", "s": " s", "currencyEUR": " €", "currencyUSD": " $", "celsius": " °C"}.get(unit or "", "")
    return text + suffix


def _numbers(series: list[Series]) -> int:
    return sum(len(s.numbers()) for s in series)


def _draw_timeseries(ax: Any, panel: dict[str, Any], results: dict[str, list[Series]],
                     xlim: tuple[datetime, datetime]) -> int:
    from matplotlib import dates as mdates

    aliases = {t["refId"]: t.get("alias") for t in panel.get("targets", [])}
    drawn, colour = 0, 0
    for ref, series_list in results.items():
        for s in series_list:
            times = [datetime.fromtimestamp(row[0] / 1000, UTC) for row in s.values]
            for column in s.columns[1:]:
                ys = [v if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
                      for v in s.column(column)]
                if all(math.isnan(y) for y in ys):
                    continue
                drawn += sum(not math.isnan(y) for y in ys)
                ax.plot(times, ys, lw=1.2, color=PALETTE[colour % len(PALETTE)], marker="." if len(ys) < 30 else None,
                        label=_alias(aliases.get(ref), s, column)[:40])
                colour += 1
    ax.set_xlim(*xlim)  # the panel's time range, as Grafana draws it, whatever the data covers
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax.tick_params(labelsize=6)
    ax.grid(alpha=0.25)
    if colour:
        ax.legend(fontsize=5, loc="upper left", ncol=max(1, min(4, colour // 4 + 1)), framealpha=0.6)
    return drawn


def _draw_stat(ax: Any, panel: dict[str, Any], results: dict[str, list[Series]],
               xlim: tuple[datetime, datetime]) -> int:  # noqa: ARG001
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    calcs = ((panel.get("options") or {}).get("reduceOptions") or {}).get("calcs") or ["lastNotNull"]
    values = []
    for series_list in results.values():
        for s in series_list:
            for column in s.columns[1:]:
                nums = [float(v) for v in s.column(column) if isinstance(v, int | float) and not isinstance(v, bool)]
                reduced = _reduce(nums, calcs[0])
                if reduced is not None:
                    values.append(reduced)
    for t in panel.get("transformations") or []:
        options = t.get("options") or {}
        if t.get("id") == "calculateField" and options.get("mode") == "reduceRow" and values:
            # e.g. "Devices reporting": count(*) gives a column per field; the panel shows their max.
            reduced = _reduce(values, (options.get("reduce") or {}).get("reducer", "max"))
            values = [] if reduced is None else [reduced]
    ax.axis("off")
    text = "  ".join(_fmt(v, defaults.get("unit"), defaults.get("decimals")) for v in values[:4]) or "No data"
    ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=16 if len(text) < 14 else 10, weight="bold",
            color="#1f78c1" if values else "#999999", transform=ax.transAxes)
    return len(values)


def _draw_table(ax: Any, panel: dict[str, Any], results: dict[str, list[Series]],
                xlim: tuple[datetime, datetime]) -> int:  # noqa: ARG001
    rows: list[list[str]] = []
    header: list[str] = []
    for series_list in results.values():
        for s in series_list:
            tag_keys = list(s.tags)
            header = header or [*tag_keys, *s.columns[1:]]
            for row in s.values:
                cells = [*(s.tags[k] for k in tag_keys), *row[1:]]
                rows.append([_cell(c) for c in cells])
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="#999999", transform=ax.transAxes)
        return 0
    shown = rows[-12:]
    table = ax.table(cellText=shown, colLabels=header, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    table.scale(1, 0.9)
    return len(rows)


def _draw_bars(ax: Any, panel: dict[str, Any], results: dict[str, list[Series]],
               xlim: tuple[datetime, datetime]) -> int:  # noqa: ARG001
    labels: list[str] = []
    values: list[float] = []
    for series_list in results.values():
        for s in series_list:
            for column in s.columns[1:]:
                nums = [float(v) for v in s.column(column) if isinstance(v, int | float) and not isinstance(v, bool)]
                if nums:
                    labels.append(_alias(None, s, column)[:24])
                    values.append(nums[-1])
    if values:
        ax.barh(labels[::-1], values[::-1], color=PALETTE[5])
        ax.tick_params(labelsize=6)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="#999999", transform=ax.transAxes)
    return len(values)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**11:  # epoch ms
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%H:%M")
    return str(value)


DRAW = {"timeseries": _draw_timeseries, "stat": _draw_stat, "table": _draw_table, "bargauge": _draw_bars}


def render_board(run: BoardRun, out: Path, dpi: int = 110) -> list[PanelDrawn]:
    """Draw one board into the PNG ``out``; what each panel showed (an error is drawn, not raised)."""
    # A bare Figure, not pyplot: no global figure registry, so the demo may render from a thread.
    from matplotlib.figure import Figure

    panels = list(run.panels())
    rows = [p for p in run.board.get("panels", []) if p.get("type") == "row"]
    bottom = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in [*panels, *rows]), default=1)
    width, height = COLUMNS * INCH_PER_COLUMN, bottom * INCH_PER_ROW + 0.7
    fig = Figure(figsize=(width, height), dpi=dpi)
    span = f"{_clock(run.span.start_ms)} to {_clock(run.span.end_ms)} UTC"
    fig.text(0.01, 1 - 0.35 / height, f"{run.board['title']}    {span}", fontsize=12, weight="bold", va="center")
    drawn: list[PanelDrawn] = []

    def box(pos: dict[str, int]) -> list[float]:
        left, right = 0.5, 0.12  # inches: room for the y tick labels, a gap to the next panel
        x0 = pos["x"] / COLUMNS + left / width
        top = (pos["y"] * INCH_PER_ROW + 0.7) / height
        h = pos["h"] * INCH_PER_ROW / height
        return [x0, 1 - top - h + 0.28 / height, pos["w"] / COLUMNS - (left + right) / width, h - 0.5 / height]

    for row in rows:
        pos = row["gridPos"]
        pinned = {"_vars": {k: v[:1] for k, v in run.variables.items()}}  # a repeated row: its first copy
        fig.text(0.01, 1 - (pos["y"] * INCH_PER_ROW + 0.7 + 0.2) / height, _title(row["title"], pinned, run),
                 fontsize=10, weight="bold", color="#555555")
    for panel in panels:
        kind = panel.get("type", "")
        ax = fig.add_axes(box(panel["gridPos"]))
        try:
            results = run.panel_results(panel)
            points = DRAW.get(kind, _draw_table)(ax, panel, results, _xlim(run, panel))
            error = None
        except (QueryError, ValueError) as exc:
            ax.axis("off")
            ax.text(0.5, 0.5, "query failed", ha="center", va="center", color="#e24d42", transform=ax.transAxes)
            points, error = 0, str(exc)
        # After the queries: a repeated panel's title names the values it was drawn for.
        ax.set_title(_title(panel.get("title", ""), panel, run), fontsize=8, loc="left")
        drawn.append(PanelDrawn(run.board["uid"], panel.get("title", ""), kind, points, error))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="white")
    return drawn


def _xlim(run: BoardRun, panel: dict[str, Any]) -> tuple[datetime, datetime]:
    """The time axis of a panel: its ``timeFrom`` override or the board's range (and how far it reaches ahead)."""
    end = run.span.end_ms
    start = end - duration_ms(panel["timeFrom"]) if panel.get("timeFrom") else run.span.start_ms
    ahead = 0 if panel.get("timeFrom") else (run.ahead_ms or 0)
    return datetime.fromtimestamp(start / 1000, UTC), datetime.fromtimestamp((end + ahead) / 1000, UTC)


def _title(title: str, panel: dict[str, Any], run: BoardRun) -> str:
    """A panel title with its variables shown by value, as Grafana does for repeated panels."""
    variables = panel.get("_vars") or run.variables
    return re.sub(r"\$(\w+)", lambda m: ", ".join(variables.get(m.group(1), [m.group(0)])[:3]), title)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
