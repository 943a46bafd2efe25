"""Which model judges which series: River expressions per series pattern, read safely.

``OPSMON_MODELS`` maps ``source:entity:metric`` patterns (shell-style, as ``OPSMON_LIMITS``: ``models.limits``) to
a River expression or a named preset; ``OPSMON_FORECASTERS`` does the same for demand forecasters::

    {"iot:*:vibration": "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)", "pos:*:revenue": "opsmon"}

An expression is read with Python's ``ast``, never evaluated: only calls of allow-listed River classes
(``module.Class(...)``), with literal arguments (numbers, strings, booleans, ``None``, tuples, lists, dicts of
them) or allow-listed calls, joined by ``|`` into a pipeline. The first pattern that matches a series, in the
order written, chooses its model; a series no pattern matches gets opsmon's own. A bad expression raises
``SpecError`` naming the pattern, at settings load and worker start.

>>> specs = ModelSpecs.parse({"iot:*:vibration": "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)"})
>>> spec = specs.matching("iot", "s1/m3", "vibration")
>>> spec.preset, type(spec.make()).__name__
('', 'Pipeline')
>>> specs.matching("iot", "s1/m3", "temperature").preset  # the default
'opsmon'
>>> try:
...     ModelSpecs.parse({"iot:*:x": "__import__('os').system('true')"})
... except SpecError as exc:
...     print(str(exc).split(": ", 1)[1])
only calls of River classes such as anomaly.HalfSpaceTrees(...) are allowed, not __import__('os').system
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from river import base
from river.time_series.base import Forecaster

from models.limits import SOURCES

OPSMON = "opsmon"  # the preset: opsmon's own model (SeriesDetector; the demand forecaster for OPSMON_FORECASTERS)
# River classes an expression may name, by module. Scalers and feature steps for pipelines, the anomaly detectors
# (filters too: they wrap a detector), and the two forecasters River ships.
DETECTOR_CLASSES: dict[str, frozenset[str]] = {
    "preprocessing": frozenset({"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler",
                                "AdaptiveStandardScaler", "Normalizer"}),
    "feature_extraction": frozenset({"PolynomialExtender", "RBFSampler"}),
    "anomaly": frozenset({"HalfSpaceTrees", "GaussianScorer", "LocalOutlierFactor", "LODA", "OneClassSVM",
                          "StandardAbsoluteDeviation"}),
}
FORECASTER_CLASSES: dict[str, frozenset[str]] = {"time_series": frozenset({"HoltWinters", "SNARIMAX"})}
# Named presets: a name in place of an expression (``opsmon`` is opsmon's own model, built by the caller)
DETECTOR_PRESETS = {
    "hst": "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)",
    "gaussian": "anomaly.GaussianScorer(window_size=None, grace_period=100)",
}
FORECASTER_PRESETS = {"holt-winters": "time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=7)"}


class SpecError(ValueError):
    """A model expression that cannot be read, or names something that is not allowed."""


def _literal(node: ast.expr, where: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise SpecError(f"{where}: arguments must be literals (numbers, strings, True/False/None, tuples, lists, "
                        f"dicts) or River calls, not {ast.unparse(node)!r}") from None


def _build(node: ast.expr, allowed: Mapping[str, frozenset[str]], where: str) -> Any:
    """The object an expression node describes: a pipeline, an allowed River call, or a literal argument."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _build(node.left, allowed, where) | _build(node.right, allowed, where)
    if isinstance(node, ast.Call):
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
            raise SpecError(f"{where}: only calls of River classes such as anomaly.HalfSpaceTrees(...) are allowed, "
                            f"not {ast.unparse(func)}")
        module, name = func.value.id, func.attr
        if name not in allowed.get(module, ()):
            names = ", ".join(f"{m}.{c}" for m, cs in sorted(allowed.items()) for c in sorted(cs))
            raise SpecError(f"{where}: {module}.{name} is not allowed; use one of {names}")
        args = [_build(a, allowed, where) if isinstance(a, ast.Call | ast.BinOp) else _literal(a, where)
                for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise SpecError(f"{where}: **kwargs are not allowed")
            kwargs[kw.arg] = (_build(kw.value, allowed, where) if isinstance(kw.value, ast.Call | ast.BinOp)
                              else _literal(kw.value, where))
        cls = getattr(importlib.import_module(f"river.{module}"), name)
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: {module}.{name}: {exc}") from None
    raise SpecError(f"{where}: expected a River call such as anomaly.HalfSpaceTrees(seed=7) or a pipeline of them "
                    f"joined by |, not {ast.unparse(node)!r}")


def parse_expression(text: str, allowed: Mapping[str, frozenset[str]], where: str = "model") -> Any:
    """Build the River object ``text`` describes (see the module docstring); ``SpecError`` names ``where``."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{where}: {text!r} is not an expression ({exc.msg})") from None
    return _build(tree.body, allowed, where)


def _final(model: Any) -> Any:
    """The last step of a pipeline (the model itself otherwise)."""
    steps = getattr(model, "steps", None)
    return list(steps.values())[-1] if isinstance(steps, Mapping) and steps else model


def check_detector(model: Any, where: str) -> Any:
    """``model`` if it scores values as an anomaly detector opsmon can calibrate; ``SpecError`` otherwise."""
    final = _final(model)
    if isinstance(final, base.SupervisedAnomalyDetector):
        if final is not model:  # a pipeline would hand it the features without the value as y
            raise SpecError(f"{where}: {type(final).__name__} takes the value as y: use it alone, not in a pipeline")
        return model
    if not isinstance(final, base.AnomalyDetector) or isinstance(final, base.AnomalyFilter):
        raise SpecError(f"{where}: {type(final).__name__} is not an anomaly detector (a filter decides, opsmon's "
                        f"policy does that): end the expression with one, e.g. anomaly.HalfSpaceTrees(seed=7)")
    return model


def check_forecaster(model: Any, where: str) -> Any:
    """``model`` if it is a River forecaster; ``SpecError`` otherwise."""
    if not isinstance(model, Forecaster):
        raise SpecError(f"{where}: {type(model).__name__} is not a River forecaster (time_series.HoltWinters, ...)")
    return model


@dataclass(frozen=True)
class ModelSpec:
    """The model configured for some series: its text, the preset it names (``opsmon``, or ''), and a builder."""

    pattern: str
    text: str
    preset: str
    make: Callable[[], Any]  # a fresh, untrained model (not called for the opsmon preset)


class ModelSpecs:
    """Every configured pattern and its model, looked up by series; the first matching pattern wins."""

    def __init__(self, specs: tuple[tuple[tuple[str, str, str], ModelSpec], ...] = (), kind: str = "model") -> None:
        self.specs = specs
        self.kind = kind

    @classmethod
    def parse(cls, spec: Mapping[str, str], forecasters: bool = False) -> ModelSpecs:
        """Read ``{"source:entity:metric": "expression or preset"}``; each expression is built once to check it."""
        kind = "forecaster" if forecasters else "model"
        allowed = FORECASTER_CLASSES if forecasters else DETECTOR_CLASSES
        presets = FORECASTER_PRESETS if forecasters else DETECTOR_PRESETS
        check = check_forecaster if forecasters else check_detector
        out = []
        for key, text in spec.items():
            where = f"{kind} for {key!r}"
            parts = tuple(p.strip() for p in key.split(":"))
            if len(parts) != 3 or not all(parts):
                raise SpecError(f"{where}: the key is not 'source:entity:metric' (e.g. 'iot:*:vibration')")
            if not any(fnmatchcase(s, parts[0]) for s in SOURCES):
                raise SpecError(f"{where}: the key names no source: use {', '.join(SOURCES)} (or a pattern)")
            if not isinstance(text, str) or not text.strip():
                raise SpecError(f"{where}: give a River expression or a preset ({', '.join([OPSMON, *presets])})")
            name = text.strip()
            if name == OPSMON:
                out.append((parts, ModelSpec(key, name, OPSMON, _no_model)))
                continue
            expr = presets.get(name, name)
            check(parse_expression(expr, allowed, where), where)  # fails now, at start, rather than per series
            out.append((parts, ModelSpec(key, name, "", _maker(expr, allowed, where))))
        return cls(tuple(out), kind)

    def matching(self, source: str, entity: str, metric: str) -> ModelSpec:
        """The spec of the first pattern that matches this series; opsmon's own model when none does."""
        for (s, e, m), spec in self.specs:
            if fnmatchcase(source, s) and fnmatchcase(entity, e) and fnmatchcase(metric, m):
                return spec
        return _DEFAULT

    def __bool__(self) -> bool:
        return any(spec.preset != OPSMON for _, spec in self.specs)


def _no_model() -> None:
    return None


def _maker(expr: str, allowed: Mapping[str, frozenset[str]], where: str) -> Callable[[], Any]:
    """A builder of fresh models from a checked expression (re-read each time: nothing is shared between series)."""
    def make() -> Any:
        return parse_expression(expr, allowed, where)
    return make


_DEFAULT = ModelSpec("*:*:*", OPSMON, OPSMON, _no_model)


def forecaster_for(specs: ModelSpecs, source: str, entity: str, metric: str) -> Any:
    """A fresh forecaster for a series: the configured River one, or opsmon's demand forecaster (the preset)."""
    spec = specs.matching(source, entity, metric)
    if spec.preset == OPSMON:
        from models.forecast import DemandForecaster  # imported here: its module is another model's home

        return DemandForecaster()
    return spec.make()
