"""Reading points back from the time-series servers in tests (VictoriaMetrics export API)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import orjson

T = TypeVar("T")


def victoria_points(base_url: str, selector: str) -> dict[tuple, float]:
    """``{(metric, (label, value)..., ts_ms): value}`` for every sample matching a series selector."""
    httpx.get(f"{base_url}/internal/force_flush", timeout=10)
    resp = httpx.get(f"{base_url}/api/v1/export", params={"match[]": selector, "start": "0"}, timeout=30)
    resp.raise_for_status()
    points: dict[tuple, float] = {}
    for raw in resp.content.splitlines():
        series = orjson.loads(raw)
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        key = (name, *sorted(labels.items()))
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            points[(*key, ts)] = value
    return points


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60.0, every: float = 0.5) -> T:
    """Poll ``probe`` until ``ok(result)``; returns the last result (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    result = probe()
    while not ok(result) and time.monotonic() < deadline:
        time.sleep(every)
        result = probe()
    return result
