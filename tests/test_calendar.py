"""The business calendar as the stream asks it: which entities are scored when, and how equipment is judged."""

from __future__ import annotations

from datetime import UTC, datetime

from models.business_calendar import BusinessCalendar
from opsmon.settings import Settings
from streams.calendar import Calendars


def at(day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of November ``day`` 2026 (the 16th is a Monday, the 22nd a Sunday), UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp()


def moved_minutes(cal: BusinessCalendar, t: float) -> float:
    return (cal.pattern_time(t) - t) / 60


def test_pattern_time_moves_only_shut_hours_that_are_usually_open() -> None:
    cal = BusinessCalendar.parse("mon-sat 08:00-20:00; closed 2026-11-18")
    assert moved_minutes(cal, at(16, 12)) == 0  # open
    assert moved_minutes(cal, at(16, 3)) == 0  # a usual night
    assert moved_minutes(cal, at(22, 9)) == -61  # Sunday morning: as at 07:59
    assert moved_minutes(cal, at(22, 19, 30)) == 30  # Sunday evening: as at 20:00
    assert moved_minutes(cal, at(18, 13, 59)) == -360  # a closed date (a Wednesday): as at 07:59
    assert moved_minutes(cal, at(18, 14, 1)) == 359  # ... or at 20:00, whichever is nearer


def test_pattern_time_across_midnight_and_around_the_clock() -> None:
    nights = BusinessCalendar.parse("mon-fri 22:00-06:00")  # a night shift: open past midnight
    assert moved_minutes(nights, at(21, 23)) == -61  # Saturday 23:00, usually on shift: as at 21:59
    assert moved_minutes(nights, at(22, 5, 30)) == 30  # Sunday 05:30: as at 06:00
    assert moved_minutes(nights, at(17, 23)) == 0  # on shift
    always = BusinessCalendar.parse("mon-sun 24h; closed 2026-11-22")
    assert moved_minutes(always, at(22, 12)) == 0  # no usually-closed time to be judged like


def test_devices_are_watched_around_the_clock_stores_follow_their_hours() -> None:
    settings = Settings(calendars={"store-1": "mon-sat 08:00-20:00", "site-1": "mon-sat 08:00-20:00",
                                   "site-1/machine-3": "mon-fri 06:00-22:00"},
                        default_calendar="mon-fri 09:00-17:00")
    cals = Calendars.parse(settings.calendars, settings.default_calendar, settings.timezone)
    sunday_noon, saturday_noon = at(22, 12), at(21, 12)
    assert not cals.is_open("store-1", sunday_noon) and cals.is_open("store-1", saturday_noon)
    assert not cals.is_open("store-2", saturday_noon)  # the default calendar
    assert cals.is_open("site-1/fridge-0", sunday_noon) and cals.is_open("site-9/fridge-0", sunday_noon)
    # a fridge is judged as when its shop is shut, a machine by its own shifts, and a site without a
    # calendar of its own by the clock (the default is for stores and web sites, not for equipment)
    assert cals.pattern_time("site-1/fridge-0", sunday_noon) == at(22, 7, 59)
    assert cals.pattern_time("site-1/fridge-0", saturday_noon) == saturday_noon
    assert cals.pattern_time("site-1/machine-3", saturday_noon) == at(21, 5, 59)
    assert cals.pattern_time("site-9/fridge-0", sunday_noon) == sunday_noon
    assert cals.pattern_time("store-1", sunday_noon) == sunday_noon
