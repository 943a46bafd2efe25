"""Event schemas for the three sources, versioned and validated in one place.

JSON on the wire. Every event carries ``v`` (schema version) and ``time`` (RFC 3339 with a zone).
``decode(source, raw)`` either returns a typed event or raises :class:`InvalidEvent` whose message is
the one-line reason that goes with the original bytes to the dead-letter topic.

>>> ev = decode("iot", b'{"v":1,"site":"s1","device":"d1","time":"2026-01-01T00:00:00Z",'
...                    b'"measurements":{"temperature":21.5}}')
>>> ev.device, ev.measurements["temperature"], ev.ts
('d1', 21.5, 1767225600.0)
>>> decode("iot", b'{"v":1}')
Traceback (most recent call last):
...
streams.schemas.InvalidEvent: schema: Object missing required field `time`
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import msgspec

from sinks.events import AlertEvent

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
MAX_EVENT_BYTES = 64 * 1024
# Accept backfills of old data, but nothing before this (almost surely a unit mistake).
MIN_EVENT_TS = datetime(2000, 1, 1).timestamp()
# Clocks drift; anything further ahead than this would wrongly close every open window.
MAX_FUTURE_SECONDS = 300.0
MAX_ABS_VALUE = 1e15
MAX_NAME = 128


class InvalidEvent(ValueError):
    """An event that cannot be accepted; ``str(exc)`` is the reason for the dead-letter topic."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class _Event(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    v: int
    time: datetime

    @property
    def ts(self) -> float:
        """Event time as Unix seconds."""
        return self.time.timestamp()


class IotReading(_Event, kw_only=True):
    """One reading of one or more named numeric measurements from a device."""

    site: str
    device: str
    measurements: dict[str, float]
    units: dict[str, str] | None = None
    firmware: str | None = None

    @property
    def entity(self) -> str:
        """``site/device``."""
        return f"{self.site}/{self.device}"


class PosLine(msgspec.Struct):
    """One line of a till receipt."""

    sku: str
    qty: float
    unit_price: float


class PosTransaction(_Event, kw_only=True):
    """A sale, refund or void at a till."""

    store: str
    register: str
    txn_id: str
    kind: Literal["sale", "refund", "void"]
    payment: Literal["card", "cash", "mobile", "voucher", "other"]
    lines: list[PosLine]
    total: float
    discount: float = 0.0

    @property
    def entity(self) -> str:
        """The store."""
        return self.store


class WebEvent(_Event, kw_only=True):
    """One event from the web shop."""

    site: str
    session: str
    type: Literal["page_view", "add_to_cart", "checkout", "purchase", "error"]
    path: str
    status: int
    latency_ms: float

    @property
    def entity(self) -> str:
        """The site."""
        return self.site


class StockEvent(_Event, kw_only=True):
    """A stock count or a delivery of one SKU at a store (optional: enables stock-out risk)."""

    store: str
    sku: str
    kind: Literal["count", "delivery"]
    qty: float

    @property
    def entity(self) -> str:
        """The store (stock state lives with the store's partition)."""
        return self.store


Event = IotReading | PosTransaction | WebEvent
SOURCES: tuple[str, ...] = ("iot", "pos", "web")


def _finite(name: str, x: float, key: str = "") -> None:
    """``x`` is a finite number within range; ``name`` (``.key``, when given) names it in the error."""
    if -MAX_ABS_VALUE <= x <= MAX_ABS_VALUE:  # nearly every value (false for NaN and infinities)
        return
    if key:  # (the name is made only for the error: the check runs for every value of every event)
        name = f"{name}.{key}"
    if not math.isfinite(x):
        raise InvalidEvent("value", f"{name} is not a finite number")
    raise InvalidEvent("value", f"{name}={x!r} is out of range (|x| > {MAX_ABS_VALUE:g})")


def _name(field: str, s: str) -> None:
    if not s or len(s) > MAX_NAME or not s.isprintable():
        raise InvalidEvent("value", f"{field} must be 1-{MAX_NAME} printable characters")


_known_names: set[str] = set()  # recurring names that passed _name
_MAX_KNOWN_NAMES = 100_000


def _recurring_name(field: str, s: str) -> None:
    """``_name`` for a name that recurs in event after event (a site, device, metric, store, register, SKU): each
    is checked once. Ids new with every event (transactions, sessions) go to ``_name``: they would crowd these out."""
    if s in _known_names:
        return
    _name(field, s)
    if len(_known_names) >= _MAX_KNOWN_NAMES:
        _known_names.clear()
    _known_names.add(s)


def _check_iot(ev: IotReading) -> None:
    _recurring_name("site", ev.site)
    _recurring_name("device", ev.device)
    if not ev.measurements:
        raise InvalidEvent("value", "measurements is empty")
    for k, x in ev.measurements.items():
        _recurring_name("measurement name", k)
        _finite("measurements", x, k)


def _check_pos(ev: PosTransaction) -> None:
    _recurring_name("store", ev.store)
    _recurring_name("register", ev.register)
    _name("txn_id", ev.txn_id)
    _finite("total", ev.total)
    _finite("discount", ev.discount)
    if ev.kind != "void" and not ev.lines:
        raise InvalidEvent("value", f"a {ev.kind} needs at least one line")
    expected = -ev.discount
    for i, line in enumerate(ev.lines):
        _recurring_name(f"lines[{i}].sku", line.sku)
        _finite(f"lines[{i}].qty", line.qty)
        _finite(f"lines[{i}].unit_price", line.unit_price)
        if line.qty <= 0 or line.unit_price < 0:
            raise InvalidEvent("value", f"lines[{i}] needs qty > 0 and unit_price >= 0")
        expected += line.qty * line.unit_price
    if ev.kind != "void" and abs(expected - ev.total) > 0.005 * (1 + len(ev.lines)):
        raise InvalidEvent("value", f"total {ev.total:.2f} does not match lines - discount ({expected:.2f})")


def _check_stock(ev: StockEvent) -> None:
    _recurring_name("store", ev.store)
    _recurring_name("sku", ev.sku)
    _finite("qty", ev.qty)
    if ev.qty < 0:
        raise InvalidEvent("value", "qty is negative")


def _check_web(ev: WebEvent) -> None:
    _recurring_name("site", ev.site)
    _name("session", ev.session)
    if len(ev.path) > 2048:
        raise InvalidEvent("value", "path is longer than 2048 characters")
    if not 100 <= ev.status <= 599:
        raise InvalidEvent("value", f"status {ev.status} is not an HTTP status")
    _finite("latency_ms", ev.latency_ms)
    if ev.latency_ms < 0:
        raise InvalidEvent("value", "latency_ms is negative")


Event = IotReading | PosTransaction | WebEvent | StockEvent  # what ``decode`` returns

_TYPES: dict[str, tuple[type[_Event], Callable]] = {
    "iot": (IotReading, _check_iot),
    "pos": (PosTransaction, _check_pos),
    "web": (WebEvent, _check_web),
    "stock": (StockEvent, _check_stock),
}
_DECODERS = {src: msgspec.json.Decoder(typ) for src, (typ, _) in _TYPES.items()}


class _VersionOnly(msgspec.Struct):
    v: int = 0


_VERSION_PROBE = msgspec.json.Decoder(_VersionOnly)


def _unsupported_version(raw: bytes) -> InvalidEvent | None:
    """A clear version error for a message of another schema version (else None)."""
    try:
        v = _VERSION_PROBE.decode(raw).v
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if v in SUPPORTED_VERSIONS:
        return None
    return InvalidEvent("version", f"schema version {v} is not supported (supported: "
                        f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))})")


def decode(source: str, raw: bytes | None, now: float | None = None) -> Event:
    """Decode and validate one message of ``source`` ("iot", "pos" or "web")."""
    if raw is None:  # a Kafka record with a null value (a tombstone): nothing to decode
        raise InvalidEvent("json", "the message has no value (null)")
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent("size", f"{len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    typ, check = _TYPES[source]
    try:
        ev = _DECODERS[source].decode(raw)
    except msgspec.ValidationError as exc:
        raise _unsupported_version(raw) or InvalidEvent("schema", str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent("json", str(exc)) from None
    if ev.v not in SUPPORTED_VERSIONS:
        raise _unsupported_version(raw) or InvalidEvent("version", f"schema version {ev.v} unsupported")
    if ev.time.tzinfo is None:
        raise InvalidEvent("time", "time has no time zone")
    ts = ev.ts
    now = _time.time() if now is None else now
    if ts < MIN_EVENT_TS:
        raise InvalidEvent("time", f"time {ev.time.isoformat()} is before 2000")
    if ts > now + MAX_FUTURE_SECONDS:
        raise InvalidEvent("time", f"time {ev.time.isoformat()} is more than {MAX_FUTURE_SECONDS:.0f}s ahead")
    check(ev)
    return ev


_ENCODER = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    """Encode an event as wire JSON."""
    return _ENCODER.encode(event)


# --- events opsmon itself produces --------------------------------------------------------------------


class Feedback(msgspec.Struct, kw_only=True):
    """What a person said about an alert, as written to the feedback topic (keyed by entity)."""

    v: int = 1
    alert_id: str
    kind: Literal["ack", "false_positive"]
    at: float
    user: str = ""
    note: str = ""


def alert_id(source: str, entity: str, metric: str, start: float) -> str:
    """The stable id of the alert of one series that opened at ``start``.

    >>> alert_id("iot", "s1/d1", "temperature", 1767225600.0)
    'iot:s1/d1:temperature:1767225600'
    """
    return f"{source}:{entity}:{metric}:{int(start)}"


def parse_alert_id(aid: str) -> tuple[str, str, str, float]:
    """``(source, entity, metric, start)`` of an alert id; ValueError if it is not one.

    >>> parse_alert_id("pos:store-1:revenue:1767225600")
    ('pos', 'store-1', 'revenue', 1767225600.0)
    """
    parts = aid.split(":")
    if len(parts) < 4 or parts[0] not in SOURCES or not parts[-1].isdigit() or not parts[1]:
        raise ValueError(f"not an opsmon alert id: {aid!r} (expected source:entity:metric:start)")
    return parts[0], ":".join(parts[1:-2]), parts[-2], float(parts[-1])


_FEEDBACK_DECODER = msgspec.json.Decoder(Feedback)
_ALERT_DECODER = msgspec.json.Decoder(AlertEvent)


def decode_feedback(raw: bytes) -> Feedback:
    """Decode a feedback message; InvalidEvent with the reason otherwise."""
    try:
        fb = _FEEDBACK_DECODER.decode(raw)
        parse_alert_id(fb.alert_id)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise InvalidEvent("feedback", str(exc)) from None
    return fb


def decode_alert(raw: bytes) -> AlertEvent:
    """Decode an alert event."""
    return _ALERT_DECODER.decode(raw)
