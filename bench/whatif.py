"""What-if workers: ``opsmon worker`` with a proposed change patched in, to measure it before it is made.

``python -m bench.whatif NAME[,NAME...]`` runs the normal worker after applying the named patches
(``opsmon bench --what-if NAME`` runs one with the preloaded events and compares it with the baseline).
They change only this process, never a file, and some trade durability for speed: they are
measurements of proposals, not fixes.

* ``no-changelog``: entity states are not changelogged at all (the upper bound of any changelog fix).
* ``iot-changelog-10s``: an IoT device's state is changelogged at most every 10 s (POS and web state,
  whose windows must not lose counts, still every batch): a crash loses at most 10 s of model learning.
* ``raw-pickle``: the state tables' values are pickled without Faust's base64 layer (25% fewer bytes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

PATCHES: dict[str, str] = {
    "no-changelog": "no entity state changelogged (upper bound)",
    "iot-changelog-10s": "IoT state changelogged at most every 10 s per device",
    "raw-pickle": "state pickled without base64",
}


def _no_changelog() -> None:
    from faust.tables.base import Collection

    Collection.send_changelog = lambda self, *a, **k: None  # type: ignore[method-assign]


def _iot_changelog_every(seconds: float) -> Callable[[], None]:
    def patch() -> None:
        from faust.tables.base import Collection

        send = Collection.send_changelog
        last: dict = {}

        def throttled(self, partition, key, value, *a, **k):  # noqa: ANN001, ANN202
            if "state-iot" in self.name:
                now = time.monotonic()
                if now - last.get(key, -1e18) < seconds:
                    return None
                last[key] = now
            return send(self, partition, key, value, *a, **k)

        Collection.send_changelog = throttled  # type: ignore[method-assign]
    return patch


def _raw_pickle() -> None:
    from faust.serializers import codecs

    import streams.app

    codecs.register("rawpickle", codecs.raw_pickle())
    build = streams.app._pickled_table

    def pickled_table(app, name, partitions):  # noqa: ANN001, ANN202
        table = build(app, name, partitions)
        table.value_serializer = "rawpickle"
        table.changelog_topic = table._new_changelog_topic()
        return table

    streams.app._pickled_table = pickled_table


_APPLY: dict[str, Callable[[], None]] = {
    "no-changelog": _no_changelog,
    "iot-changelog-10s": _iot_changelog_every(10.0),
    "raw-pickle": _raw_pickle,
}


def main() -> None:
    """Apply the patches named in argv[1] (comma-separated), then run the worker."""
    names = [n for n in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if n]
    unknown = [n for n in names if n not in _APPLY]
    if unknown:
        raise SystemExit(f"unknown what-if {', '.join(unknown)}; known: {', '.join(_APPLY)}")
    for n in names:
        _APPLY[n]()
    del sys.argv[1:]
    from opsmon.cli.run import worker

    worker()


if __name__ == "__main__":
    main()
