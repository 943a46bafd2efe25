"""Leave-one-category-out evaluation on NAB: settings chosen without the data they are reported on.

A *setting* is a point of a small grid of detector parameters (the threshold, a few constructor
arguments), written as ``(name, value)`` pairs. For each setting the whole corpus is run once and scored
with ``models.nab.score_corpus`` (profile -> category -> ``CorpusScore``). A fold holds one category out:
the setting with the best standard score on the *other* categories (pooled with NAB's normalisation; ties
go to the production setting) is chosen, and the held-out category's raw scores under that setting are what
the fold reports. The folds' raw, null and perfect sums are added up and normalised once, exactly as NAB
normalises a corpus, so the held-out total is comparable with the in-sample one.

>>> from models.nab import CorpusScore, FileScore
>>> def cs(raw, null=-2.0, perfect=2.0):
...     return CorpusScore(FileScore(raw=raw), null, perfect)
>>> prod, low = (("threshold", 0.5),), (("threshold", 0.4),)
>>> grid = {prod: {"standard": {"a": cs(1.0), "b": cs(1.0), "c": cs(0.0)}},
...         low: {"standard": {"a": cs(1.5), "b": cs(1.5), "c": cs(-2.0)}}}
>>> [(f.category, f.setting) for f in leave_one_out(grid, prod)]
[('a', (('threshold', 0.5),)), ('b', (('threshold', 0.5),)), ('c', (('threshold', 0.4),))]
>>> round(combine(leave_one_out(grid, prod))["standard"].normalised, 1)
50.0
>>> describe(low)
'threshold=0.4'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from models.nab import CorpusScore, FileScore

Setting = tuple[tuple[str, float], ...]  # (parameter, value) pairs, in the grid's order
Scores = Mapping[str, Mapping[str, CorpusScore]]  # profile -> category -> score, as models.nab.score_corpus gives
CHOICE_PROFILE = "standard"
_TIE = 1e-9  # normalised scores this close are a tie (float sums in another order)


@dataclass(frozen=True, slots=True)
class Fold:
    """One held-out category: the setting chosen without it, and its scores (per profile) under that setting."""

    category: str
    setting: Setting
    scores: dict[str, CorpusScore]


def pooled(scores: Scores, categories: Iterable[str], profile: str = CHOICE_PROFILE) -> CorpusScore:
    """The categories' raw, null and perfect sums under one profile, as one corpus."""
    out = CorpusScore()
    for c in categories:
        s = scores[profile][c]
        out.detector += FileScore(s.detector.raw, s.detector.tp, s.detector.fn, s.detector.fp, s.detector.windows)
        out.null += s.null
        out.perfect += s.perfect
    return out


def categories_of(grid: Mapping[Setting, Scores]) -> list[str]:
    """The categories every setting was scored on (``total`` excluded), sorted."""
    if not grid:
        raise ValueError("empty grid: no setting was scored")
    cats: set[str] | None = None
    for scores in grid.values():
        these = set(scores[CHOICE_PROFILE]) - {"total"}
        cats = these if cats is None else cats & these
    return sorted(cats or ())


def choose(grid: Mapping[Setting, Scores], categories: Iterable[str], production: Setting,
           profile: str = CHOICE_PROFILE) -> Setting:
    """The setting with the best pooled ``profile`` score on ``categories``; ties go to ``production``."""
    if production not in grid:
        raise ValueError(f"the production setting {describe(production)} is not in the grid")
    cats = list(categories)
    best, best_score = production, pooled(grid[production], cats, profile).normalised
    for setting, scores in grid.items():
        score = pooled(scores, cats, profile).normalised
        if score > best_score + _TIE:
            best, best_score = setting, score
    return best


def leave_one_out(grid: Mapping[Setting, Scores], production: Setting) -> list[Fold]:
    """One fold per category: the setting chosen on the others, and the held-out category's scores under it."""
    cats = categories_of(grid)
    if len(cats) < 2:
        raise ValueError(f"leave-one-category-out needs at least two categories, got {cats}")
    folds = []
    for held in cats:
        setting = choose(grid, [c for c in cats if c != held], production)
        profiles = grid[setting]
        folds.append(Fold(held, setting, {p: pooled(profiles, [held], p) for p in profiles}))
    return folds


def combine(folds: Iterable[Fold]) -> dict[str, CorpusScore]:
    """The held-out total per profile: the folds' sums normalised once, as NAB does over a corpus."""
    out: dict[str, CorpusScore] = {}
    for fold in folds:
        for profile, s in fold.scores.items():
            pooled_ = pooled({profile: {fold.category: s}}, [fold.category], profile)
            agg = out.setdefault(profile, CorpusScore())
            agg.detector += pooled_.detector
            agg.null += pooled_.null
            agg.perfect += pooled_.perfect
    return out


def describe(setting: Setting) -> str:
    """``name=value`` pairs of a setting, for tables and reports."""
    return " ".join(f"{name}={value:g}" for name, value in setting)
