"""Rarity of a ratio's count: k failures (or purchases) of n trials against the series' usual rate.

``SeriesDetector`` judges a ratio (an error rate, a conversion) by its value alone, against how often departures
as large began on the series lately. That misreads a ratio twice: 25% errors over 36 requests is a broken
checkout on a shop with 0.4% errors however often such bursts happened before (a history full of faults makes
each one look ordinary), and 1 error in 10 requests is 10% on paper and nothing at all in fact. ``CountTail``
judges the *count* instead, in River's idiom (``score_one`` / ``learn_one``, or ``process_one``), with a small
picklable state of plain floats:

- the usual rate ``p0``: trials and successes summed with exponential forgetting (a memory of ``horizon``
  windows);
- its overdispersion ``rho`` (the intra-window correlation of a beta-binomial: minutes whose rate drifts with
  the hour, the traffic mix, a flaky backend), by factorial moments: ``k (k - 1) - n (n - 1) p0**2`` summed
  against ``n (n - 1) p0 (1 - p0)``, with the same memory and a prior of none. (The plain second moment, where a
  lone error among 10 requests weighs as much as the spread of a day, is ten times noisier on rare counts.)
  The count of a window is then beta-binomial with mean ``n p0`` and variance ``n p0 (1 - p0) (1 + (n - 1) rho)``;
  the uncertainty of ``p0`` itself (it rests on the trials in memory) adds ``1 / (trials + 1)`` to ``rho``, so a
  young model is cautious on its own;
- the tail probability of the count on the harmful ``side`` only (+1: more than usual, -1: fewer), summed
  term by term in log space; ``L = -log10 p - log10(8)`` (the count is one more test beside the detector's
  seven: the same Bonferroni) and the score ``L / (L + FLAG_DECADES)``, as the detector's: 0.5 is
  ``p = 1/800``.

A window whose count is rare (score at the threshold), or that belongs to an incident (the caller says so: an
open alert, a rare value), teaches neither the rate nor the dispersion, and nor do the ``quarantine`` windows
before it (a burst's run-up: 2 errors, then 3, each barely ordinary once the last was learned) and after it:
windows are learned ``quarantine`` windows late, once they are known to be clean. An incident does not widen the
tail the next one is judged by. Tainted windows that keep coming (``hold`` of them before a window is learned
again) are a new normal (a permanent change) and are learned. A flag needs ``warmup`` windows learned, a rate at least
``min_effect`` times the usual one on the harmful side (a huge minute 10% above its usual rate is no
incident), and a count ``margin`` decades rarer than the threshold (a score of 0.6, not 0.5): the tail is a
model's, with a dispersion learned from a few days of minutes and underestimated rather than over (the rarest
windows are left out of it), and on a series judged every minute a count as rare as 1 in 800 windows comes about
daily; a broken checkout's count is rarer than 1 in a million. The flag opens an event: no new flag until
``refractory`` windows below the threshold have passed, unless the count is ``escalate`` decades rarer than
the event's worst (one alert per incident, as the detector).

>>> import random
>>> rng = random.Random(1)
>>> tail = CountTail(side=1.0, warmup=100)
>>> for _ in range(600):  # a shop with 0.4% errors over 20 to 60 requests a minute
...     n = rng.randint(20, 60)
...     _ = tail.process_one(sum(rng.random() < 0.004 for _ in range(n)), n)
>>> 0.003 < tail.p0 < 0.006
True
>>> tail.score_one(1, 36), tail.score_one(3, 36) < 0.6  # one error, or three, among 36 requests: no flag
(0.0, True)
>>> score, flag = tail.process_one(9, 36)  # a broken checkout: 25% errors
>>> round(score, 2), flag
(0.84, True)
>>> tail.process_one(8, 36)[1]  # the same incident: one flag per event
False
"""

from __future__ import annotations

import math
from typing import Any

from models.anomaly import FLAG_DECADES, SHARES

_BONFERRONI = math.log10(SHARES + 1.0)  # the detector's seven shares of the correction and this count
_LN10 = math.log(10.0)
_MAX_RHO = 0.3  # overdispersion cap: beyond it a count says nothing anyway
_MIN_P = 1e-6
_SETTLE = 30  # windows learned before the dispersion is
# The dispersion's prior: none, with the weight of about 300 minutes of 15 requests at 0.3% errors (a window adds
# n (n - 1) p0 to the moments' denominator): a young model's first pair of errors in a minute is not a 10% spread.
_DEN_PRIOR = 200.0


class CountTail:
    """Beta-binomial tail of one ratio's counts; see the module docstring.

    Parameters
    ----------
    side
        +1: only more successes than usual are anomalous (errors, refunds); -1: only fewer (purchases).
    threshold
        Score at which a count is flagged (and above which it is not learned).
    warmup
        Windows learned before a flag.
    horizon
        Memory of the rate and the dispersion, in windows.
    refractory, escalate
        Windows below the threshold after a flag before a new one; decades rarer than the event's worst that
        flag all the same.
    hold
        Tainted windows (rare, or of an incident) with none learned between after which they are learned (a
        permanent change).
    quarantine
        Windows learned this late, and left out before and after a tainted one.
    min_effect
        A flag needs the window's rate at least this many times the usual one (or at most its inverse, for
        ``side=-1``).
    margin
        A flag needs the count this many decades rarer than the threshold's rarity (a score of 0.6 rather than
        0.5 by default): see the module docstring.
    """

    def __init__(self, side: float = 1.0, threshold: float = 0.5, warmup: int = 240, horizon: float = 1440.0,
                 refractory: int = 120, escalate: float = 1.0, hold: int = 120, min_effect: float = 1.5,
                 margin: float = 1.0, quarantine: int = 15) -> None:
        if side not in (1.0, -1.0):
            raise ValueError("side must be +1 or -1")
        self.side = side
        self.threshold = threshold
        self.warmup = warmup
        self.horizon = horizon
        self.refractory = refractory
        self.escalate = escalate
        self.hold = hold
        self.min_effect = min_effect
        self.margin = margin
        self.quarantine = quarantine
        # --- learned state ---
        self.k = 0.0  # successes and trials in memory (decayed)
        self.n = 0.0
        self.num = 0.0  # moments of the overdispersion (decayed)
        self.den = 0.0
        self.windows = 0  # windows learned
        self.held = 0  # tainted windows (rare, or of an incident) since a window was last learned
        self.pending: list[tuple[float, float]] = []  # (k, n) of the windows in quarantine, oldest first
        self.skip = 0  # windows after a tainted one still to leave unlearned
        self.quiet = 0  # windows below the threshold to go before a new flag
        self.worst = 0.0  # decades of the open event's rarest count

    # ------------------------------------------------------------------ public API
    @property
    def warmed_up(self) -> bool:
        return self.windows >= self.warmup

    @property
    def p0(self) -> float:
        """The usual rate (with half a success and half a failure of prior: never exactly 0 or 1)."""
        return (self.k + 0.5) / (self.n + 1.0)

    @property
    def rho(self) -> float:
        """Overdispersion learned (0: binomial), without the rate's own uncertainty."""
        return min(max(self.num / (self.den + _DEN_PRIOR), 0.0), _MAX_RHO)

    def log10p(self, k: float, n: float) -> float:
        """log10 of the tail probability of ``k`` of ``n`` on the harmful side (0 when not on that side)."""
        n_i = int(round(n))
        k_i = min(max(int(round(k)), 0), n_i)
        if n_i <= 0:
            return 0.0
        p0 = min(max(self.p0, _MIN_P), 1.0 - _MIN_P)
        if self.side * (k_i - n_i * p0) <= 0.0:
            return 0.0
        rho = min(self.rho + 1.0 / (self.n + 1.0), _MAX_RHO)
        return betabinom_log10_tail(k_i, n_i, p0, rho, upper=self.side > 0)

    def score_one(self, k: float, n: float) -> float:
        """Score in [0, 1) of ``k`` successes in ``n`` trials (``FLAG_DECADES`` scale), without learning."""
        return self._score(self.log10p(k, n))

    def learn_one(self, k: float, n: float) -> None:
        """Learn one window's count (see the module docstring: it is folded in ``quarantine`` windows later)."""
        self._learn(k, n, _decades(self.score_one(k, n)) >= self._bar + self.margin)

    def process_one(self, k: float, n: float, event: float = 0.0, incident: bool = False) -> tuple[float, bool]:
        """Score then learn one window: (score, flag).

        ``event``: the score with which something else (the detector) flagged this window, 0 if nothing did.
        The count's event then starts or goes on with it, so the two do not alert twice for one incident; its
        count is not learned. ``incident``: the window belongs to an incident under way (an open alert): it is
        learned only if the incident lasts ``hold`` windows, as a rare count is.
        """
        if n <= 0 or not math.isfinite(k) or not math.isfinite(n):
            return 0.0, False
        score = self._score(self.log10p(k, n))
        decades = _decades(score)
        rare = decades >= self._bar + self.margin
        material = k / n >= self.min_effect * self.p0 if self.side > 0 else k / n <= self.p0 / self.min_effect
        flag = (rare and material and self.warmed_up and not event
                and (self.quiet == 0 or decades >= self.worst + self.escalate))
        if flag or event:  # an event starts (or escalates, or the detector's goes on)
            worst = max(decades, _decades(event))
            self.worst = max(self.worst, worst) if self.quiet else worst
            self.quiet = self.refractory
        elif self.quiet:
            if score >= self.threshold:
                self.worst = max(self.worst, decades)
            else:
                self.quiet -= 1
        self._learn(k, n, rare or incident or bool(event))
        return score, flag

    def __setstate__(self, state: dict[str, Any]) -> None:
        # state from a newer or older release: fill what it lacks with the defaults
        self.__dict__.update(CountTail().__dict__)
        self.__dict__.update(state)

    # ------------------------------------------------------------------ internals
    @property
    def _bar(self) -> float:
        """Decades the threshold stands for."""
        return _decades(self.threshold)

    @staticmethod
    def _score(lp: float) -> float:
        big = -lp - _BONFERRONI
        return big / (big + FLAG_DECADES) if big > 0.0 else 0.0

    def _learn(self, k: float, n: float, tainted: bool) -> None:
        """Quarantine a window's count; fold in the one that leaves quarantine clean (see the module docstring)."""
        if n <= 0:
            return
        if tainted:
            self.held += 1
            if self.held > self.hold:  # it lasts: the new normal
                self._fold(k, n)
                return
            self.pending, self.skip = [], self.quarantine  # its run-up, and its aftermath, are not learned either
            return
        if self.skip:
            self.skip -= 1
            return
        self.pending.append((k, n))
        if len(self.pending) > self.quarantine:
            self._fold(*self.pending.pop(0))
            self.held = 0

    def _fold(self, k: float, n: float) -> None:
        p0 = self.p0
        decay = 1.0 - 1.0 / self.horizon
        if self.windows >= _SETTLE:  # (the first windows' rate is still a guess)
            self.num = decay * self.num + k * (k - 1.0) - n * (n - 1.0) * p0 * p0
            self.den = decay * self.den + n * (n - 1.0) * p0 * (1.0 - p0)
        self.k = decay * self.k + k
        self.n = decay * self.n + n
        self.windows += 1


def _decades(score: float) -> float:
    return FLAG_DECADES * score / (1.0 - score) if score < 1.0 else math.inf


def betabinom_log10_tail(k: int, n: int, p: float, rho: float, upper: bool = True) -> float:
    """log10 P(K >= k) (``upper``) or P(K <= k) for K beta-binomial: n trials, mean rate p, correlation rho.

    Summed term by term from ``k`` outwards (the ratio of successive terms is exact), in log space.

    >>> round(betabinom_log10_tail(7, 36, 0.004, 1e-9), 2)  # about the binomial tail, 1e-10
    -9.91
    >>> round(betabinom_log10_tail(7, 36, 0.004, 0.02), 2)  # overdispersed: far less rare
    -3.95
    >>> round(10 ** betabinom_log10_tail(0, 20, 0.05, 1e-9, upper=False), 3)  # no purchase among 20 sessions: 0.95**20
    0.358
    """
    s = 1.0 / rho - 1.0  # alpha + beta
    a, b = p * s, (1.0 - p) * s
    lg = math.lgamma
    log_pmf = (lg(n + 1) - lg(k + 1) - lg(n - k + 1) + lg(k + a) + lg(n - k + b) - lg(n + s)
               + lg(s) - lg(a) - lg(b))
    total, term = 1.0, 1.0
    if upper:
        for j in range(k, n):
            term *= (n - j) * (j + a) / ((j + 1) * (n - j - 1 + b))
            total += term
            if term < 1e-12 * total:
                break
    else:
        for j in range(k, 0, -1):
            term *= j * (n - j + b) / ((n - j + 1) * (j - 1 + a))
            total += term
            if term < 1e-12 * total:
                break
    return min((log_pmf + math.log(total)) / _LN10, 0.0)
