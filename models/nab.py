"""NAB scoring (Numenta Anomaly Benchmark, Lavin & Ahmad 2015), written from the paper's rules.

One data file is scored from its timestamps, the detector's per-row detections (score >= threshold)
and its labelled anomaly windows:

- the first ``min(floor(0.15 * rows), 750)`` rows are probationary and not scored;
- in a window only the earliest detection counts, worth ``tp * S(x) / S(-1)`` where ``S`` is the scaled
  sigmoid ``2 / (1 + exp(5 x)) - 1`` and ``x = -(right - i + 1) / width`` (so the first row earns ``tp``);
- a window without a detection costs ``-fn``;
- every detection outside a window adds ``fp * S(d)``, ``d`` the distance past the preceding window
  relative to its width (``-fp`` when no window precedes it), so late echoes of an anomaly cost less;
- a corpus is normalised with the same rules applied to the null detector (0) and the perfect one (100).

>>> from datetime import datetime, timedelta
>>> ts = [datetime(2024, 1, 1) + timedelta(minutes=5 * i) for i in range(100)]
>>> win = [(ts[40], ts[49])]
>>> hit = [i == 40 for i in range(100)]
>>> round(score_file(ts, hit, win, PROFILES["standard"]).raw, 3)
1.0
>>> late = [i == 48 for i in range(100)]
>>> round(score_file(ts, late, win, PROFILES["standard"]).raw, 3)
0.468
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

PROBATION_PERCENT = 0.15
# NAB caps the probationary period at 15% of 5000 rows, so long files do not learn for ever.
PROBATION_CAP_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """Weights of one NAB application profile."""

    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


@dataclass(slots=True)
class FileScore:
    """Raw NAB score of one file under one profile, with its detection counts."""

    raw: float = 0.0
    tp: int = 0  # windows with a detection
    fn: int = 0  # windows without one
    fp: int = 0  # detections outside every window (scored rows only)
    windows: int = 0

    def __iadd__(self, other: FileScore) -> FileScore:
        self.raw += other.raw
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        self.windows += other.windows
        return self


@dataclass(slots=True)
class CorpusScore:
    """Raw, null and perfect sums over many files; ``normalised`` puts them on NAB's 0..100 scale."""

    detector: FileScore = field(default_factory=FileScore)
    null: float = 0.0
    perfect: float = 0.0

    @property
    def normalised(self) -> float:
        """NAB's final score: 0 for the null detector, 100 for the perfect one."""
        span = self.perfect - self.null
        if span == 0.0:  # no scorable window at all: only false positives can move the score
            return 100.0 * self.detector.raw if self.detector.raw < 0 else 0.0
        return 100.0 * (self.detector.raw - self.null) / span


def scaled_sigmoid(x: float) -> float:
    """NAB's window-relative weight: 0.987 at the window's left edge (-1), 0 at its right edge."""
    if x >= 3.0:  # far behind a window: a full-cost false positive
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_rows(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows NAB leaves unscored."""
    return int(min(math.floor(percent * n_rows), percent * PROBATION_CAP_ROWS))


def window_indices(timestamps: Sequence[datetime], windows: Sequence[tuple[datetime, datetime]]
                   ) -> list[tuple[int, int]]:
    """Row index ranges ``[left, right]`` (inclusive) of each window, in time order; empty ones dropped."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        rows = [i for i, t in enumerate(timestamps) if start <= t <= end]
        if rows:
            out.append((rows[0], rows[-1]))
    return out


def score_file(timestamps: Sequence[datetime], detections: Sequence[bool],
               windows: Sequence[tuple[datetime, datetime]], profile: Profile,
               probation_percent: float = PROBATION_PERCENT) -> FileScore:
    """Raw NAB score of one file's detections under ``profile``."""
    if len(timestamps) != len(detections):
        raise ValueError("timestamps and detections differ in length")
    spans = window_indices(timestamps, windows)
    return _score_indices(len(timestamps), detections, spans, profile,
                          probation_rows(len(timestamps), probation_percent))


def _score_indices(n: int, detections: Sequence[bool], spans: list[tuple[int, int]], profile: Profile,
                   probation: int) -> FileScore:
    """Score detections against window row spans; see the module docstring for the rules."""
    max_tp = scaled_sigmoid(-1.0)
    result = FileScore()
    # A window counts only if part of it lies after the probationary period.
    scored_spans = [(lo, hi) for lo, hi in spans if hi >= probation]
    result.windows = len(scored_spans)
    for lo, hi in scored_spans:
        width = hi - lo + 1
        first = next((i for i in range(max(lo, probation), hi + 1) if detections[i]), None)
        if first is None:
            result.fn += 1
            result.raw -= profile.fn
        else:
            result.tp += 1
            result.raw += scaled_sigmoid(-(hi - first + 1) / width) * profile.tp / max_tp
    span_iter = iter(spans)
    nxt = next(span_iter, None)
    prev: tuple[int, int] | None = None
    for i in range(n):
        while nxt is not None and i > nxt[1]:
            prev, nxt = nxt, next(span_iter, None)
        if i < probation or not detections[i] or (nxt is not None and nxt[0] <= i <= nxt[1]):
            continue
        result.fp += 1
        if prev is None:
            result.raw -= profile.fp
        else:
            width = prev[1] - prev[0] + 1
            dist = abs(prev[1] - i) / (width - 1) if width > 1 else 3.0
            result.raw += scaled_sigmoid(dist) * profile.fp
    return result


def null_and_perfect(timestamps: Sequence[datetime], windows: Sequence[tuple[datetime, datetime]],
                     profile: Profile, probation_percent: float = PROBATION_PERCENT) -> tuple[float, float]:
    """Raw scores of the detector that never fires and of the one that fires on every window row."""
    n = len(timestamps)
    spans = window_indices(timestamps, windows)
    probation = probation_rows(n, probation_percent)
    inside = [False] * n
    for lo, hi in spans:
        for i in range(lo, hi + 1):
            inside[i] = True
    null = _score_indices(n, [False] * n, spans, profile, probation).raw
    perfect = _score_indices(n, inside, spans, profile, probation).raw
    return null, perfect


def parse_timestamp(text: str) -> datetime:
    """Parse NAB's ``YYYY-mm-dd HH:MM:SS[.ffffff]`` timestamps."""
    return datetime.fromisoformat(text.strip())


def parse_windows(raw: dict[str, list[list[str]]]) -> dict[str, list[tuple[datetime, datetime]]]:
    """Parse NAB's ``combined_windows.json`` content: ``category/file.csv`` -> list of ``(start, end)``."""
    return {key: [(parse_timestamp(a), parse_timestamp(b)) for a, b in spans] for key, spans in raw.items()}


def score_corpus(files: Iterable[tuple[str, Sequence[datetime], Sequence[bool],
                                      Sequence[tuple[datetime, datetime]]]],
                 profiles: Mapping[str, Profile] = PROFILES,
                 probation_percent: float = PROBATION_PERCENT) -> dict[str, dict[str, CorpusScore]]:
    """Score ``(category/file, timestamps, detections, windows)`` runs: profile -> category -> score.

    Each profile also gets a ``"total"`` entry over every file, NAB's headline number.
    """
    out: dict[str, dict[str, CorpusScore]] = {name: {} for name in profiles}
    for key, stamps, detections, windows in files:
        category = key.split("/", 1)[0]
        for name, profile in profiles.items():
            fs = score_file(stamps, detections, windows, profile, probation_percent)
            null, perfect = null_and_perfect(stamps, windows, profile, probation_percent)
            for bucket in (category, "total"):
                agg = out[name].setdefault(bucket, CorpusScore())
                agg.detector += fs
                agg.null += null
                agg.perfect += perfect
    return out


def results_score(score: float, flagged: bool, threshold: float) -> float:
    """A row's ``anomaly_score`` in NAB's results files: >= 0.5 exactly when the detector flagged it.

    Scores are rescaled piecewise-linearly so that ``threshold`` lands on 0.5; rows the detector did
    not flag although surprising (warm-up, refractory period) stay just below 0.5.

    >>> results_score(0.8, True, 0.6), results_score(0.3, False, 0.6), results_score(0.9, False, 0.6)
    (0.75, 0.25, 0.4999)
    """
    if flagged:
        return 1.0 if threshold >= 1.0 else 0.5 + 0.5 * (score - threshold) / (1.0 - threshold)
    return min(0.5 * score / threshold, 0.4999)
