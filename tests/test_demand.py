"""Demand forecasts and stock-out risk in the POS pipeline, on synthetic days of sales."""

from __future__ import annotations

from streams.demand import Demand, apply_stock, stock_key
from streams.pipeline import Output, Record, SourcePipeline, WindowConfig
from streams.schemas import decode
from tests.events import iso, pos, raw

DAY = 86400.0
T0 = 1_767_225_600.0  # a Thursday, 00:00 UTC


def _run_days(days: int, aux: dict, stock_at: dict[int, float] | None = None) -> list[str]:
    p = SourcePipeline("pos", {}, WindowConfig(), [Demand(aux, lead_time_days=2.0)], aux=aux)
    lines: list[str] = []
    offset = 0
    for d in range(days):
        if stock_at and d in stock_at:
            ev = decode("stock", raw({"v": 1, "store": "s", "sku": "A", "time": iso(T0 + d * DAY), "kind": "count",
                                      "qty": stock_at[d]}), T0 + d * DAY + 1)
            assert apply_stock(aux, ev, 0, 1_000_000 + d) == stock_key("s", "A")
            assert apply_stock(aux, ev, 0, 1_000_000 + d) is None  # a replay changes nothing
        recs = []
        for k in range(4):  # four single units of A a day, and B every other day
            recs.append(raw(pos(T0 + d * DAY + 3600 * (9 + k), f"{d}-{k}", store="s", lines=(("A", 1, 2.0),))))
        if d % 2 == 0:
            recs.append(raw(pos(T0 + d * DAY + 3600 * 15, f"{d}-b", store="s", lines=(("B", 1, 5.0),))))
        out = p.process([Record(0, offset + i, b"s", r) for i, r in enumerate(recs)], now=T0 + (d + 1) * DAY)
        offset += len(recs)
        lines += out.lines
    return lines


def test_each_closed_day_writes_actuals_and_forecasts_per_sku() -> None:
    aux: dict = {}
    lines = _run_days(35, aux)
    actual_a = [ln for ln in lines if ln.startswith("forecast,bucket=day,sku=A,store=s actual=")]
    assert len(actual_a) == 34 and all(" actual=4.0 " in ln for ln in actual_a)  # the last day is still open
    actual_b = [ln for ln in lines if ln.startswith("forecast,bucket=day,sku=B,store=s actual=")]
    assert [ln.split()[1] for ln in actual_b[:4]] == ["actual=1.0", "actual=0.0", "actual=1.0", "actual=0.0"]
    f = aux["s/A@day"]
    mean = f.forecast(1)[0]
    lo, _, hi = f.forecast_quantiles(1)[0]
    assert 3.0 <= mean <= 5.0 and lo <= 4.0 <= hi
    hourly = [ln for ln in lines if ln.startswith("forecast,bucket=hour,sku=_total,store=s actual=")]
    assert hourly and sum(float(ln.split()[1].split("=")[1]) for ln in hourly) >= 34 * 4


def test_stock_counts_and_sales_give_days_to_stockout_and_risk() -> None:
    aux: dict = {}
    lines = _run_days(33, aux, stock_at={30: 14.0})
    risk = [ln for ln in lines if ln.startswith("stock_risk,sku=A,store=s ")]
    # Counted 14 at the start of day 30. A day closes when the next day's first sale (09:00) is final, so
    # each estimate already counts that sale: 13 left (3.25 days at 4 a day), then 9, then 5. The reorder
    # point is the 90% quantile of the 2-day lead time's demand: 8 expected, 12 with its Poisson margin, so
    # 9 left is already a risk although the expected demand would not use it up.
    assert [ln.split()[1] for ln in risk] == [
        "stock=13.0,days_to_stockout=3.25,reorder_point=12.0,at_risk=0.0",
        "stock=9.0,days_to_stockout=2.25,reorder_point=12.0,at_risk=1.0",
        "stock=5.0,days_to_stockout=1.25,reorder_point=12.0,at_risk=1.0"]


def test_a_count_shows_its_stock_out_risk_at_once_once_the_sku_is_forecast() -> None:
    aux: dict = {}
    _run_days(30, aux)  # A and B are forecast by day; C never sold
    demand, out = Demand(aux, lead_time_days=2.0), Output()
    for sku, qty in (("A", 6.0), ("C", 50.0)):
        ev = decode("stock", raw({"v": 1, "store": "s", "sku": sku, "time": iso(T0 + 30 * DAY + 600), "kind": "count",
                                  "qty": qty}), T0 + 30 * DAY + 601)
        apply_stock(aux, ev, 0, 2_000_000)
        demand.on_stock("s", sku, ev.ts, out)
    # 6 on hand at 4 a day: a day and a half, below the lead time's reorder point; C has no forecast to judge by
    assert [ln.split()[0] + " " + ln.split()[1] for ln in out.lines] == [
        "stock_risk,sku=A,store=s stock=6.0,days_to_stockout=1.5,reorder_point=12.0,at_risk=1.0"]


def test_a_river_forecaster_from_opsmon_forecasters_serves_the_skus_it_names() -> None:
    # OPSMON_FORECASTERS sends SKU A of store s to River's HoltWinters; B keeps opsmon's forecaster.
    from models.error_quantiles import ErrorQuantiles
    from models.forecast import DemandForecaster
    from models.river_spec import ModelSpecs

    specs = ModelSpecs.parse({"pos:s/A:units": "holt-winters"}, forecasters=True)
    aux: dict = {}
    p = SourcePipeline("pos", {}, WindowConfig(), [Demand(aux, lead_time_days=2.0, forecasters=specs)], aux=aux)
    lines: list[str] = []
    for d in range(30):
        recs = [raw(pos(T0 + d * DAY + 3600 * (9 + k), f"{d}-{k}", store="s", lines=(("A", 1 + d % 7, 2.0),)))
                for k in range(3)]
        recs.append(raw(pos(T0 + d * DAY + 3600 * 15, f"{d}-b", store="s", lines=(("B", 1, 5.0),))))
        lines += p.process([Record(0, d * 10 + i, b"s", r) for i, r in enumerate(recs)], now=T0 + (d + 1) * DAY).lines
    assert isinstance(aux["s/A@day"], ErrorQuantiles) and isinstance(aux["s/B@day"], DemandForecaster)
    assert isinstance(aux["s/_total@hour"], DemandForecaster)  # the pattern names no hourly total
    forecasts = [ln for ln in lines if ln.startswith("forecast,bucket=day,sku=A,store=s predicted=")]
    assert forecasts, "HoltWinters' forecasts are written like opsmon's"
    last = forecasts[-1].split()[1]
    fields = dict(kv.split("=") for kv in last.split(","))
    # its interval is learned from its own errors on a weekly pattern, and demand is never negative
    assert 0.0 <= float(fields["lower"]) <= float(fields["median"]) <= float(fields["upper"])
    assert float(fields["upper"]) > float(fields["lower"])


def test_a_river_forecaster_pickled_by_another_version_relearns_instead_of_failing() -> None:
    import pickle

    from models import error_quantiles
    from models.river_spec import FORECASTER_CLASSES, FORECASTER_PRESETS, parse_expression

    f = error_quantiles.ErrorQuantiles(parse_expression(FORECASTER_PRESETS["holt-winters"], FORECASTER_CLASSES, "t"),
                                       max_horizon=7, spec="holt-winters")
    for day in range(30):
        f.learn_one(float(day % 7), {"t": day * DAY})
    same = pickle.loads(pickle.dumps(f))
    assert same.last == f.last and same.forecast(3) == f.forecast(3) and same.relearned_from is None
    state = f.__getstate__()
    state["river_version"] = "0.0.1"  # as if an older river had pickled it
    other = error_quantiles.ErrorQuantiles.__new__(error_quantiles.ErrorQuantiles)
    other.__setstate__(state)
    assert other.relearned_from == (error_quantiles.STATE_VERSION, "0.0.1")
    assert other.last is None and other.spec == "holt-winters" and other.max_horizon == 7


def test_the_wrapper_passes_rivers_estimator_checks() -> None:
    from river import checks, time_series

    from models.error_quantiles import ErrorQuantiles

    wrapped = ErrorQuantiles(time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=7))
    checks.check_estimator(wrapped)
    assert isinstance(wrapped, time_series.base.Forecaster) and wrapped.clone().last is None
