"""Simulated time: parsing times and durations, formatting event times, and local-time helpers.

>>> parse_duration("1h30m"), parse_duration("45s"), parse_duration("2d")
(5400.0, 45.0, 172800.0)
>>> parse_time("2026-11-01")
1793491200.0
>>> parse_time("+2h", ref=1793491200.0) - 1793491200.0
7200.0
>>> iso(1793491200.25)
'2026-11-01T00:00:00.250Z'
"""

from __future__ import annotations

import re
import time as _time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0
WEEK = 7 * DAY

_UNITS = {"ms": 0.001, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class TimeSpecError(ValueError):
    """A time or duration that cannot be read."""


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m`` (units ms, s, m, h, d, w)."""
    s = text.strip().lower()
    try:
        return float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if pos != len(s) or not s:
        raise TimeSpecError(f"bad duration {text!r}: use e.g. 30s, 5m, 2h, 1d or 1h30m")
    return total


def parse_time(text: str, ref: float | None = None, tz: str = "UTC", now: float | None = None) -> float:
    """Unix seconds of an ISO date/time (naive ones in ``tz``), ``now``, ``now-2h`` or ``+2h`` (after ``ref``)."""
    s = text.strip()
    now = _time.time() if now is None else now
    low = s.lower()
    if low.startswith("now"):
        rest = low[3:].strip()
        if not rest:
            return now
        sign = {"-": -1.0, "+": 1.0}.get(rest[0])
        if sign is None:
            raise TimeSpecError(f"bad time {text!r}: use now, now-2h or now+5m")
        return now + sign * parse_duration(rest[1:])
    if s.startswith("+"):
        if ref is None:
            raise TimeSpecError(f"relative time {text!r} needs a start to be relative to")
        return ref + parse_duration(s[1:])
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith(("Z", "z")) else s)
    except ValueError as exc:
        raise TimeSpecError(f"bad time {text!r}: use ISO 8601 (2026-11-01, 2026-11-01T08:00), "
                            f"now, now-2h or +2h") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.timestamp()


def iso(t: float) -> str:
    """RFC 3339 in UTC with milliseconds, as events carry it."""
    s = int(t // 1)
    return f"{second_prefix(s)}.{int((t - s) * 1000):03d}Z"


def second_prefix(s: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of whole Unix second ``s``: generators cache it per second."""
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(s))


class LocalTime:
    """Local weekday and hour of Unix times in one time zone; the UTC offset is cached per UTC hour.

    >>> lt = LocalTime("Europe/Berlin")
    >>> lt.weekday_hour(parse_time("2026-07-06T12:30:00Z"))  # a Monday, CEST
    (0, 14.5)
    """

    def __init__(self, tz: str = "UTC") -> None:
        self.tz = tz
        self._zone = ZoneInfo(tz)
        self._hour = -1
        self._offset = 0.0

    def offset(self, t: float) -> float:
        """Seconds to add to UTC to get local wall-clock time at ``t``."""
        h = int(t // HOUR)
        if h != self._hour:
            off = datetime.fromtimestamp(h * HOUR, self._zone).utcoffset()
            self._offset = off.total_seconds() if off is not None else 0.0
            self._hour = h
        return self._offset

    def weekday_hour(self, t: float) -> tuple[int, float]:
        """(weekday with Monday 0, fractional local hour of the day)."""
        local = t + self.offset(t)
        days = int(local // DAY)
        return (days + 3) % 7, (local - days * DAY) / HOUR  # 1970-01-01 was a Thursday


def utc_datetime(t: float) -> datetime:
    """An aware UTC datetime."""
    return datetime.fromtimestamp(t, tz=UTC)
