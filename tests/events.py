"""Builders of wire events for tests (plain dicts, so tests can also break them)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a window boundary for every window size used


def iso(t: float) -> str:
    """RFC 3339 with a zone."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


def iot(t: float, site: str = "s1", device: str = "d1", **measurements: float) -> dict:
    """An IoT reading."""
    return {"v": 1, "site": site, "device": device, "time": iso(t),
            "measurements": measurements or {"temperature": 20.0}}


def pos(t: float, txn: str, store: str = "st1", kind: str = "sale",
        lines: tuple[tuple[str, float, float], ...] = (("A", 1, 2.5),), payment: str = "card") -> dict:
    """A POS transaction whose total matches its lines."""
    return {"v": 1, "store": store, "register": "r1", "txn_id": txn, "time": iso(t), "kind": kind,
            "payment": payment, "lines": [{"sku": s, "qty": q, "unit_price": p} for s, q, p in lines],
            "total": round(sum(q * p for _, q, p in lines), 2)}


def web(t: float, session: str, type: str = "page_view", site: str = "shop", status: int = 200,
        latency_ms: float = 100.0, path: str = "/") -> dict:
    """A web event."""
    return {"v": 1, "site": site, "session": session, "time": iso(t), "type": type, "path": path,
            "status": status, "latency_ms": latency_ms}


def raw(event: dict) -> bytes:
    """Wire bytes."""
    return orjson.dumps(event)
