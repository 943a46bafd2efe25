"""The picture in an alert: a PNG of its series around the anomaly, drawn from the time-series server.

The series' ``anomaly_score`` points (observed, expected, the band ``lower``..``upper``, ``is_anomaly``; see
docs/data-model.md) are read with one InfluxQL query through ``/query`` (InfluxDB 1.x, and 2.x/3.x's v1
compatibility API with the same token the writer uses), then drawn with matplotlib's Agg backend in a thread.
A chart is rendered once per alert and kept on disk under the worker's data directory, so a restart, a
chat tool's preview and the feedback page all get the same picture without querying again.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

BEFORE_S = 3 * 3600.0  # of history before the alert opened
AFTER_S = 3600.0  # and after it opened (or after it resolved)
MAX_POINTS = 2000


class ChartUnavailable(Exception):
    """The series could not be read (server down, no InfluxQL, no points); its message says which."""


@dataclass
class Series:
    """The points of one series around an alert, oldest first (times in seconds)."""

    times: list[float] = field(default_factory=list)
    observed: list[float] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)


def _quote(value: str) -> str:
    r"""An InfluxQL string literal.

    >>> _quote("it's")
    "'it\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def series_query(source: str, entity: str, metric: str, start: float, end: float) -> str:
    """The InfluxQL query of one series' scores, bands and flags between ``start`` and ``end`` (seconds).

    >>> series_query("iot", "s1/d1", "temperature", 0, 60)  # doctest: +NORMALIZE_WHITESPACE
    'SELECT "observed", "expected", "lower", "upper", "is_anomaly" FROM "anomaly_score"
     WHERE "source" = \\'iot\\' AND "entity" = \\'s1/d1\\' AND "metric" = \\'temperature\\'
     AND time >= 0ms AND time <= 60000ms ORDER BY time ASC LIMIT 2000'
    """
    return ('SELECT "observed", "expected", "lower", "upper", "is_anomaly" FROM "anomaly_score" '
            f'WHERE "source" = {_quote(source)} AND "entity" = {_quote(entity)} AND "metric" = {_quote(metric)} '
            f"AND time >= {int(start * 1000)}ms AND time <= {int(end * 1000)}ms ORDER BY time ASC LIMIT {MAX_POINTS}")


def parse_series(body: dict) -> Series:
    """The points of a ``/query`` answer (``epoch=ms``); ChartUnavailable if it holds an error or nothing."""
    results = body.get("results") or [{}]
    if "error" in results[0] or "error" in body:
        raise ChartUnavailable(f"the time-series server refused the query: {results[0].get('error') or body['error']}")
    found = results[0].get("series") or []
    if not found:
        raise ChartUnavailable("no scored points of this series around the alert")
    cols = found[0]["columns"]
    s = Series()
    for row in found[0]["values"]:
        v = dict(zip(cols, row, strict=True))
        if v.get("observed") is None:
            continue
        s.times.append(v["time"] / 1000)
        s.observed.append(float(v["observed"]))
        nan = float("nan")
        s.expected.append(float(v["expected"]) if v.get("expected") is not None else nan)
        s.lower.append(float(v["lower"]) if v.get("lower") is not None else nan)
        s.upper.append(float(v["upper"]) if v.get("upper") is not None else nan)
        s.flagged.append(bool(v.get("is_anomaly")))
    if not s.times:
        raise ChartUnavailable("no scored points of this series around the alert")
    return s


def render_png(series: Series, title: str, opened: float, unit_label: str = "") -> bytes:
    """A phone-friendly PNG (750x390 px, shown 375 px wide): observed line, expected band and line, flagged points."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure  # Figure, not pyplot: no global state, safe in a worker thread

    when = [datetime.fromtimestamp(t, tz=UTC) for t in series.times]
    # 5 inches at 150 dpi: text stays legible when a phone shows the 750 px at 375 css px
    fig = Figure(figsize=(5.0, 2.6), dpi=150)
    ax = fig.add_subplot()
    ax.fill_between(when, series.lower, series.upper, color="#9ecae1", alpha=0.45, linewidth=0,
                    label="expected band")
    ax.plot(when, series.expected, color="#3182bd", linewidth=1.2, linestyle="--", label="expected")
    ax.plot(when, series.observed, color="#222222", linewidth=1.6, label="observed")
    flagged = [(w, o) for w, o, f in zip(when, series.observed, series.flagged, strict=True) if f]
    if flagged:
        ax.scatter([w for w, _ in flagged], [o for _, o in flagged], color="#d62728", s=36, zorder=3,
                   label="flagged")
    ax.axvline(datetime.fromtimestamp(opened, tz=UTC), color="#d62728", linewidth=1, alpha=0.6)
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_ylabel(unit_label)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
    ax.set_xlabel("UTC", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", fontsize=6.5, frameon=False, ncol=4, handlelength=1.5, columnspacing=1.0)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class AlertCharts:
    """Renders each alert's chart once (on first request) and serves it from disk afterwards."""

    def __init__(self, query_url: str, token: str, database: str, cache_dir: Path, timeout_s: float = 10.0) -> None:
        self.query_url = query_url.rstrip("/") + "/query"
        # a v2 bucket on InfluxDB 1.x is "database/retention policy" (the policy optional)
        self.database, _, self.retention_policy = database.partition("/")
        self.cache_dir = cache_dir
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        self._timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        self.rendered = 0

    def path(self, alert_id: str) -> Path:
        """Where the chart of ``alert_id`` is kept (a hash: alert ids hold '/' and ':')."""
        return self.cache_dir / f"{hashlib.sha256(alert_id.encode()).hexdigest()[:32]}.png"

    async def png(self, alert: dict) -> bytes:
        """The chart of an alert (an alert index record: id, source, entity, metric, starts_at, ends_at)."""
        path = self.path(alert["id"])
        if path.exists():
            return path.read_bytes()
        lock = self._locks.setdefault(alert["id"], asyncio.Lock())
        async with lock:  # two requests at once render it once
            if path.exists():
                return path.read_bytes()
            opened = float(alert["starts_at"])
            end = float(alert.get("ends_at") or opened) + AFTER_S
            series = parse_series(await self._query(
                series_query(alert["source"], alert["entity"], alert["metric"], opened - BEFORE_S, end)))
            title = f"{alert['metric']} of {alert['entity']}"
            png = await asyncio.to_thread(render_png, series, title, opened)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(png)
            tmp.replace(path)  # whole or absent, whatever happens meanwhile
            self.rendered += 1
            self._locks.pop(alert["id"], None)  # later requests find the file
        return png

    async def _query(self, q: str) -> dict:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s, trust_env=False) as client:
                params = {"db": self.database, "q": q, "epoch": "ms"}
                if self.retention_policy:
                    params["rp"] = self.retention_policy
                resp = await client.get(self.query_url, params=params, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ChartUnavailable(f"the time-series server did not answer: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 300:
            raise ChartUnavailable(f"the time-series server answered {resp.status_code} to {self.query_url}: "
                                   f"{resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise ChartUnavailable(f"the time-series server's answer is not JSON: {resp.text[:200]}") from exc

