"""Builds opsmon; the detector's per-value helpers are compiled to C with mypyc (the rest is in pyproject.toml).

``SurpriseCalibrator``, ``SeasonalBaseline`` and ``RecordRange`` run for every value every series sees (and
``models/pickled.py`` for every series a checkpoint pickles): compiled, the pipeline spends about a fifth less CPU
on an event (docs/benchmark.md, "Compiled helpers"). They stay typed Python source, run as such by the doctests
(``conftest.py``) and wherever ``OPSMON_PURE_PYTHON=1`` was set at install. River's
estimators (``SeriesDetector``, ``AlertFilter``) are not compiled: River's ``clone`` and checks read their
signatures, which compiled classes do not have.
"""

import os

from setuptools import setup

COMPILED = ["models/surprise.py", "models/seasonal.py", "models/record.py", "models/pickled.py"]


def compiled_extensions() -> list:
    """The mypyc extensions, or none when a pure-Python install was asked for."""
    if os.environ.get("OPSMON_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3")


setup(ext_modules=compiled_extensions())
