"""Tests of the demand forecaster, the stock tracker and ``opsmon eval forecast``."""

from __future__ import annotations

import json
import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models.forecast import STATE_VERSION, DemandForecaster, _nb_quantiles
from models.forecast_eval import ANCHORS, EvalInputError, bucketize, evaluate, read_csv
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
        f.learn_one(y, {"t": d * DAY})
        pending = f.forecast(1)[0]
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
        f.learn_one(1.0, {"t": start + timedelta(hours=i)})
    starts = f.starts(3)
    assert starts == [start + timedelta(hours=30 + i) for i in range(3)]
    assert starts[0].tzinfo is UTC


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
        f.learn_one(y, {"t": d * DAY})
        lo, _, hi = f.forecast_quantiles(7)[6]  # 7 days ahead
        due[d + 7] = (lo, hi)
    assert 0.72 <= inside / total <= 0.9


def test_intermittent_demand_never_gives_negative_forecasts() -> None:
    rng = random.Random(3)
    f = DemandForecaster("D")
    for d in range(300):
        y = float(rng.choice([5, 8])) if rng.random() < 0.05 else 0.0
        f.learn_one(y, {"t": d * DAY})
        for mean, (lo, median, hi) in zip(f.forecast(14), f.forecast_quantiles(14), strict=True):
            assert mean >= 0 and lo >= 0
            assert lo <= median <= hi
    assert max(f.forecast(7)) < 2.0  # about 0.3 a day, not the spikes


def test_gap_is_learned_as_zero_sales_and_replays_are_ignored() -> None:
    a, b = DemandForecaster("D"), DemandForecaster("D")
    for d in range(20):
        a.learn_one(3.0, {"t": d * DAY})
        b.learn_one(3.0, {"t": d * DAY})
    a.learn_one(3.0, {"t": 25 * DAY})  # days 20-24 missing: no sales
    for d in range(20, 26):
        b.learn_one(3.0 if d == 25 else 0.0, {"t": d * DAY})
    assert a.forecast(7) == b.forecast(7)
    before = a.forecast(7)
    a.learn_one(100.0, {"t": 25 * DAY})  # replayed bucket after a crash
    a.learn_one(100.0, {"t": 10 * DAY})  # late bucket
    assert a.forecast(7) == before


def test_pickle_round_trip_gives_identical_forecasts_and_small_state() -> None:
    for freq, step in (("D", DAY), ("h", 3600.0)):
        f = DemandForecaster(freq)
        for i, y in enumerate(_weekly_series(24 * 7 * 3, base=2.0, seed=4)):
            f.learn_one(y, {"t": i * step})
        blob = pickle.dumps(f)
        g = pickle.loads(blob)
        assert g.forecast(24) == f.forecast(24)
        f.learn_one(4.0, {"t": 10_000 * step})
        g.learn_one(4.0, {"t": 10_000 * step})
        assert g.forecast(24) == f.forecast(24)
        assert len(blob) < 6000
        assert g.relearned_from is None


def test_state_of_another_version_is_relearned_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    f = DemandForecaster("D", alphas=(0.1, 0.3), max_horizon=14)
    for d, y in enumerate(_weekly_series(70, base=5.0, seed=9)):
        f.learn_one(y, {"t": d * DAY})
    blob = pickle.dumps(f)
    assert pickle.loads(blob).n == 70  # same versions: the learned state comes back
    # The pickle records both versions; change one of them, as an upgrade would.
    for field_name, other in (("state_version", STATE_VERSION + 1), ("river_version", "0.0.1")):
        state = f.__getstate__()
        state[field_name] = other
        g = DemandForecaster.__new__(DemandForecaster)
        with caplog.at_level("WARNING", logger="models.forecast"):
            g.__setstate__(state)
        assert "learning restarts" in caplog.text
        assert g.n == 0 and g.last is None and g.forecast(3) == [0.0, 0.0, 0.0]
        assert (g.alphas, g.max_horizon) == ((0.1, 0.3), 14)  # same parameters
        g.learn_one(4.0, {"t": 80 * DAY})  # and it learns again
        assert g.n == 1
    assert g.relearned_from == STATE_VERSION


def test_it_is_a_river_forecaster_that_passes_rivers_checks() -> None:
    from river import checks, time_series

    for params in DemandForecaster._unit_test_params():
        model = DemandForecaster(**params)
        assert isinstance(model, time_series.base.Forecaster)
        checks.check_estimator(model)
    f = DemandForecaster("D", gamma=0.2)
    assert f._get_params()["gamma"] == 0.2 and "gamma=0.2" in repr(f)
    for d in range(10):
        f.learn_one(3.0, {"t": d * DAY})
    g = f.clone()
    assert g.gamma == 0.2 and g.n == 0 and f.n == 10  # clone: same parameters, nothing learned
    # Without a time in x, each call learns the bucket after the last one.
    f.learn_one(3.0)
    assert f.last == 10


def test_bad_input_gets_a_clear_error() -> None:
    with pytest.raises(ValueError, match="freq must be"):
        DemandForecaster("W")  # type: ignore[arg-type]
    f = DemandForecaster()
    with pytest.raises(ValueError, match="finite"):
        f.learn_one(math.nan, {"t": 0.0})
    with pytest.raises(TypeError, match="x\\['t'\\]"):
        f.learn_one(1.0, {"t": "2024-01-01"})
    with pytest.raises(ValueError, match="between 0 and 1"):
        f.forecast_quantiles(1, qs=(0.5, 1.5))


def test_new_sku_starts_from_the_store_profile() -> None:
    store = DemandForecaster("D")
    for d, y in enumerate(_weekly_series(10 * 7, base=40.0, seed=5)):
        store.learn_one(y, {"t": d * DAY})
    new = DemandForecaster.from_prior(store, level=2.0)
    new.learn_one(2.0, {"t": 70 * DAY})
    week = new.forecast(7)
    saturday = next(i for i, start in enumerate(new.starts(7)) if start.weekday() == 5)
    assert max(week) == week[saturday]
    assert sum(week) / 7 == pytest.approx(2.0, rel=0.25)
    cold = DemandForecaster("D")
    cold.learn_one(2.0, {"t": 70 * DAY})
    assert len({round(y, 6) for y in cold.forecast(7)}) == 1  # no profile without a prior


def test_hourly_profile_learns_opening_hours() -> None:
    rng = random.Random(6)
    f = DemandForecaster("h")
    for i in range(24 * 7 * 6):
        hour, weekday = i % 24, (i // 24 + 3) % 7
        open_ = 9 <= hour < 18 and weekday != 6
        f.learn_one(float(_poisson(rng, 3.0)) if open_ else 0.0, {"t": i * 3600.0})
    fc = list(zip(f.starts(24 * 7), f.forecast(24 * 7), strict=True))
    closed = [y for start, y in fc if not (9 <= start.hour < 18) or start.weekday() == 6]
    opened = [y for start, y in fc if 9 <= start.hour < 18 and start.weekday() != 6]
    assert max(closed) < 0.3
    assert sum(opened) / len(opened) == pytest.approx(3.0, rel=0.2)


def _flat_forecaster(per_day: float, days: int = 28) -> DemandForecaster:
    f = DemandForecaster("D")
    for d in range(days):
        f.learn_one(per_day, {"t": d * DAY})
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


class _Constant:
    """A forecaster that always says ``c`` (quantiles c-1, c, c+1): errors are easy to work out by hand."""

    def __init__(self, c: float) -> None:
        self.c = c

    def learn_one(self, y: float, x: dict | None = None) -> None:
        pass

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        return [self.c] * horizon

    def forecast_quantiles(self, horizon: int, qs: object = None, xs: object = None) -> list[tuple[float, ...]]:
        return [(self.c - 1, self.c, self.c + 1)] * horizon


def test_evaluate_scales_each_origin_by_the_history_so_far() -> None:
    # Sales start on day 3; y alternates 0, 2 so |y_t - y_t-1| = 2 and (y_t - y_t-1)^2 = 4 at every origin.
    ys = [0.0, 0.0, 0.0] + [2.0 if i % 2 == 0 else 0.0 for i in range(40)]
    series = {("a",): dict(enumerate(ys))}
    result = evaluate(series, horizons=[1, 2], origins=3, origin_every=2, min_history=10,
                      make_forecaster=lambda: _Constant(1.0))
    s = result.method("opsmon").scores
    # Every error is 1 against the constant 1: RMSSE = sqrt(1/4), MASE = 1/2.
    assert s[1].rmsse == pytest.approx(0.5) and s[1].mase == pytest.approx(0.5)
    # The h=1 targets (days 37, 39, 41) all sold 2: pinball at q=0.1 of the lower quantile 0 is 0.1 * 2,
    # at q=0.9 of the upper quantile 2 it is 0; scaled by 2.
    assert s[1].spl is not None and s[1].spl[0.1] == pytest.approx(0.1) and s[1].spl[0.9] == 0.0
    assert s[1].coverage == 1.0  # 0 and 2 are inside [0, 2]
    assert result.series_scored == 1 and result.targets == 3


def test_evaluate_counts_series_it_cannot_score() -> None:
    series = {
        ("flat",): {t: 3.0 for t in range(100)},  # a flat history has no scale
        ("never",): {t: 0.0 for t in range(100)},  # never sold
        ("late",): {95: 1.0},  # first sale too late for any origin
        ("ok",): {t: float(t % 7) for t in range(100)},
    }
    result = evaluate(series, horizons=[1, 7], origins=4)
    assert result.series == 4 and result.series_scored == 1 and result.series_unscored == 3
    assert result.origins_without_scale == 4  # the flat series at each of the 4 origins
    with pytest.raises(EvalInputError, match="fewer origins"):
        evaluate(series, horizons=[1], origins=50)


def test_evaluate_never_lets_a_forecast_see_its_actual() -> None:
    # White noise cannot be forecast: an honest replay stays near the noise floor, a leaky one reaches 0.
    rng = random.Random(8)
    series = {("a",): {t: float(rng.randint(1, 20)) for t in range(400)}}
    result = evaluate(series, horizons=[1, 7], origins=40)
    assert result.method("opsmon").scores[1].rmsse > 0.5
    assert result.method("opsmon").scores[7].rmsse > 0.5


def test_evaluate_runs_rivers_forecasters_and_statsforecasts_anchors() -> None:
    series = bucketize(read_csv(DATA / "retail_small.csv", "date", ["store", "sku"], "quantity"), "D")
    result = evaluate(series, horizons=[1, 7], origins=3, compare=True, anchors=True)
    names = [m.name for m in result.methods]
    assert names == ["opsmon", "river.HoltWinters", "river.SNARIMAX", "seasonal_naive", *ANCHORS]
    for m in result.methods:
        assert all(math.isfinite(m.scores[h].rmsse) for h in (1, 7)), m.name
    # statsforecast's seasonal naive is the built-in one, fitted anew: the same forecasts.
    assert result.method("SeasonalNaive").scores[7].rmsse == pytest.approx(
        result.method("seasonal_naive").scores[7].rmsse)
    assert result.method("AutoETS").scores[1].spl is not None and result.method("TSB").scores[1].spl is None
    assert result.method("AutoETS").kind == "refit" and result.method("opsmon").kind == "online"
    assert result.series_scored == 6


def test_eval_forecast_command_prints_table_and_writes_png(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(forecast_command)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "--csv", str(DATA / "retail_small.csv"), "--time-col", "date", "--key-cols", "store,sku",
        "--value-col", "quantity", "--freq", "D", "--horizons", "1,7", "--origins", "4", "--compare",
        "--out", str(out),
    ], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "RMSSE" in result.output and "SPL q=0.1" in result.output and "river.HoltWinters" in result.output
    assert "6 scored, 0 never scored" in result.output
    png = out / "forecast_scores.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (out / "scores.json").exists()


def test_eval_forecast_command_runs_a_river_expression_and_refuses_a_bad_one(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(forecast_command)
    args = ["--csv", str(DATA / "retail_small.csv"), "--horizons", "1,7", "--origins", "3", "--out", str(tmp_path)]
    expr = "time_series.SNARIMAX(p=2, d=1, q=1, m=7)"
    result = CliRunner().invoke(app, [*args, "--model", expr, "--model", "opsmon"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert list(scores["methods"]) == ["opsmon", expr, "seasonal_naive"]
    assert math.isfinite(scores["methods"][expr]["scores"]["7"]["rmsse"])
    bad = CliRunner().invoke(app, [*args, "--model", "__import__('os').system('true')"])
    assert bad.exit_code == 2 and "are allowed, not" in bad.output


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
    assert result.exit_code == 0 and "--anchors" in result.output


def test_intermittent_item_gets_its_mean_and_zero_low_quantiles() -> None:
    # Sells on 20% of days, 1 to 5 units when it does: expected demand 0.2 x 3 = 0.6 a day.
    rng = random.Random(11)
    f = DemandForecaster("D")
    forecasts: list[float] = []
    actuals: list[float] = []
    pending = 0.0
    for d in range(600):
        y = float(rng.randint(1, 5)) if rng.random() < 0.2 else 0.0
        if d > 200:
            actuals.append(y)
            forecasts.append(pending)
        f.learn_one(y, {"t": d * DAY})
        pending = f.forecast(1)[0]
    # On average the forecast is the mean (not the median, which is 0): its errors have no bias.
    assert sum(forecasts) / len(forecasts) == pytest.approx(sum(actuals) / len(actuals), rel=0.1)
    for lo, median, hi in f.forecast_quantiles(7, qs=(0.1, 0.5, 0.9)):
        assert lo == 0.0 and median == 0.0  # most days sell nothing
        assert 1.0 <= hi <= 5.0 and hi == int(hi)  # whole units


def test_negative_binomial_quantiles_match_the_distribution() -> None:
    def nb_cdf(n: int, mean: float, var: float) -> float:
        p = mean / var
        r = mean * p / (1 - p)
        return sum(math.exp(math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(p)
                            + k * math.log(1 - p)) for k in range(n + 1))

    for mean, var in ((0.3, 0.5), (2.0, 5.0), (12.0, 60.0), (30.0, 100.0)):
        for tau, q in zip((0.1, 0.5, 0.9), _nb_quantiles(mean, var, (0.1, 0.5, 0.9)), strict=True):
            n = int(q)
            assert nb_cdf(n, mean, var) >= tau and (n == 0 or nb_cdf(n - 1, mean, var) < tau)
    # Large counts: the gamma approximation is close to the normal one when the shape is large.
    lo, hi = _nb_quantiles(1000.0, 1000.0, (0.1, 0.9))
    assert lo == pytest.approx(1000 - 1.2816 * math.sqrt(1000), abs=1.5)
    assert hi == pytest.approx(1000 + 1.2816 * math.sqrt(1000), abs=1.5)
    assert _nb_quantiles(0.0, 0.0, (0.5, 0.9)) == (0.0, 0.0)


def test_bank_of_levels_follows_a_step_change_faster_than_its_slowest_level() -> None:
    rng = random.Random(12)
    f = DemandForecaster("D")
    for d in range(300):
        f.learn_one(float(_poisson(rng, 5.0 if d < 270 else 15.0)), {"t": d * DAY})
    assert sum(f.forecast(7)) / 7 == pytest.approx(15.0, rel=0.2)
    slowest = f.levels[0]  # the alpha=0.02 level on its own is still far behind
    assert slowest < 11.0
    weights = f._weights(0)
    assert weights[-1] > weights[0]  # the fast levels carry the one-step forecast now


def test_lead_time_total_adds_means_and_widens_with_shared_level_error() -> None:
    f = DemandForecaster("D")
    for d, y in enumerate(_weekly_series(200, base=6.0, seed=13)):
        f.learn_one(y, {"t": d * DAY})
    lo, mid, hi = f.total_quantiles(5, (0.1, 0.5, 0.9))
    total = sum(f.forecast(5))
    per_bucket_hi = sum(q[2] for q in f.forecast_quantiles(5, (0.1, 0.5, 0.9)))
    assert lo < total < hi and abs(mid - total) < 0.1 * total
    assert hi <= per_bucket_hi + 1.0  # no wider than if every bucket were at its own 90% quantile
    assert f.total_quantiles(0, (0.9,)) == (0.0,)
