"""Hypothesis strategies for the wire: valid events of every source mixed with every kind of bad input.

Bad inputs: random bytes, invalid UTF-8, null values, wrong JSON types, missing and extra fields, NaN and
Infinity literals and huge numbers, payloads over 64 KiB, unknown schema versions, times without zone,
far in the past or in the future, totals that do not add up, and exact re-sends of POS transactions.
Which of them the pipeline accepts is not labelled here: tests compare with ``SourcePipeline`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from hypothesis import strategies as st

from streams.schemas import MAX_EVENT_BYTES, SOURCES


@dataclass(frozen=True)
class Case:
    """One message to send: source, key, value (None: a null value) and headers."""

    source: str
    key: bytes | None
    value: bytes | None
    what: str  # the generator that made it, for failure messages
    headers: tuple[tuple[str, bytes], ...] = ()


def iso(t: float) -> str:
    """RFC 3339 with a zone."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat()


_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_price = st.integers(min_value=0, max_value=10_000).map(lambda c: c / 100)


@st.composite
def valid_event(draw: st.DrawFn, source: str, t0: float, prefix: str) -> dict:
    """A valid event of ``source`` with event time in [t0, t0 + 50) and entities named ``prefix-*``."""
    t = t0 + draw(st.integers(min_value=0, max_value=49_999)) / 1000
    if source == "iot":
        names = draw(st.lists(st.sampled_from(["temperature", "humidity", "power"]), min_size=1, max_size=3,
                              unique=True))
        return {"v": 1, "site": f"{prefix}-site{draw(st.integers(0, 1))}", "device": f"d{draw(st.integers(0, 2))}",
                "time": iso(t), "measurements": {n: draw(_finite) for n in names}}
    if source == "pos":
        kind = draw(st.sampled_from(["sale", "sale", "refund", "void"]))
        lines = draw(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(1, 5), _price),
                              min_size=0 if kind == "void" else 1, max_size=3))
        discount = draw(st.sampled_from([0.0, 0.0, 0.5]))
        total = round(sum(q * p for _, q, p in lines) - discount, 2)
        return {"v": 1, "store": f"{prefix}-store{draw(st.integers(0, 1))}", "register": "r1",
                "txn_id": f"t{draw(st.integers(0, 30))}", "time": iso(t), "kind": kind,
                "payment": draw(st.sampled_from(["card", "cash", "mobile"])), "discount": discount,
                "lines": [{"sku": s, "qty": q, "unit_price": p} for s, q, p in lines], "total": total}
    kind = draw(st.sampled_from(["page_view", "add_to_cart", "checkout", "purchase", "error"]))
    return {"v": 1, "site": f"{prefix}-shop{draw(st.integers(0, 1))}", "session": f"s{draw(st.integers(0, 5))}",
            "time": iso(t), "type": kind,
            "path": "/" + draw(st.text("abc/-", max_size=10)), "status": draw(st.sampled_from([200, 301, 404, 500])),
            "latency_ms": draw(st.floats(min_value=0, max_value=5000, allow_nan=False))}


def entity_key(source: str, event: dict) -> bytes:
    """The key a well-behaved producer uses: the entity."""
    if source == "iot":
        return f"{event['site']}/{event['device']}".encode()
    return str(event["store" if source == "pos" else "site"]).encode()


_WRONG = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.just(None), st.just([1, 2]), st.just({"a": 1}),
                   st.booleans(), st.just(""))
_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"123456789012345678901234567890",
             b"1e16", b"0x10", b"01"]
_BAD_TIMES = ["1970-01-01T00:00:00Z", "1999-12-31T23:59:59+00:00", "2999-01-01T00:00:00Z", "2026-01-01T00:00:00",
              "yesterday", "", "2026-13-45T99:00:00Z", "0001-01-01T00:00:00Z"]


@st.composite
def bad_event(draw: st.DrawFn, source: str, t0: float, prefix: str) -> tuple[str, bytes | None, bytes | None]:
    """``(what, key, value)``: one bad (or oddly shaped) message of ``source``."""
    ev = draw(valid_event(source, t0, prefix))
    key = entity_key(source, ev)
    what = draw(st.sampled_from(["bytes", "utf8", "null", "type", "missing", "extra", "literal", "oversized",
                                 "version", "time", "total", "not-object"]))
    if what == "bytes":
        return what, draw(st.one_of(st.none(), st.binary(max_size=16))), draw(st.binary(max_size=300))
    if what == "utf8":
        raw = orjson.dumps(ev)
        cut = draw(st.integers(0, len(raw)))
        return what, key, raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88"])) \
            + raw[cut:]
    if what == "null":
        return what, key, None
    if what == "type":
        field = draw(st.sampled_from(sorted(ev)))
        # text in a text field is not a wrong type: it would rename the entity out of this test's prefix
        wrong = _WRONG.filter(lambda v: not isinstance(v, str)) if isinstance(ev[field], str) else _WRONG
        return what, key, orjson.dumps({**ev, field: draw(wrong)})
    if what == "missing":
        field = draw(st.sampled_from(sorted(ev)))
        return what, key, orjson.dumps({k: v for k, v in ev.items() if k != field})
    if what == "extra":
        extra = draw(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(-2**40, 2**40), min_size=1,
                                     max_size=3))
        return what, key, orjson.dumps({**extra, **ev})
    if what == "literal":
        field = {"iot": "measurements", "pos": "total", "web": "latency_ms"}[source]
        lit = draw(st.sampled_from(_LITERALS))
        target = {"temperature": "@@"} if source == "iot" else "@@"
        return what, key, orjson.dumps({**ev, field: target}).replace(b'"@@"', lit)
    if what == "oversized":
        pad = draw(st.integers(1, 4096))
        return what, key, orjson.dumps({**ev, "pad": "x" * (MAX_EVENT_BYTES + pad)})
    if what == "version":
        return what, key, orjson.dumps({**ev, "v": draw(st.sampled_from([0, 2, 3, 99, -1, 2**40]))})
    if what == "time":
        return what, key, orjson.dumps({**ev, "time": draw(st.sampled_from(_BAD_TIMES))})
    if what == "total" and source == "pos":
        return what, key, orjson.dumps({**ev, "total": ev["total"] + draw(st.sampled_from([1.0, -3.5, 100.0]))})
    return "not-object", key, draw(st.sampled_from([b"[]", b"1", b'"s"', b"null", b"{}", b"", b" "]))


@st.composite
def source_batch(draw: st.DrawFn, source: str, t0: float, prefix: str, max_each: int = 12) -> list[Case]:
    """Valid and bad messages of one source in random order, with some exact re-sends (POS duplicates)."""
    valid = draw(st.lists(valid_event(source, t0, prefix), min_size=1, max_size=max_each))
    bad = draw(st.lists(bad_event(source, t0, prefix), min_size=1, max_size=max_each))
    cases = [Case(source, entity_key(source, e), orjson.dumps(e), "valid") for e in valid]
    cases += [Case(source, k, v, what) for what, k, v in bad]
    # A retrying till re-sends a transaction: same bytes again (other sources overwrite or count it twice).
    cases += [Case(source, c.key, c.value, "resend") for c in draw(st.lists(st.sampled_from(cases[:len(valid)]),
                                                                             min_size=1, max_size=3))]
    order = draw(st.permutations(range(len(cases))))
    producer = draw(st.sampled_from([None, b"gateway-1", b"till-7"]))
    return [Case(c.source, c.key, c.value, c.what, (("producer", producer),) if producer else ())
            for c in (cases[i] for i in order)]


@st.composite
def mixed_batch(draw: st.DrawFn, t0: float, prefix: str, max_each: int = 12) -> list[Case]:
    """Messages of every source (per source in send order)."""
    return [c for s in SOURCES for c in draw(source_batch(s, t0, prefix, max_each))]
