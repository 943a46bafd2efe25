"""Opening hours per store, web site and IoT site, as configured: what the models ask of the calendar."""

from __future__ import annotations

from models.business_calendar import BusinessCalendar


class Calendars:
    """The calendars named in the configuration, looked up by entity.

    Stores and web sites (``entity``) follow their own calendar, else the default one; without either
    they are always open, and closed hours are neither scored nor learned.

    IoT devices (``site/device``) are watched around the clock: a freezer that fails on a Sunday matters.
    What they read still depends on the site being open (fridge doors, occupancy, a machine's shift), so a
    device's own calendar, else its site's (the default does not apply to equipment), says which time of
    day a reading is judged like: on a Sunday or holiday, as when the site is shut (``pattern_time``).

    >>> cals = Calendars.parse({"store-1": "mon-sat 08:00-20:00", "site-1": "mon-sat 08:00-20:00"})
    >>> sunday_noon = 1_795_348_800.0  # 2026-11-22 12:00 UTC
    >>> cals.is_open("store-1", sunday_noon), cals.is_open("site-1/fridge-0", sunday_noon)
    (False, True)
    >>> from datetime import datetime, timezone
    >>> datetime.fromtimestamp(cals.pattern_time("site-1/fridge-0", sunday_noon), timezone.utc).strftime("%a %H:%M")
    'Sun 07:59'
    >>> cals.pattern_time("site-2/fridge-0", sunday_noon) == sunday_noon  # no calendar named for site-2
    True
    """

    def __init__(self, by_name: dict[str, BusinessCalendar], default: BusinessCalendar | None = None) -> None:
        self.by_name = by_name
        self.default = default

    @classmethod
    def parse(cls, calendars: dict[str, str], default: str = "", timezone: str = "UTC") -> Calendars:
        """Parse calendars by name and the default one (empty: always open), local to ``timezone``."""
        by_name = {name: BusinessCalendar.parse(spec, tz=timezone) for name, spec in calendars.items()}
        return cls(by_name, BusinessCalendar.parse(default, tz=timezone) if default.strip() else None)

    def _equipment(self, entity: str) -> BusinessCalendar | None:
        """A device's own calendar, else its site's; None when neither is named."""
        return self.by_name.get(entity) or self.by_name.get(entity.split("/", 1)[0])

    def is_open(self, entity: str, t: float) -> bool:
        """Whether ``entity`` is scored at ``t``: devices always; stores and sites when open."""
        if "/" in entity:
            return True
        cal = self.by_name.get(entity) or self.default
        return True if cal is None else cal.is_open(t)

    def pattern_time(self, entity: str, t: float) -> float:
        """The time of day whose pattern a reading of ``entity`` at ``t`` follows (``t`` unless shut)."""
        cal = self._equipment(entity) if "/" in entity else None
        return t if cal is None else cal.pattern_time(t)
