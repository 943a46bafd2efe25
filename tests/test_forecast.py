"""Tests of the demand forecaster, the stock tracker and ``opsmon eval forecast``."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models.forecast import STATE_VERSION, DemandForecaster
from models.forecast_eval import bucketize, evaluate, read_csv
from models.stock import StockTracker
from opsmon.cli.eval_forecast import forecast as forecast_command

DATA = Path(__file__).parent / "data"
DAY = 86400.0
WEEK = [0.8, 0.8, 0.9, 1.0, 1.3, 1.9, 0.3]  # Monday first: a shop busy on Friday and Saturday


def _poisson(rng: random.Random, lam: float) -> int:
    """Poisson draw by inversion (lam is small here)."""
    k, p, u = 0, math.exp(-lam), rng.random()
    cdf = p
    while u > cdf:
        k += 1
        p *= lam / k
        cdf += p
    return k


def _weekly_series(days: int, base: float, seed: int) -> list[float]:
    """Noisy Poisson demand with a weekly profile, starting on a Thursday (1970-01-01)."""
    rng = random.Random(seed)
    return [float(_poisson(rng, base * WEEK[(d + 3) % 7])) for d in range(days)]


def test_learns_weekly_pattern_and_beats_seasonal_naive() -> None:
    ys = _weekly_series(70 * 7, base=6.0, seed=1)
    f = DemandForecaster("D")
    err_model = err_snaive = 0.0
    pending = 0.0
    for d, y in enumerate(ys):
        if d >= 28:  # score one-step forecasts made before the actual was learned
            err_model += abs(y - pending)
            err_snaive += abs(y - ys[d - 7])
        f.learn_one(d * DAY, y)
        pending = f.forecast(1)[0].predicted
    assert err_model < 0.85 * err_snaive
    # The learned profile has the shape of the true one.
    profile = f.seasonal_profile
    assert profile.index(max(profile)) == 5  # Saturday
    assert profile.index(min(profile)) == 6  # Sunday
    assert profile[5] == pytest.approx(1.9 / (sum(WEEK) / 7), rel=0.2)


def test_forecast_starts_follow_the_last_bucket_in_the_callers_time_zone() -> None:
    f = DemandForecaster("h")
    start = datetime(2024, 3, 4, 9, tzinfo=UTC)
    for i in range(30):
        f.learn_one(start + timedelta(hours=i), 1.0)
    fc = f.forecast(3)
    assert [p.start for p in fc] == [start + timedelta(hours=30 + i) for i in range(3)]
    assert fc[0].start.tzinfo is UTC


def test_intervals_cover_about_their_nominal_rate() -> None:
    ys = _weekly_series(2800, base=8.0, seed=2)
    f = DemandForecaster("D", coverage=0.8)
    inside = total = 0
    due: dict[int, tuple[float, float]] = {}
    for d, y in enumerate(ys):
        if d in due and d >= 100:
            lo, hi = due.pop(d)
            inside += lo <= y <= hi
            total += 1
        f.learn_one(d * DAY, y)
        p = f.forecast(7)[6]  # 7 days ahead
        due[d + 7] = (p.lower, p.upper)
    assert 0.72 <= inside / total <= 0.9


def test_intermittent_demand_never_gives_negative_forecasts() -> None:
    rng = random.Random(3)
    f = DemandForecaster("D")
    for d in range(300):
        y = float(rng.choice([5, 8])) if rng.random() < 0.05 else 0.0
        f.learn_one(d * DAY, y)
        for p in f.forecast(14):
            assert p.predicted >= 0 and p.lower >= 0 and p.mean >= 0
            assert p.lower <= p.predicted <= p.upper
    assert max(p.mean for p in f.forecast(7)) < 2.0  # about 0.3 a day, not the spikes


def test_gap_is_learned_as_zero_sales_and_replays_are_ignored() -> None:
    a, b = DemandForecaster("D"), DemandForecaster("D")
    for d in range(20):
        a.learn_one(d * DAY, 3.0)
        b.learn_one(d * DAY, 3.0)
    a.learn_one(25 * DAY, 3.0)  # days 20-24 missing: no sales
    for d in range(20, 26):
        b.learn_one(d * DAY, 3.0 if d == 25 else 0.0)
    assert [p.mean for p in a.forecast(7)] == [p.mean for p in b.forecast(7)]
    before = a.forecast(7)
    a.learn_one(25 * DAY, 100.0)  # replayed bucket after a crash
    a.learn_one(10 * DAY, 100.0)  # late bucket
    assert a.forecast(7) == before


def test_pickle_round_trip_gives_identical_forecasts_and_small_state() -> None:
    for freq, step in (("D", DAY), ("h", 3600.0)):
        f = DemandForecaster(freq)
        for i, y in enumerate(_weekly_series(24 * 7 * 3, base=2.0, seed=4)):
            f.learn_one(i * step, y)
        blob = pickle.dumps(f)
        g = pickle.loads(blob)
        assert g.forecast(24) == f.forecast(24)
        f.learn_one(10_000 * step, 4.0)
        g.learn_one(10_000 * step, 4.0)
        assert g.forecast(24) == f.forecast(24)
        assert len(blob) < 6000
        assert g.state_version == STATE_VERSION


def test_state_of_another_version_is_refused() -> None:
    f = DemandForecaster()
    f.state_version = STATE_VERSION + 1
    with pytest.raises(ValueError, match="re-learn"):
        pickle.loads(pickle.dumps(f))


def test_new_sku_starts_from_the_store_profile() -> None:
    store = DemandForecaster("D")
    for d, y in enumerate(_weekly_series(10 * 7, base=40.0, seed=5)):
        store.learn_one(d * DAY, y)
    new = DemandForecaster.from_prior(store, level=2.0)
    new.learn_one(70 * DAY, 2.0)
    week = [p.mean for p in new.forecast(7)]
    saturday = next(i for i, p in enumerate(new.forecast(7)) if p.start.weekday() == 5)
    assert max(week) == week[saturday]
    assert sum(week) / 7 == pytest.approx(2.0, rel=0.25)
    cold = DemandForecaster("D")
    cold.learn_one(70 * DAY, 2.0)
    assert len({round(p.mean, 6) for p in cold.forecast(7)}) == 1  # no profile without a prior


def test_hourly_profile_learns_opening_hours() -> None:
    rng = random.Random(6)
    f = DemandForecaster("h")
    for i in range(24 * 7 * 6):
        hour, weekday = i % 24, (i // 24 + 3) % 7
        open_ = 9 <= hour < 18 and weekday != 6
        f.learn_one(i * 3600.0, float(_poisson(rng, 3.0)) if open_ else 0.0)
    fc = f.forecast(24 * 7)
    closed = [p.mean for p in fc if not (9 <= p.start.hour < 18) or p.start.weekday() == 6]
    opened = [p.mean for p in fc if 9 <= p.start.hour < 18 and p.start.weekday() != 6]
    assert max(closed) < 0.3
    assert sum(opened) / len(opened) == pytest.approx(3.0, rel=0.2)


def _flat_forecaster(per_day: float, days: int = 28) -> DemandForecaster:
    f = DemandForecaster("D")
    for d in range(days):
        f.learn_one(d * DAY, per_day)
    return f


def test_stock_counts_down_with_sales_and_up_with_deliveries() -> None:
    s = StockTracker()
    s.set_level(100 * DAY, 20)
    s.record_sale(100 * DAY + 60, 3)
    s.record_sale(100 * DAY + 120, 2)
    s.add_delivery(100 * DAY + 3600, 10)
    assert s.level == 25
    s.record_sale(99 * DAY, 5)  # before the count: already in it
    assert s.level == 25
    s.set_level(101 * DAY, 7)
    s.set_level(100.5 * DAY, 50)  # an older count does not win
    assert s.level == 7


def test_stock_days_to_stockout_and_at_risk() -> None:
    f = _flat_forecaster(4.0)
    s = StockTracker()
    assert not s.at_risk(lead_time_days=3)  # nothing known yet
    s.set_level(28 * DAY, 20)
    assert s.days_to_stockout(28 * DAY, f) == pytest.approx(5.0, rel=0.02)
    assert s.at_risk(lead_time_days=6)
    assert not s.at_risk(lead_time_days=3)
    # Half a day later, with the sales of that half day taken off.
    s.record_sale(28.5 * DAY, 2)
    assert s.days_to_stockout(28.5 * DAY, f) == pytest.approx(4.5, rel=0.02)
    s.set_level(29 * DAY, 0)
    assert s.days_to_stockout(29 * DAY, f) == 0.0 and s.at_risk(lead_time_days=0)
    s.set_level(30 * DAY, 10_000)
    assert s.days_to_stockout(30 * DAY, f) == math.inf and not s.at_risk(lead_time_days=14)


def test_stock_survives_pickle() -> None:
    s = StockTracker()
    s.set_level(0.0, 5)
    assert pickle.loads(pickle.dumps(s)).level == 5


def test_evaluate_is_strictly_online_and_beats_seasonal_naive() -> None:
    series = bucketize(read_csv(DATA / "retail_small.csv", "date", ["store", "sku"], "quantity"), "D")
    result = evaluate(series, freq="D", horizons=[1, 7], warmup=28, plots=2)
    fc, sn = result.scores["forecaster"], result.scores["seasonal_naive"]
    assert fc[1].mase < sn[1].mase and fc[7].mase < sn[7].mase
    assert result.series == 6 and len(result.traces) == 2
    # Naive and seasonal naive coincide at horizon 7 (both forecast y[t]).
    assert result.scores["naive"][7].mase == pytest.approx(sn[7].mase)


def test_evaluate_never_lets_a_forecast_see_its_actual() -> None:
    # White noise cannot be forecast: an honest replay stays near the noise floor, a leaky one reaches 0.
    rng = random.Random(8)
    series = {("a",): {t: float(rng.randint(0, 20)) for t in range(400)}}
    result = evaluate(series, freq="D", horizons=[1, 7], warmup=56, plots=0)
    assert result.scores["forecaster"][1].mase > 0.6
    assert result.scores["forecaster"][7].mase > 0.6


def test_eval_forecast_command_prints_table_and_writes_png(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(forecast_command)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "--csv", str(DATA / "retail_small.csv"), "--time-col", "date", "--key-cols", "store,sku",
        "--value-col", "quantity", "--freq", "D", "--horizons", "1,7", "--warmup", "28", "--out", str(out),
    ], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "MASE fc" in result.output and "sMAPE sn" in result.output
    png = out / "forecast_vs_actual.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (out / "scores.json").exists()


def test_eval_forecast_command_reports_a_missing_column(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(forecast_command)
    result = CliRunner().invoke(app, ["--csv", str(DATA / "retail_small.csv"), "--value-col", "units",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no column(s) units" in result.output


def test_eval_forecast_is_registered_in_the_opsmon_cli() -> None:
    from opsmon.cli import app

    result = CliRunner().invoke(app, ["eval", "forecast", "--help"])
    assert result.exit_code == 0 and "--key-cols" in result.output
