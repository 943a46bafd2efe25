"""Limits the business sets: a bound on a metric that is an incident whenever it is crossed, whatever the history.

The detectors judge a value against its own series, so a fault that recurs every day becomes ordinary to them:
a shop whose pages slowed down daily for a week stops alerting on slow pages. Some bounds are not a matter of
statistics: a freezer above -15 °C spoils stock, pages slower than 1.5 s break the shop's service level. Such a
bound is written as a rule per series pattern (``Settings.limits``, ``OPSMON_LIMITS``)::

    {"web:*:latency_p95": "> 1500 for 3m", "iot:*/freezer-*:temperature": "> -15 for 10m critical"}

The key is ``source:entity:metric``, each part a shell-style pattern (``*``, ``?``, ``[...]``). The rule is one or
more clauses joined by ``;``, each a comparison (``>``, ``>=``, ``<``, ``<=``) with a number, an optional
``for <duration>`` the value must stay beyond it (``30s``, ``5m``, ``2h``; default 0: the first value beyond it),
and an optional severity: ``warning`` (the default: it pages), ``critical``, or ``info`` (the boards only).

>>> limits = Limits.parse({"web:*:latency_p95": "> 1500 for 3m"})
>>> rules = limits.matching("web", "shop-0", "latency_p95")
>>> watch = LimitWatch()
>>> [watch.process_one(rules, x, t) for t, x in ((0, 900.0), (60, 1800.0), (120, 2100.0), (180, 900.0))]
[None, None, None, None]
>>> [watch.process_one(rules, 2400.0, t) for t in (240, 300, 360, 420)][-1]  # beyond it for 3 min
(Limit(op='>', bound=1500.0, for_s=180.0, severity='warning', text='> 1500 for 3m'), 240)
>>> limits.matching("web", "shop-0", "error_rate")
()
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from models.alerting import SEVERITY_ORDER, severity_rank

SOURCES = ("iot", "pos", "web")
_OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                    "<=": operator.le}
_CLAUSE = re.compile(r"^(?P<op>>=|<=|>|<)\s*(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                     r"(?:\s+for\s+(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h))?(?:\s+(?P<severity>\w+))?$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
# The score a breach is reported with, by the rule's severity: the floor of that severity (models.alerting), so an
# alert a limit opens pages (or not) as the business said, and a rarer departure still reads as rarer.
SCORES = {"info": 0.5, "warning": 0.6, "critical": 0.8}


class LimitError(ValueError):
    """A limit rule that cannot be read."""


@dataclass(frozen=True)
class Limit:
    """One clause: the metric is beyond ``bound`` (by ``op``) for ``for_s`` seconds."""

    op: str
    bound: float
    for_s: float = 0.0
    severity: str = "warning"
    text: str = ""

    def beyond(self, x: float) -> bool:
        """Whether ``x`` is on the wrong side of the bound (NaN never is)."""
        return _OPS[self.op](x, self.bound)

    @property
    def score(self) -> float:
        """The score a breach is reported with (see ``SCORES``)."""
        return SCORES[self.severity]

    @classmethod
    def parse(cls, clause: str) -> Limit:
        """``> 1500 for 3m critical`` -> a Limit.

        >>> Limit.parse("<= -25.5 for 90s")
        Limit(op='<=', bound=-25.5, for_s=90.0, severity='warning', text='<= -25.5 for 90s')
        >>> Limit.parse("above 3")
        Traceback (most recent call last):
        ...
        models.limits.LimitError: cannot read limit 'above 3': write e.g. '> 1500 for 3m critical'
        """
        text = " ".join(clause.split())
        m = _CLAUSE.match(text)
        if m is None:
            raise LimitError(f"cannot read limit {clause.strip()!r}: write e.g. '> 1500 for 3m critical'")
        sev = (m["severity"] or "warning").lower()
        if sev not in SEVERITY_ORDER:
            raise LimitError(f"unknown severity {m['severity']!r} in limit {text!r}: use {', '.join(SEVERITY_ORDER)}")
        for_s = float(m["n"]) * _UNIT_S[m["unit"]] if m["n"] else 0.0
        return cls(m["op"], float(m["bound"]), for_s, sev, text)


@dataclass(frozen=True)
class Limits:
    """Every configured rule, looked up by series."""

    rules: tuple[tuple[tuple[str, str, str], tuple[Limit, ...]], ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, str]) -> Limits:
        """Read ``{"source:entity:metric": "clause; clause"}`` (see the module docstring)."""
        rules = []
        for key, rule in spec.items():
            parts = tuple(p.strip() for p in key.split(":"))
            if len(parts) != 3 or not all(parts):
                raise LimitError(f"limit key {key!r} is not 'source:entity:metric' (e.g. 'web:*:latency_p95')")
            if not any(fnmatchcase(s, parts[0]) for s in SOURCES):
                raise LimitError(f"limit key {key!r} names no source: use {', '.join(SOURCES)} (or a pattern)")
            clauses = tuple(Limit.parse(c) for c in rule.split(";") if c.strip())
            if not clauses:
                raise LimitError(f"limit {key!r} has no rule: write e.g. '> 1500 for 3m'")
            rules.append((parts, clauses))
        return cls(tuple(rules))

    def matching(self, source: str, entity: str, metric: str) -> tuple[Limit, ...]:
        """The clauses of every rule whose key matches this series."""
        return tuple(c for (s, e, m), clauses in self.rules
                     if fnmatchcase(source, s) and fnmatchcase(entity, e) and fnmatchcase(metric, m) for c in clauses)

    def __bool__(self) -> bool:
        return bool(self.rules)


@dataclass
class LimitWatch:
    """How long one series has been beyond each of its limits (the rules are configuration, passed in).

    A breach people dismissed (``dismiss``) does not alert again until the value has come back within the limit.
    """

    since: dict[str, float] = field(default_factory=dict)  # clause text -> time of the first value beyond it

    def process_one(self, rules: tuple[Limit, ...], x: float, t: float) -> tuple[Limit, float] | None:
        """Fold in the value ``x`` at ``t``; the most severe limit it has now been beyond for long enough, with
        the time the breach began, or None."""
        since: dict[str, float] = {}
        worst: tuple[Limit, float] | None = None
        for rule in rules:
            if not rule.beyond(x):
                continue
            began = since[rule.text] = self.since.get(rule.text, t)
            if t - began >= rule.for_s and (
                    worst is None or severity_rank(rule.severity) > severity_rank(worst[0].severity)):
                worst = (rule, began)
        self.since = since  # a clause the value is back within (or one no longer configured) starts over
        return worst

    def dismiss(self) -> None:
        """People said the breach is not an incident: it does not alert again until it has ended."""
        self.since = dict.fromkeys(self.since, math.inf)
