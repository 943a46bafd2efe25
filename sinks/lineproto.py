"""InfluxDB line protocol, built as strings (several times faster than influxdb-client's ``Point``).

>>> line("pos_window", {"store": "north 1"}, {"revenue": 12.5, "transactions": 3}, 1_700_000_000_000)
'pos_window,store=north\\\\ 1 revenue=12.5,transactions=3i 1700000000000'
"""

from __future__ import annotations

from collections.abc import Mapping

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\", "\n": " "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\", "\n": " "})

# A series writes the same measurement and tags on every point, and escaping and sorting them was a third of
# the cost of a line: the escaped "measurement,tags" head is kept per (measurement, tag keys, tag values). Bounded, and
# emptied when full rather than kept in LRU order (a hit must stay one dict lookup). Heads of series that an
# entity has many of (an IoT device's anomaly scores, one per metric) are kept with the series instead
# (``series_head``), so they go when the entity sleeps and this cache holds about one head per entity.
MAX_CACHED_HEADS = 1 << 15  # ~290 bytes each: at most ~10 MB
_heads: dict[tuple, str] = {}
# Field keys come from a small, fixed vocabulary (metric names); escaped once, with the "=" appended.
MAX_CACHED_FIELD_KEYS = 4096
_field_keys: dict[str, str] = {}


def escape_tag(s: str) -> str:
    """Escape a tag key, tag value or field key."""
    return s.translate(_TAG_ESCAPES)


def _field_value(v: float | int | bool | str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _head(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,k=v,...``: tags sorted (InfluxDB's preferred order), empty values skipped."""
    return measurement.translate(_MEASUREMENT_ESCAPES) + "".join(
        [f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v])


def _field_key(k: str) -> str:
    """``k=``, escaped, remembered for the next line."""
    key = escape_tag(k) + "="
    if len(_field_keys) >= MAX_CACHED_FIELD_KEYS:
        _field_keys.clear()
    _field_keys[k] = key
    return key


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, float | int | bool | str],
         ts_ms: int) -> str:
    """One point; tags are sorted (InfluxDB's preferred order) and empty tag values are skipped."""
    cache_key = (measurement, *tags, *tags.values())  # keys then values: as unambiguous as items, smaller
    head = _heads.get(cache_key)
    if head is None:
        head = _head(measurement, tags)
        if len(_heads) >= MAX_CACHED_HEADS:
            _heads.clear()
        _heads[cache_key] = head
    return point(head, fields, ts_ms)


def series_head(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tags`` of a series' points, for a caller that keeps it with the series (``point``).

    >>> point(series_head("anomaly_score", {"entity": "site 1/d1", "source": "iot"}), {"score": 0.25}, 1)
    'anomaly_score,entity=site\\\\ 1/d1,source=iot score=0.25 1'
    """
    return _head(measurement, tags)


def point(head: str, fields: Mapping[str, float | int | bool | str], ts_ms: int) -> str:
    """One point of the series whose ``series_head`` is ``head``."""
    keys = _field_keys
    parts = []
    for k, v in fields.items():
        name = keys.get(k) or _field_key(k)
        # Nearly every field is a float: its exact type skips _field_value's isinstance chain (bool first).
        parts.append(name + (repr(v) if type(v) is float else _field_value(v)))
    return f"{head} {','.join(parts)} {ts_ms}"
