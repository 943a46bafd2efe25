"""Where simulated events go besides Kafka: JSON-lines files, one per source, ready for ``opsmon publish``.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with JsonlFiles(d) as sink:
...     sink("iot", b"k", b'{"v":1}')
>>> (d / "iot.jsonl").read_text()
'{"v":1}\\n'
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


class JsonlFiles:
    """A ``send(source, key, value)`` that appends each event as one line to ``<dir>/<source>.jsonl``."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {}
        self.sent = 0

    def __call__(self, source: str, key: bytes, value: bytes) -> None:  # noqa: ARG002
        """Append one event."""
        f = self._files.get(source)
        if f is None:
            f = self._files[source] = (self.dir / f"{source}.jsonl").open("wb", buffering=1 << 20)
        f.write(value + b"\n")
        self.sent += 1

    def paths(self) -> list[Path]:
        """The files written so far."""
        return [Path(f.name) for f in self._files.values()]

    def close(self) -> None:
        """Flush and close every file."""
        for f in self._files.values():
            f.close()

    def __enter__(self) -> JsonlFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
