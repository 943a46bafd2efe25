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
from collections.abc import Callable
from typing import Any, ClassVar

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


def _kept(frame: bytes, kind: type[bytes] = bytes) -> bytes:
    """A compressed frame to keep, as ``kind``: zstandard returns its output in a buffer sized for the worst case
    (larger than the input), and a copy of the bytes written keeps a fifth of that in memory."""
    return kind(memoryview(frame))


def freeze(obj: Any) -> bytes:
    """``obj`` as one compressed pickle (``thaw`` undoes it): how a frozen entity's series go to its changelog."""
    return _kept(_FROZEN._dumps(obj))


def thaw(blob: bytes) -> Any:
    """What :func:`freeze` made, exactly as it was (pickling keeps every float bit)."""
    return _FROZEN._loads(blob)


class Frozen(bytes):
    """Series compressed against their freezer's template (``SeriesFreezer``): how an idle entity waits in memory.

    The compressed bytes themselves, of a subclass each freezer makes that knows its freezer: one object per
    idle entity, not a wrapper and its bytes. Pickled (in a changelog), it is written in :func:`freeze`'s form,
    which any worker reads: the template is this process's, made from the code, and never stored.
    """

    __slots__ = ()
    freezer: ClassVar[SeriesFreezer]

    def thaw(self) -> Any:
        """The series, exactly as they were frozen."""
        return self.freezer.thaw(self)

    def __reduce__(self) -> tuple[type[bytes], tuple[bytes]]:
        return bytes, (self.freezer.plain(self),)


class SeriesFreezer:
    """Compresses an idle entity's series against a typical entity's, made once from the code.

    Most of a small pickle is layout, not numbers: module and class names, attribute names, settings that
    every series shares, arrays of the same lengths. Zstandard alone finds each of those once per pickle;
    with the pickle of ``typical()`` as its dictionary (a raw-content dictionary: any bytes will do) it
    finds them there, and a device's three series after a day take 3.8 rather than 6.2 KB. The checksum
    makes a blob thawed with another template fail loudly rather than restore garbage.

    >>> freezer = SeriesFreezer(lambda: {"temperature": [20.5] * 288, "power_w": [120.0] * 288})
    >>> series = {"temperature": [21.0] * 288, "power_w": [118.5] * 288}
    >>> frozen = freezer.freeze(series)
    >>> frozen.thaw() == series, len(frozen) < len(freeze(series))
    (True, True)
    >>> thaw(pickle.loads(pickle.dumps(frozen))) == series  # in a changelog: the plain form
    True
    """

    def __init__(self, typical: Callable[[], Any], level: int = 1) -> None:
        self._typical = typical
        self._level = level
        self._frozen = type("Frozen", (Frozen,), {"__slots__": (), "freezer": self})
        self._compress: Callable[[bytes], bytes] | None = None
        self._decompress: Callable[[bytes], bytes] | None = None

    def _load(self) -> None:
        # built on first use, not at import: the typical state is learned from a synthetic day (tens of ms)
        typical = pickle.dumps(self._typical(), protocol=pickle.HIGHEST_PROTOCOL)
        template = zstandard.ZstdCompressionDict(typical, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        self._compress = zstandard.ZstdCompressor(level=self._level, dict_data=template,
                                                  write_checksum=True).compress
        self._decompress = zstandard.ZstdDecompressor(dict_data=template).decompress

    def freeze(self, obj: Any) -> Frozen:
        """``obj`` as one compressed pickle (``Frozen.thaw`` undoes it)."""
        if self._compress is None:
            self._load()
        return _kept(self._compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)),  # type: ignore[misc]
                     self._frozen)  # type: ignore[return-value]

    def thaw(self, frozen: Frozen) -> Any:
        """What :meth:`freeze` made, exactly as it was."""
        return pickle.loads(self._pickle(frozen))

    def plain(self, frozen: Frozen) -> bytes:
        """``frozen`` in :func:`freeze`'s form: the same pickle, compressed without the template (not unpickled)."""
        return _kept(_FROZEN._compress(self._pickle(frozen)))

    def _pickle(self, frozen: Frozen) -> bytes:
        if self._decompress is None:
            self._load()
        return self._decompress(frozen)  # type: ignore[misc]
