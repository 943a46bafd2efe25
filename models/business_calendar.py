"""Business calendar: when a shop or site is open, so detectors neither alert nor learn when closed.

A calendar is written as a short spec, one clause per ``;``::

    mon-fri 08:00-20:00; sat 09:00-14:00; closed 2024-12-25, 2025-01-01

Days not named are closed; a day may have several ranges (``mon 08:00-12:00,14:00-18:00``);
a range ending before it starts runs past midnight (``fri 18:00-02:00``); ``24h`` means all day.
Times are local to ``tz`` (an IANA name), so daylight saving is handled by ``zoneinfo``.

Equipment runs around the clock, but what it reads depends on whether the site is open (fridge doors,
occupancy, machines on shift). ``pattern_time(t)`` says which time of day a reading at ``t`` should be
judged like: itself, unless the site is shut at an hour it is usually open (a Sunday, a holiday), when
it is the nearest usually-closed minute of the same day (the site as at closing time).

>>> cal = BusinessCalendar.parse("mon-fri 08:00-20:00; sat 09:00-14:00; closed 2024-12-25")
>>> from datetime import datetime, timezone
>>> cal.is_open(datetime(2024, 12, 23, 9, 0, tzinfo=timezone.utc).timestamp())  # a Monday
True
>>> cal.is_open(datetime(2024, 12, 22, 9, 0, tzinfo=timezone.utc).timestamp())  # a Sunday
False
>>> cal.is_open(datetime(2024, 12, 25, 9, 0, tzinfo=timezone.utc).timestamp())  # closed day
False
>>> def hhmm(t): return datetime.fromtimestamp(t, timezone.utc).strftime("%a %H:%M")
>>> hhmm(cal.pattern_time(datetime(2024, 12, 25, 9, 0, tzinfo=timezone.utc).timestamp()))  # as at 07:59
'Wed 07:59'
>>> hhmm(cal.pattern_time(datetime(2024, 12, 22, 19, 0, tzinfo=timezone.utc).timestamp()))  # as at 20:00
'Sun 20:00'
>>> hhmm(cal.pattern_time(datetime(2024, 12, 23, 3, 0, tzinfo=timezone.utc).timestamp()))  # a usual night
'Mon 03:00'
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


def _nearest_usually_closed(hours: Mapping[int, list[tuple[int, int]]]) -> list[int]:
    """Per minute of the day, the shift in minutes to the nearest minute closed on most weekdays.

    0 for a minute that is itself usually closed; an empty list when no minute is (open around the clock).
    """
    day = 24 * 60
    open_days = [0] * day
    for weekday_ranges in hours.values():
        minutes = set()
        for start, end in weekday_ranges:
            stop = end if end > start else end + day  # past midnight: runs into the next day's minutes
            minutes.update(m % day for m in range(start, stop))
        for m in minutes:
            open_days[m] += 1
    usually_open = [n * 2 > 7 for n in open_days]
    if all(usually_open):
        return []
    # distance to the nearest usually-closed minute before and after each minute (circular): two sweeps
    before, after = [0] * day, [0] * day
    gap = day
    for m in list(range(day)) * 2:
        gap = 0 if not usually_open[m] else gap + 1
        before[m] = gap
    gap = day
    for m in list(reversed(range(day))) * 2:
        gap = 0 if not usually_open[m] else gap + 1
        after[m] = gap
    # ties go to the earlier side (the site as before it opened)
    return [-b if b <= a else a for b, a in zip(before, after, strict=True)]


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
        self._closed_like = _nearest_usually_closed(self.hours)

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

    def pattern_time(self, t: float) -> float:
        """The time whose daily pattern a reading at ``t`` should follow (see the module docstring).

        ``t`` itself when open, or closed at an hour that is usually closed; otherwise ``t`` moved within
        its day to the nearest minute of the day that is closed on most weekdays. A calendar open at every
        minute of most days (``24h``) has no such minute and returns ``t``.
        """
        if not self._closed_like or self.is_open(t):
            return t
        local = datetime.fromtimestamp(t, self._zone)
        minute = local.hour * 60 + local.minute
        return t + 60.0 * self._closed_like[minute]

    def __getstate__(self) -> dict:
        return {"hours": self.hours, "closed": self.closed, "tz": self.tz}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["hours"], state["closed"], state["tz"])  # type: ignore[misc]
