"""Opening hours per store and web site, from settings, as the ``is_open(entity, t)`` the models ask."""

from __future__ import annotations

from collections.abc import Callable

from models.business_calendar import BusinessCalendar
from opsmon.settings import Settings


def calendar_lookup(settings: Settings) -> Callable[[str, float], bool]:
    """``is_open(entity, t)``: the entity's calendar, else the default; always open when neither is set.

    IoT entities (``site/device``) follow their site's calendar only if one is named for the site; equipment
    such as freezers is watched around the clock otherwise.
    """
    calendars = {name: BusinessCalendar.parse(spec, tz=settings.timezone) for name, spec in settings.calendars.items()}
    default = BusinessCalendar.parse(settings.default_calendar, tz=settings.timezone) \
        if settings.default_calendar.strip() else None

    def is_open(entity: str, t: float) -> bool:
        cal = calendars.get(entity)
        if cal is None and "/" in entity:
            cal = calendars.get(entity.split("/", 1)[0])
            if cal is None:
                return True
        cal = cal or default
        return True if cal is None else cal.is_open(t)

    return is_open
