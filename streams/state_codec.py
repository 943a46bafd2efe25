"""How a state table's values are stored in their changelog: pickled, then compressed with Zstandard.

Faust's own ``pickle`` codec base64-encodes the pickle, a third more bytes and a second pass over them.
Model state is mostly numbers that repeat (profiles filled one bin at a time, histograms of zeros, the
same settings in every series), so Zstandard at its fastest level takes a device's ~30 KiB pickle to
about 7 KiB, in less time than the base64 step it replaces (docs/benchmark.md, changelog serialise).

A changelog written before this codec (base64 pickles) still restores: Zstandard frames start with their
magic number, which base64 text never does.

>>> from faust.serializers import codecs
>>> register()
>>> blob = codecs.dumps(STATE_CODEC, {"series": [0.0] * 1000})  # a 9 KB pickle
>>> len(blob) < 1000, codecs.loads(STATE_CODEC, blob) == {"series": [0.0] * 1000}
(True, True)
>>> codecs.loads(STATE_CODEC, codecs.dumps("pickle", {"old": 1}))  # a changelog from before
{'old': 1}
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

import zstandard
from faust.serializers import codecs

STATE_CODEC = "opsmon-state"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class ZstdPickle(codecs.Codec):
    """Pickle (highest protocol) in a Zstandard frame, level 1: the fastest level, and nearly the smallest."""

    def __init__(self, level: int = 1, **kwargs: Any) -> None:
        super().__init__(level=level, **kwargs)
        # Compressor objects are reused (their context is the costly part), one per codec: a worker is one thread.
        self._compress = zstandard.ZstdCompressor(level=level).compress
        self._decompress = zstandard.ZstdDecompressor().decompress

    def _dumps(self, obj: Any) -> bytes:
        return self._compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def _loads(self, s: bytes) -> Any:
        if s[:4] == _ZSTD_MAGIC:
            return pickle.loads(self._decompress(s))
        return pickle.loads(base64.b64decode(s))  # Faust's ``pickle`` codec: what older releases wrote


def register() -> None:
    """Make :data:`STATE_CODEC` known to Faust (tables name their value serialiser by name)."""
    if STATE_CODEC not in codecs.codecs:
        codecs.register(STATE_CODEC, ZstdPickle())


_FROZEN = ZstdPickle()


def freeze(obj: Any) -> bytes:
    """``obj`` as one compressed pickle: how the series of an idle entity wait in memory (``thaw`` undoes it)."""
    # zstandard returns its output in a buffer sized for the worst case (larger than the input); a copy of the
    # bytes written keeps a fifth of that in memory for as long as the entity is idle
    return bytes(memoryview(_FROZEN._dumps(obj)))


def thaw(blob: bytes) -> Any:
    """What :func:`freeze` made, exactly as it was (pickling keeps every float bit)."""
    return _FROZEN._loads(blob)
