"""Reading points back from the stack's InfluxDB in tests, by metric selector.

A selector names series the way PromQL does, ``name{label="v",other=~"re.*"}`` or ``{__name__=~"a_.*|b_c"}``,
where a metric is ``<measurement>_<field>`` and labels are tags; it is turned into InfluxQL (one
``SELECT ... GROUP BY *`` per measurement) and run with the writer's credential (``OPSMON_INFLUX_TOKEN``,
``user:password``). Regexes are anchored, as in PromQL; a tag a series lacks reads as ``""``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from opsmon.settings import Settings

T = TypeVar("T")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*(?:,|$)')


def influxql(settings: Settings, q: str, db: str | None = None) -> list[dict[str, Any]]:
    """The series of one InfluxQL statement (epoch ms) on the settings' database; an error fails loudly."""
    user, _, password = settings.influx_token.get_secret_value().partition(":")
    resp = httpx.post(f"{settings.influx_url.rstrip('/')}/query", auth=(user, password), timeout=60,
                      data={"db": db or settings.influx_bucket.split("/", 1)[0], "q": q, "epoch": "ms"})
    resp.raise_for_status()
    result = resp.json()["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxDB: {result['error']}\n{q}")
    return result.get("series") or []


def parse_selector(selector: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """``(name matchers, tag matchers)`` of a selector, each ``(label, op, value)``."""
    m = re.fullmatch(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)?\s*(?:\{(.*)\})?\s*", selector, re.S)
    if m is None or not (m.group(1) or m.group(2)):
        raise ValueError(f"not a series selector: {selector!r}")
    matchers: list[tuple[str, str, str]] = [("__name__", "=", m.group(1))] if m.group(1) else []
    body = (m.group(2) or "").strip()
    pos = 0
    while pos < len(body):
        mm = _MATCHER.match(body, pos)
        if mm is None:
            raise ValueError(f"cannot read the matchers of {selector!r} at {body[pos:]!r}")
        matchers.append((mm.group(1), mm.group(2), mm.group(3).replace('\\"', '"').replace("\\\\", "\\")))
        pos = mm.end()
    names = [x for x in matchers if x[0] == "__name__"]
    if not names:
        raise ValueError(f"selector {selector!r} names no metric")
    return names, [x for x in matchers if x[0] != "__name__"]


def _matches(op: str, pattern: str, value: str) -> bool:
    hit = value == pattern if op in ("=", "!=") else re.fullmatch(pattern, value) is not None
    return hit if op in ("=", "=~") else not hit


def _condition(label: str, op: str, value: str) -> str:
    ident = '"' + label.replace('"', '\\"') + '"'
    if op in ("=", "!="):
        return f"{ident} {op} '" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{ident} {op} /^(?:" + value.replace("/", "\\/") + ")$/"


def influx_points(settings: Settings, selector: str) -> dict[tuple, float]:
    """``{(metric, (tag, value)..., ts_ms): value}`` for every point matching a series selector."""
    names, tags = parse_selector(selector)
    fields: dict[str, list[str]] = {}  # measurement -> its fields the name matchers select
    for series in influxql(settings, "SHOW FIELD KEYS"):
        for field_key, field_type in series["values"]:
            metric = f"{series['name']}_{field_key}"
            if field_type != "string" and all(_matches(op, v, metric) for _, op, v in names):
                fields.setdefault(series["name"], []).append(field_key)
    where = " AND ".join(_condition(*t) for t in tags)
    points: dict[tuple, float] = {}
    for measurement, keys in fields.items():
        q = (f'SELECT {", ".join(chr(34) + k + chr(34) for k in keys)} FROM "{measurement}"'
             + (f" WHERE {where}" if where else "") + " GROUP BY *")
        for series in influxql(settings, q):
            labels = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items() if v != ""))
            columns = series["columns"]
            for row in series["values"]:
                for key, value in zip(columns[1:], row[1:], strict=True):
                    if value is not None:
                        points[(f"{measurement}_{key}", *labels, row[0])] = float(value)
    return points


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60.0, every: float = 0.5) -> T:
    """Poll ``probe`` until ``ok(result)``; returns the last result (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    result = probe()
    while not ok(result) and time.monotonic() < deadline:
        time.sleep(every)
        result = probe()
    return result
