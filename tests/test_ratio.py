"""The count test of ratios (models.ratio): its tail, what it learns, and what it leaves out."""

from __future__ import annotations

import math
import pickle
import random

from models.ratio import CountTail, betabinom_log10_tail


def binomial_log10_tail(k: int, n: int, p: float) -> float:
    return math.log10(sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1)))


def test_the_tail_is_the_binomial_one_without_dispersion_and_heavier_with_it() -> None:
    for k, n, p in ((7, 36, 0.004), (3, 15, 0.003), (40, 1000, 0.02)):
        assert abs(betabinom_log10_tail(k, n, p, 1e-10) - binomial_log10_tail(k, n, p)) < 1e-3
        assert betabinom_log10_tail(k, n, p, 0.01) > binomial_log10_tail(k, n, p)
    # the lower tail: no purchase among 60 sessions at 5%
    assert abs(betabinom_log10_tail(0, 60, 0.05, 1e-10, upper=False) - 60 * math.log10(0.95)) < 1e-3


def shop(tail: CountTail, minutes: int, rng: random.Random, rho: float = 0.0, bursts: int = 0) -> None:
    burst_at = {rng.randrange(minutes) for _ in range(bursts)}
    left = 0
    for m in range(minutes):
        if m in burst_at:
            left = rng.randrange(5, 20)
        n = rng.randint(10, 20)
        p = rng.betavariate(0.003 * (1 / rho - 1), 0.997 * (1 / rho - 1)) if rho else 0.003
        if left:
            p, left = rng.uniform(0.15, 0.4), left - 1
        tail.process_one(sum(rng.random() < p for _ in range(n)), n)


def test_the_dispersion_is_learned_from_ordinary_minutes_and_not_from_bursts() -> None:
    rng = random.Random(4)
    spread, clean, bursty = CountTail(), CountTail(), CountTail()
    shop(spread, 5 * 1440, rng, rho=0.02)
    shop(clean, 5 * 1440, rng)
    shop(bursty, 5 * 1440, rng, bursts=10)  # two error bursts a day
    assert 0.005 < spread.rho < 0.04
    assert clean.rho < 0.003 and bursty.rho < 0.003
    assert abs(bursty.p0 - 0.003) < 0.001
    # so a broken checkout is as rare on the bursty shop as on the clean one, and ordinary where rates spread
    assert bursty.score_one(4, 15) > 0.7 and clean.score_one(4, 15) > 0.7
    assert spread.score_one(4, 15) < bursty.score_one(4, 15)


def test_one_flag_per_incident_no_flag_while_warming_up_and_only_the_harmful_side() -> None:
    rng = random.Random(1)
    young = CountTail(warmup=240)
    shop(young, 100, rng)
    assert young.process_one(9, 36) == (young.score_one(9, 36), False)
    tail = CountTail()
    shop(tail, 600, rng)
    flags = [tail.process_one(k, 36)[1] for k in (9, 8, 0, 9, 7)]
    assert flags == [True, False, False, False, False]
    assert tail.process_one(30, 36)[1]  # far rarer: the incident escalated
    purchases = CountTail(side=-1.0)
    for _ in range(600):
        purchases.process_one(sum(rng.random() < 0.05 for _ in range(40)), 40)
    assert purchases.score_one(12, 40) == 0.0  # more purchases than usual: good news
    assert purchases.process_one(0, 400)[1]  # none among 400 sessions


def test_the_state_pickles_and_a_state_without_newer_settings_loads() -> None:
    tail = CountTail()
    shop(tail, 300, random.Random(2))
    back = pickle.loads(pickle.dumps(tail))
    assert back.__dict__ == tail.__dict__
    old = CountTail.__new__(CountTail)
    old.__setstate__({k: v for k, v in tail.__dict__.items() if k not in ("quarantine", "pending", "skip")})
    assert old.score_one(9, 36) == tail.score_one(9, 36) and old.quarantine == 15
