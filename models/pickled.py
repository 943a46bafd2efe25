"""The pickled state of opsmon's helper classes, the same whether they run as Python or compiled by mypyc.

The per-value helpers of the detector (``SurpriseCalibrator``, ``SeasonalBaseline``, ``RecordRange``) are compiled
to C with mypyc when opsmon is installed (``setup.py``). A compiled instance has no ``__dict__``: its class lists
its attributes in ``__mypyc_attrs__`` instead. A class that defines ``__setstate__`` (to read states pickled before
an attribute existed) must then define ``__getstate__`` too, and both must give and take what Python's default
pickling gives and takes, the instance dict: states written by either build are read by the other. And such a
class is marked ``@mypyc_attr(allow_interpreted_subclasses=True)``: unpickling creates the instance with
``cls.__new__(cls)``, which a compiled class otherwise answers by running ``__init__`` (mypyc's way of making sure
every attribute is set), with no arguments; with the mark, ``__new__`` only allocates, as in Python.

>>> class Point:
...     def __init__(self) -> None:
...         self.x, self.y = 1.0, 2.0
>>> p = Point()
>>> attributes(p)
{'x': 1.0, 'y': 2.0}
>>> q = Point.__new__(Point)
>>> restore(q, {"x": 3.0}, {"x": 0.0, "y": 0.0})
>>> (q.x, q.y)
(3.0, 0.0)
"""

from __future__ import annotations

from typing import Any

_UNSET = object()


def attributes(obj: object) -> dict[str, Any]:
    """``obj``'s attributes by name: its instance dict, or (compiled) those its class lists and it has set."""
    names = getattr(type(obj), "__mypyc_attrs__", None)
    if names is None:
        return dict(vars(obj))
    state = {}
    for name in names:  # (one lookup each: this runs for every series a checkpoint pickles)
        value = getattr(obj, name, _UNSET)
        if value is not _UNSET:
            state[name] = value
    return state


def restore(obj: object, state: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Set ``obj``'s attributes from a pickled ``state``, and ``defaults`` for those it predates."""
    for name, value in {**defaults, **state}.items():
        setattr(obj, name, value)
