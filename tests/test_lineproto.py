"""Line protocol: the cached, fast-pathed ``line`` writes exactly what the plain construction writes."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks import lineproto
from sinks.lineproto import line, point, series_head


def reference_line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, float | int | bool | str],
                   ts_ms: int) -> str:
    """The construction without caches or fast paths (what ``line`` wrote before them), from the module's own
    escaping and value formatting, which those leave as they were."""
    esc = lineproto.escape_tag
    head = measurement.translate(lineproto._MEASUREMENT_ESCAPES)
    tag_part = "".join(f",{esc(k)}={esc(v)}" for k, v in sorted(tags.items()) if v)
    field_part = ",".join(f"{esc(k)}={lineproto._field_value(v)}" for k, v in fields.items())
    return f"{head}{tag_part} {field_part} {ts_ms}"


# Names drawn from the characters line protocol escapes, plus ordinary ones.
_names = st.text(alphabet=st.sampled_from(list("ab_-1 ,=\\\n\"é")), min_size=0, max_size=6)
_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.booleans(),
                    _names)


@settings(max_examples=400, deadline=None)
@given(measurement=_names.filter(bool), tags=st.dictionaries(_names.filter(bool), _names, max_size=4),
       fields=st.dictionaries(_names.filter(bool), _values, min_size=1, max_size=5), ts=st.integers(0, 2**62))
def test_line_is_byte_identical_to_the_reference(measurement: str, tags: dict[str, str],
                                                 fields: dict[str, float | int | bool | str], ts: int) -> None:
    """Escaping, sorting, empty tag values, bools, ints, floats and strings, first call and cached."""
    want = reference_line(measurement, tags, fields, ts)
    assert line(measurement, tags, fields, ts) == want
    assert line(measurement, tags, fields, ts) == want  # the head from the cache
    assert point(series_head(measurement, tags), fields, ts) == want  # the head kept by its series


CASES = [
    ("iot_reading", {"site": "site-19", "device": "hvac-62"},
     {"temperature": 22.45, "humidity": 47.9, "co2_ppm": 929.0, "power_w": 3806.0}, 1793700000001),
    ("anomaly_score", {"source": "iot", "entity": "site-19/hvac-62", "metric": "temperature"},
     {"score": 0.0, "threshold": 0.5, "observed": -0.0, "is_anomaly": 1.0, "expected": 1e-300,
      "lower": -math.inf, "upper": math.nan}, 0),
    ("pos window", {"store": "north 1", "empty": "", "z=k": "a,b\\c"},
     {"revenue": 12.5, "transactions": 3, "ok": True, "bad": False, "note": 'say "hi"\\', "big": 2**80}, 1),
    ("m,\n", {}, {"f x": 1.5}, 2),
]


@pytest.mark.parametrize("args", CASES)
def test_line_cases(args: tuple) -> None:
    """Typical points and the awkward ones, each twice (cached head, cached field keys)."""
    assert line(*args) == reference_line(*args)
    assert line(*args) == reference_line(*args)


def test_same_tags_in_another_order_or_under_other_keys_do_not_share_a_head() -> None:
    """The cache key keeps tag keys apart from values: a value under another key is another series."""
    assert line("m", {"a": "x"}, {"f": 1.0}, 1) == "m,a=x f=1.0 1"
    assert line("m", {"b": "x"}, {"f": 1.0}, 1) == "m,b=x f=1.0 1"
    assert line("m", {"b": "y", "a": "x"}, {"f": 1.0}, 1) == "m,a=x,b=y f=1.0 1"
    assert line("m", {"a": "x", "b": "y"}, {"f": 1.0}, 1) == "m,a=x,b=y f=1.0 1"
    assert line("m", {"a": "x", "b": ""}, {"f": 1.0}, 1) == "m,a=x f=1.0 1"


def test_float_subclasses_and_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A float subclass takes the general path; a full cache is emptied and keeps answering right."""
    class F(float):
        pass

    assert line("m", {}, {"f": F(2.5)}, 1) == reference_line("m", {}, {"f": F(2.5)}, 1)
    monkeypatch.setattr(lineproto, "MAX_CACHED_HEADS", 3)
    monkeypatch.setattr(lineproto, "MAX_CACHED_FIELD_KEYS", 2)
    for i in range(20):
        tags, fields = {"e": f"d{i % 7}"}, {f"k{i % 5}": float(i)}
        assert line("m", tags, fields, i) == reference_line("m", tags, fields, i)
    assert len(lineproto._heads) <= 3 and len(lineproto._field_keys) <= 2
