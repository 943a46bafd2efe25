"""Business calendar: when a shop or site is open, so detectors neither alert nor learn when closed.

A calendar is written as a short spec, one clause per ``;``::

    mon-fri 08:00-20:00; sat 09:00-14:00; closed 2024-12-25, 2025-01-01

Days not named are closed; a day may have several ranges (``mon 08:00-12:00,14:00-18:00``);
a range ending before it starts runs past midnight (``fri 18:00-02:00``); ``24h`` means all day.
Times are local to ``tz`` (an IANA name), so daylight saving is handled by ``zoneinfo``.

>>> cal = BusinessCalendar.parse("mon-fri 08:00-20:00; sat 09:00-14:00; closed 2024-12-25")
>>> from datetime import datetime, timezone
>>> cal.is_open(datetime(2024, 12, 23, 9, 0, tzinfo=timezone.utc).timestamp())  # a Monday
True
>>> cal.is_open(datetime(2024, 12, 22, 9, 0, tzinfo=timezone.utc).timestamp())  # a Sunday
False
>>> cal.is_open(datetime(2024, 12, 25, 9, 0, tzinfo=timezone.utc).timestamp())  # closed day
False
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class CalendarError(ValueError):
    """A calendar spec that cannot be read."""


def _day_set(text: str) -> list[int]:
    """Weekday numbers (Monday 0) of ``mon``, ``mon-fri`` or ``fri-mon`` (wrapping)."""
    text = text.strip().lower()
    if "-" in text:
        first, last = (p.strip()[:3] for p in text.split("-", 1))
        if first not in DAYS or last not in DAYS:
            raise CalendarError(f"unknown day range {text!r}: use mon..sun")
        a, b = DAYS.index(first), DAYS.index(last)
        return [(a + i) % 7 for i in range((b - a) % 7 + 1)]
    if text[:3] not in DAYS:
        raise CalendarError(f"unknown day {text!r}: use mon..sun")
    return [DAYS.index(text[:3])]


def _minutes(hours: str, minutes: str, text: str) -> int:
    """Minutes since midnight of ``hh:mm`` (24:00 allowed as an end)."""
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m):
        raise CalendarError(f"bad time in {text!r}")
    return h * 60 + m


def _ranges(text: str) -> list[tuple[int, int]]:
    """Opening ranges in minutes of ``08:00-12:00,14:00-18:00`` or ``24h``."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("24h", "all day"):
            out.append((0, 24 * 60))
            continue
        m = _RANGE.match(part)
        if not m:
            raise CalendarError(f"bad opening hours {part!r}: expected like 08:00-20:00")
        out.append((_minutes(m[1], m[2], part), _minutes(m[3], m[4], part)))
    return out


class BusinessCalendar:
    """Opening hours per weekday plus closed dates; ``is_open(t)`` for epoch seconds ``t``."""

    def __init__(self, hours: Mapping[int, list[tuple[int, int]]], closed: set[date] | None = None,
                 tz: str = "UTC") -> None:
        self.hours = {d: sorted(r) for d, r in hours.items()}
        self.closed = set(closed or ())
        self.tz = tz
        self._zone = ZoneInfo(tz)
        # cache of the current local day: [start, end) in epoch seconds and its open spans
        self._day: tuple[float, float, list[tuple[float, float]]] = (0.0, -1.0, [])

    @classmethod
    def parse(cls, spec: str, tz: str = "UTC") -> BusinessCalendar:
        """Read a spec like ``"mon-fri 08:00-20:00; sat 09:00-14:00; closed 2024-12-25"``."""
        hours: dict[int, list[tuple[int, int]]] = {}
        closed: set[date] = set()
        for clause in filter(None, (c.strip() for c in spec.split(";"))):
            head, _, rest = clause.partition(" ")
            if head.lower() == "closed":
                try:
                    closed.update(date.fromisoformat(d.strip()) for d in rest.split(",") if d.strip())
                except ValueError as exc:
                    raise CalendarError(f"bad closed date in {clause!r}: use YYYY-MM-DD") from exc
                continue
            if not rest.strip():
                raise CalendarError(f"no hours in {clause!r}")
            for day in _day_set(head):
                hours.setdefault(day, []).extend(_ranges(rest))
        return cls(hours, closed, tz)

    @classmethod
    def from_dict(cls, spec: Mapping[str, object], tz: str = "UTC") -> BusinessCalendar:
        """Read ``{"mon-fri": "08:00-20:00", "sat": "09:00-14:00", "closed": ["2024-12-25"]}``."""
        parts = []
        for key, value in spec.items():
            if key.lower() == "closed":
                parts.append("closed " + ",".join(str(v) for v in value))  # type: ignore[union-attr]
            else:
                parts.append(f"{key} {value}")
        return cls.parse("; ".join(parts), tz)

    def _spans_of(self, day: date) -> list[tuple[datetime, datetime]]:
        """Local open spans touching ``day``, including ranges run over from the day before."""
        out = []
        for offset in (-1, 0):
            d = day + timedelta(days=offset)
            if d in self.closed:
                continue
            for start, end in self.hours.get(d.weekday(), []):
                begin = datetime.combine(d, time(), self._zone) + timedelta(minutes=start)
                stop_min = end if end > start else end + 24 * 60  # past midnight
                stop = datetime.combine(d, time(), self._zone) + timedelta(minutes=stop_min)
                out.append((begin, stop))
        return out

    def is_open(self, t: float) -> bool:
        """True when the business is open at epoch seconds ``t``."""
        start, end, spans = self._day
        if not start <= t < end:
            local = datetime.fromtimestamp(t, self._zone)
            day = local.date()
            midnight = datetime.combine(day, time(), self._zone)
            start = midnight.timestamp()
            end = datetime.combine(day + timedelta(days=1), time(), self._zone).timestamp()
            spans = [(a.timestamp(), b.timestamp()) for a, b in self._spans_of(day)]
            self._day = (start, end, spans)
        return any(a <= t < b for a, b in spans)

    def __getstate__(self) -> dict:
        return {"hours": self.hours, "closed": self.closed, "tz": self.tz}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["hours"], state["closed"], state["tz"])  # type: ignore[misc]
