"""Run the boards' InfluxQL against a live InfluxDB the way Grafana does, without a Grafana server.

Grafana's InfluxDB datasource (InfluxQL mode) fills ``$timeFilter``, ``$__interval`` and the template
variables before it sends a query to ``/query``; :func:`substitute` does the same, and :class:`BoardRun`
walks one dashboard's JSON: its variables (query ones by running their queries), then each panel's
targets with the panel's own time override, a repeated row or panel shown for its first values with data.
``opsmon boards render`` and the end-to-end board tests use it.

    db = InfluxQLClient("http://127.0.0.1:18086", "opsmon", ("opsmon-writer", "..."))
    run = BoardRun(db, board_json, TimeRange.last("6h"))
    for panel in run.panels():
        print(panel["title"], run.panel_results(panel))
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from deploy.grafana.provision import dashboard_json

MIN_INTERVAL_MS = 60_000  # the datasource's timeInterval: windows are a minute apart
MAX_REPEATS = 24  # repeat values tried for a repeated panel before it is drawn empty
_DURATION = re.compile(r"^-?(\d+)([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class QueryError(Exception):
    """InfluxDB refused or failed a query; the message names the query."""


def duration_ms(text: str) -> int:
    """``6h``, ``-30m``, ``now-6h`` as milliseconds (a clear ValueError otherwise)."""
    m = _DURATION.match(text.removeprefix("now"))
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 6h, 2d, or now-6h)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(frozen=True)
class TimeRange:
    """A board's time range in Unix milliseconds."""

    start_ms: int
    end_ms: int

    @classmethod
    def last(cls, span: str, end_ms: int | None = None) -> TimeRange:
        """The ``span`` (``6h``, ``-6h``, ``now-6h``) up to ``end_ms`` (default now)."""
        end = int(time.time() * 1000) if end_ms is None else end_ms
        return cls(end - duration_ms(span), end)

    def time_filter(self, time_from: str | None = None, ahead_ms: int = 0) -> str:
        """``$timeFilter`` for this range, or for a panel's relative ``timeFrom`` override ending at its end."""
        start = self.end_ms - duration_ms(time_from) if time_from else self.start_ms
        return f"time >= {start}ms and time <= {self.end_ms + ahead_ms}ms"

    def interval(self, max_points: int = 1000) -> str:
        """``$__interval``: the range over about ``max_points`` points (Grafana: the panel's width in pixels),
        in whole minutes, at least the datasource's minimum."""
        ms = max(MIN_INTERVAL_MS, (self.end_ms - self.start_ms) // max_points)
        ms = ms // MIN_INTERVAL_MS * MIN_INTERVAL_MS
        return f"{ms // 60_000}m"


@dataclass(frozen=True)
class Series:
    """One series of an InfluxQL result."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def column(self, name: str) -> list[Any]:
        """All values of one column."""
        index = self.columns.index(name)
        return [row[index] for row in self.values]

    def numbers(self) -> list[float]:
        """Every non-null number of the series, all columns but time."""
        return [float(v) for row in self.values for v in row[1:] if isinstance(v, int | float)
                and not isinstance(v, bool)]


class InfluxQLClient:
    """InfluxQL over HTTP (``/query``, epoch ms) on one database, with basic auth."""

    def __init__(self, base_url: str, database: str, auth: tuple[str, str] | None, timeout: float = 30.0) -> None:
        self.database = database
        self._http = httpx.Client(base_url=base_url.rstrip("/"), auth=auth, timeout=timeout, trust_env=False)

    def query(self, q: str) -> list[Series]:
        """The series of one statement; QueryError (with the query) on any failure."""
        try:
            resp = self._http.post("/query", data={"db": self.database, "q": q, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise QueryError(f"InfluxDB at {self._http.base_url} unreachable ({exc}) for\n{q}") from exc
        if resp.status_code != 200:
            raise QueryError(f"InfluxDB answered {resp.status_code} {resp.text.strip()[:300]} to\n{q}")
        result = resp.json()["results"][0]
        if "error" in result:
            raise QueryError(f"InfluxDB: {result['error']} in\n{q}")
        return [Series(s["name"], s.get("tags") or {}, s["columns"], s["values"]) for s in result.get("series", [])]

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()


def grafana_regex_escape(value: str) -> str:
    """How Grafana's InfluxDB datasource escapes a variable value inside a /regex/."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def substitute(query: str, variables: dict[str, list[str]], time_filter: str, interval: str = "1m") -> str:
    """Grafana's rendering: variables (regex alternatives inside /.../), then $timeFilter and $__interval."""

    def in_regex(match: re.Match[str]) -> str:
        body = match.group(1)
        for name, values in variables.items():
            escaped = [grafana_regex_escape(v) for v in values] or ["__no_value__"]
            body = re.sub(rf"\${name}\b", (escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")")
                          .replace("\\", "\\\\"), body)
        return f"=~ /{body}/"

    out = re.sub(r"=~ /((?:\\/|[^/])*)/", in_regex, query)
    for name, values in variables.items():
        if len(values) > 1 and re.search(rf"\${name}\b", out):
            raise ValueError(f"${name} is multi-valued outside a regex in {query}")
        out = re.sub(rf"\${name}\b", values[0] if values else "", out)
    out = out.replace("$timeFilter", time_filter).replace("$__interval", interval)
    left = re.search(r"\$\w+", out)
    if left:
        raise ValueError(f"unsubstituted {left.group(0)} in {out}")
    return out


def board_dicts(uid: str | None = None) -> list[dict[str, Any]]:
    """The generated boards as dashboard JSON (all, or the one whose uid or title matches ``uid``)."""
    from deploy.grafana.boards import all_boards

    boards = [json.loads(dashboard_json(b)) for b in all_boards()]
    if uid is None:
        return boards
    chosen = [b for b in boards if uid in (b["uid"], b["uid"].removeprefix("opsmon-"), b["title"])]
    if not chosen:
        names = ", ".join(b["uid"].removeprefix("opsmon-") for b in boards)
        raise ValueError(f"no board {uid!r}; boards: {names}")
    return chosen


@dataclass
class BoardRun:
    """One dashboard evaluated against a live database over a time range, as Grafana would draw it."""

    db: InfluxQLClient
    board: dict[str, Any]
    span: TimeRange
    ahead_ms: int = 3 * 3_600_000  # forecasts reach past now: the default range reaches 3 h ahead
    variables: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.variables = {}
        for var in (self.board.get("templating") or {}).get("list", []):
            self.variables[var["name"]] = self._variable_values(var)

    def _variable_values(self, var: dict[str, Any]) -> list[str]:
        if var.get("type") == "query":
            series = self.db.query(substitute(str(var["query"]), self.variables, self.time_filter()))
            # SHOW TAG VALUES gives (key, value) rows; SHOW FIELD KEYS (fieldKey, fieldType).
            values = sorted({str(row[0]) if "fieldKey" in s.columns else str(row[-1])
                             for s in series for row in s.values})
            # Multi-value variables default to All; single-value ones to their first option.
            return values if var.get("multi") else values[:1]
        current = (var.get("current") or {}).get("value")
        if current:
            return current if isinstance(current, list) else [str(current)]
        options = [o.strip() for o in str(var.get("query", "")).split(",") if o.strip()]
        return options[:1]

    def time_filter(self, time_from: str | None = None) -> str:
        """``$timeFilter`` of the board (reaching ``ahead_ms`` past its end) or of a panel's override."""
        return self.span.time_filter(time_from, 0 if time_from else self.ahead_ms)

    def panels(self) -> Iterator[dict[str, Any]]:
        """Every panel with queries, each with ``_vars``: the variables it sees, and ``_repeat``: the variables
        a repeated row or panel pins to one value each."""
        row_repeat = None
        for panel in self.board.get("panels", []):
            if panel.get("type") == "row":
                row_repeat = panel.get("repeat")
                continue
            repeats = [name for name in (row_repeat, panel.get("repeat")) if name]
            values = dict(self.variables)
            for name in repeats:
                values[name] = values.get(name, [])[:1]
            yield {**panel, "_vars": values, "_repeat": repeats}

    def render_query(self, panel: dict[str, Any], query: str) -> str:
        """One target's query with the panel's variables, time range and interval filled in."""
        return substitute(query, panel["_vars"], self.time_filter(panel.get("timeFrom")), self.span.interval())

    def panel_results(self, panel: dict[str, Any]) -> dict[str, list[Series]]:
        """``{refId: series}`` for every visible target of a panel from :meth:`panels`.

        A repeated panel is shown, as Grafana shows its first copies, for the first combination of its
        repeat values (at most ``MAX_REPEATS`` tried) where it has data; ``panel["_vars"]`` is updated to it.
        """
        targets = [t for t in panel.get("targets", []) if not t.get("hide")]
        combos = list(itertools.islice(itertools.product(*(self.variables.get(n) or [""] for n in panel["_repeat"])),
                                       MAX_REPEATS)) or [()]
        results: dict[str, list[Series]] = {}
        for combo in combos:
            panel["_vars"] = {**panel["_vars"], **{n: [v] for n, v in zip(panel["_repeat"], combo, strict=True)}}
            results = {t["refId"]: self.db.query(self.render_query(panel, t["query"])) for t in targets}
            if any(s.values for series in results.values() for s in series):
                break
        return results

    def annotations(self) -> dict[str, list[Series]]:
        """``{name: series}`` of the board's InfluxQL annotation queries."""
        out = {}
        for ann in (self.board.get("annotations") or {}).get("list", []):
            target = ann.get("target") or {}
            if target.get("query"):
                out[ann["name"]] = self.db.query(substitute(target["query"], self.variables, self.time_filter(),
                                                            self.span.interval()))
        return out
