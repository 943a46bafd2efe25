"""What-if workers: ``opsmon worker`` with a proposed change patched in, to measure it before it is made.

``python -m bench.whatif NAME[,NAME...]`` runs the normal worker after applying the named patches
(``opsmon bench --what-if NAME`` runs one with the preloaded events and compares it with the baseline).
They change only this process, never a file, and some trade durability for speed: they are
measurements of proposals, not fixes.

* ``no-changelog``: entity states are not sent to their changelogs (they are still serialised).
* ``no-state-pickle``: changed states are changelogged as empty values, so nothing is pickled or compressed
  (the upper bound of any faster serialisation).

The worker changelogs changed state once per checkpoint; another interval is measured by running the
bench with ``OPSMON_CHECKPOINT_SECONDS`` set, not by a patch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

PATCHES: dict[str, str] = {
    "no-changelog": "no entity state changelogged (upper bound)",
    "no-state-pickle": "changed states changelogged as empty values: no pickling or compressing (upper bound)",
}


def _no_changelog() -> None:
    from faust.tables.base import Collection

    Collection.send_changelog = lambda self, *a, **k: None  # type: ignore[method-assign]


def _no_state_pickle() -> None:
    from faust.serializers import codecs

    from streams.state_codec import STATE_CODEC

    dumps = codecs.dumps
    codecs.dumps = lambda codec, obj: b"" if codec == STATE_CODEC else dumps(codec, obj)  # type: ignore[assignment]


_APPLY: dict[str, Callable[[], None]] = {
    "no-changelog": _no_changelog,
    "no-state-pickle": _no_state_pickle,
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
