"""Doctests of the modules that mypyc compiles (setup.py) run on their Python source; a stale build stops the run.

A compiled module keeps no docstrings, so pytest would find no examples in it; the examples are read from the
source, which is what they document. The compiled build is what every other test (and the worker) runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

ROOT = Path(__file__).parent


def compiled_build(source: Path) -> Path | None:
    """The extension module mypyc built from ``source``, if there is one beside it."""
    return next(source.parent.glob(f"{source.stem}.cpython-*.so"), None)


class SourceDoctests(DoctestModule):
    """The doctests of a compiled module, collected from (and run in) its Python source."""

    def _getobj(self) -> ModuleType:
        name = ".".join(self.path.relative_to(ROOT).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, self.path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def collect(self) -> list:
        # doctest takes what sys.modules holds under the name for the module of the docstrings' objects: the
        # source, while they are found; the examples then import the compiled module, as everything else does
        name = self.obj.__name__
        compiled = sys.modules.get(name)
        sys.modules[name] = self.obj
        try:
            return list(super().collect())
        finally:
            if compiled is None:
                del sys.modules[name]
            else:
                sys.modules[name] = compiled


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> list:
    collected = yield
    if file_path.suffix != ".py" or compiled_build(file_path) is None:
        return collected
    return [SourceDoctests.from_parent(parent, path=file_path) if isinstance(c, DoctestModule) else c
            for c in collected]


def pytest_sessionstart(session: pytest.Session) -> None:
    # Python imports a compiled module before its source: an edit since the build would go untested.
    for build in sorted(ROOT.glob("*/*.cpython-*.so")):
        source = build.parent / (build.name.split(".")[0] + ".py")
        if source.exists() and source.stat().st_mtime > build.stat().st_mtime:
            pytest.exit(f"{source.relative_to(ROOT)} changed since mypyc compiled it: run `make setup`", returncode=4)
