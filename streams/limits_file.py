"""Limits the business sets, read from a file that may change while the worker runs.

A freezer's bound or a service level is changed by people, not by a release: ``OPSMON_LIMITS_FILE`` names a
JSON object in the form of ``OPSMON_LIMITS`` (``models.limits``), which the worker reads at start and again
whenever it changes. Its rules add to those of ``OPSMON_LIMITS`` and replace them for the same key. A file that
cannot be read stops the worker at start; later, it is reported (log and stats) and the rules in force stay.

>>> import json, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "limits.json")
>>> with open(path, "w") as fh:
...     _ = fh.write(json.dumps({"web:*:latency_p95": "> 1500 for 3m"}))
>>> watch = LimitsFile(path, base={"iot:*:temperature": "> 8"})
>>> len(watch.current.rules), watch.poll()  # unchanged since it was read
(2, None)
>>> with open(path, "w") as fh:
...     _ = fh.write("{not json")
>>> os.utime(path, ns=(1, 1))
>>> watch.poll(), watch.error.startswith("limits file")  # a broken edit: the rules in force stay
(None, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from models.limits import LimitError, Limits


def read_limits_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``{"source:entity:metric": "rule"}`` object in ``path``; LimitError (naming the file) if it is not one."""
    try:
        spec = json.loads(Path(path).read_text())
    except OSError as e:
        raise LimitError(f"limits file {path}: cannot read it ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise LimitError(f"limits file {path}: not JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
        raise LimitError(f'limits file {path}: write one JSON object of rules, e.g. {{"web:*:latency_p95": "> 1500"}}')
    try:
        Limits.parse(spec)
    except LimitError as e:
        raise LimitError(f"limits file {path}: {e}") from e
    return spec


def limits_with_file(base: Mapping[str, str], path: str | os.PathLike[str] | None) -> Limits:
    """The rules of ``base`` (``OPSMON_LIMITS``) and of the file at ``path`` (if any), the file's winning for a key."""
    return Limits.parse({**base, **(read_limits_file(path) if path is not None else {})})


class LimitsFile:
    """The limits in force: ``base`` (``OPSMON_LIMITS``) and the file's rules, re-read when the file changes."""

    def __init__(self, path: str | os.PathLike[str], base: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.base = dict(base or {})
        self.error = ""  # why the latest version of the file was not taken, if it was not
        self.reloads = 0
        self._seen = self._stamp()
        self.current = limits_with_file(self.base, self.path)

    def _stamp(self) -> tuple[int, int, int] | None:
        # (an editor or a config manager that saves by renaming gives a new inode, whatever the clock's resolution)
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def poll(self) -> Limits | None:
        """The new limits if the file changed since it was last read (and reads well), else None."""
        stamp = self._stamp()
        if stamp == self._seen:
            return None
        self._seen = stamp
        try:
            self.current = limits_with_file(self.base, self.path)
        except LimitError as e:
            self.error = str(e)
            return None
        self.error = ""
        self.reloads += 1
        return self.current
