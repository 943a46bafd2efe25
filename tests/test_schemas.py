"""Schema decoding and validation: good events decode, every bad one gets a clear reason."""

from __future__ import annotations

import pytest

from streams.schemas import InvalidEvent, IotReading, PosTransaction, WebEvent, decode
from tests.events import T0, iot, pos, raw, web

NOW = T0 + 3600


def test_good_events_decode_to_typed_events() -> None:
    ev = decode("iot", raw(iot(T0, temperature=4.5, humidity=50.0)), NOW)
    assert isinstance(ev, IotReading) and ev.entity == "s1/d1" and ev.ts == T0
    assert ev.measurements == {"temperature": 4.5, "humidity": 50.0}
    ev = decode("pos", raw(pos(T0, "t1", lines=(("A", 2, 1.25), ("B", 1, 3.0)))), NOW)
    assert isinstance(ev, PosTransaction) and ev.total == 5.5 and ev.entity == "st1"
    ev = decode("web", raw(web(T0, "sess")), NOW)
    assert isinstance(ev, WebEvent) and ev.entity == "shop"


def _mutate(event: dict, **changes: object) -> bytes:
    e = dict(event)
    for k, v in changes.items():
        if v is ...:
            e.pop(k)
        else:
            e[k] = v
    return raw(e)


@pytest.mark.parametrize(("source", "payload", "kind", "fragment"), [
    ("iot", b"\xff\xfe garbage", "json", "invalid"),
    ("iot", b"[1,2]", "schema", "Expected `object`"),
    ("iot", _mutate(iot(T0), site=...), "schema", "missing required field `site`"),
    ("iot", _mutate(iot(T0), measurements={"t": "hot"}), "schema", "Expected `float`"),
    ("iot", _mutate(iot(T0), measurements={}), "value", "measurements is empty"),
    ("iot", b'{"v":1,"site":"s","device":"d","time":"2026-01-01T00:00:00Z","measurements":{"t":NaN}}',
     "json", ""),
    ("iot", _mutate(iot(T0), measurements={"t": 1e300}), "value", "out of range"),
    ("iot", _mutate(iot(T0), v=2), "version", "schema version 2 is not supported"),
    ("iot", _mutate(iot(T0), v=7, site=...), "version", "schema version 7"),
    ("iot", _mutate(iot(T0), time="2026-01-01T00:00:00"), "time", "no time zone"),
    ("iot", _mutate(iot(T0), time="1970-01-02T00:00:00Z"), "time", "before 2000"),
    ("iot", _mutate(iot(T0), time="2030-01-01T00:00:00Z"), "time", "ahead"),
    ("iot", _mutate(iot(T0), device=""), "value", "device must be"),
    ("pos", _mutate(pos(T0, "t"), total=99.0), "value", "does not match"),
    ("pos", _mutate(pos(T0, "t"), kind="steal"), "schema", "Invalid enum value"),
    ("pos", _mutate(pos(T0, "t"), lines=[]), "value", "at least one line"),
    ("pos", _mutate(pos(T0, "t"), lines=[{"sku": "A", "qty": -1, "unit_price": 2.5}], total=-2.5),
     "value", "qty > 0"),
    ("web", _mutate(web(T0, "s"), status=999), "value", "not an HTTP status"),
    ("web", _mutate(web(T0, "s"), latency_ms=-5), "value", "negative"),
    ("web", b"{" + b'"pad":"' + b"x" * 70_000 + b'"}', "size", "exceeds"),
])
def test_bad_events_are_rejected_with_a_reason(source: str, payload: bytes, kind: str, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(source, payload, NOW)
    assert info.value.kind == kind
    assert fragment in str(info.value)
    assert str(info.value).startswith(kind + ": ")


def test_extra_fields_are_accepted_for_forward_compatibility() -> None:
    ev = decode("web", _mutate(web(T0, "s"), referrer="news"), NOW)
    assert ev.session == "s"
