"""Records: the range a value is judged against is the series' own over the last eight days, and no older."""

from __future__ import annotations

import pickle

from models.record import RecordRange

STEP = 300.0  # five-minute readings
DAY = 288


def usual(rec: RecordRange, days: float, start: int = 0) -> int:
    """Readings between 10 and 20 for ``days``; returns the next index."""
    n = int(days * DAY)
    for i in range(start, start + n):
        rec.learn(10.0 + i % 11, t=STEP * i)
    return start + n


def test_a_peak_counts_for_eight_days_then_is_forgotten() -> None:
    rec = RecordRange()
    i = usual(rec, 2)
    assert rec.log10p(40.0) < 0.0 and rec.is_high(40.0)  # beyond 10..20 by far more than a tenth of the range
    rec.learn(40.0, t=STEP * i)
    i = usual(rec, 7.5, start=i + 1)
    assert rec.log10p(40.0) == 0.0 and rec.log10p(42.0) == 0.0  # the peak 7.5 days ago is still in range
    assert rec.log10p(45.0) < 0.0  # a tenth of 10..40 beyond it
    usual(rec, 1, start=i)
    assert rec.log10p(40.0) < -3.0  # eight and a half days on, it has gone (with its block) and 40 is news again
    assert rec.log10p(9.5) == 0.0 and rec.log10p(8.0) < 0.0 and not rec.is_high(8.0)


def test_without_timestamps_the_range_spans_values_and_stays_small() -> None:
    rec = RecordRange()
    for i in range(100_000):
        rec.learn(float(i % 7))
    assert len(rec.his) == rec.blocks - 1  # bounded, however long the series
    assert rec.n_done + rec.cur_n <= 100 * rec.blocks
    assert len(pickle.dumps(rec)) < 1_000
    assert rec.log10p(6.5) == 0.0 and rec.log10p(7.0) < -3.0  # 7 is beyond 0..6 by a sixth of the range


def test_a_flat_series_has_no_range_to_be_beyond() -> None:
    rec = RecordRange()
    for i in range(DAY * 3):
        rec.learn(5.0, t=STEP * i)
    assert rec.log10p(5.0001) == 0.0 and rec.log10p(6.0) == 0.0
