"""The alert's chart drawn from a real InfluxDB through InfluxQL: the known fixture (tests/fixtures_influx.py)
holds a fridge whose temperature jumps to 12 in its last five minutes, scored anomalous."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from deploy.stack import Stack
from opsmon.settings import Settings
from streams.alert_chart import AlertCharts, ChartUnavailable, parse_series, series_query
from tests import fixtures_influx as fx

DATABASE = "opsmon_alert_chart"


def test_a_chart_is_drawn_once_per_alert_from_the_series_scores_and_bands(
        stack: Stack, stack_settings: Settings, tmp_path: Path) -> None:
    fixture = fx.build()
    url = f"http://127.0.0.1:{stack_settings.stack_influxdb_port}"
    auth = stack.influx_auth()
    fx.load(url, DATABASE, fixture, (auth.admin_user, auth.admin_password()))
    token = f"{auth.admin_user}:{auth.admin_password()}"  # the v1 /query API takes the v2 token form too
    opened = (fixture.end_ms - (fx.MINUTES - fx.SPIKE_FROM) * fx.MINUTE_MS) / 1000
    alert = {"id": f"iot:{fx.ANOMALOUS_ENTITY}:{fx.ANOMALOUS_METRIC}:{int(opened)}", "source": "iot",
             "entity": fx.ANOMALOUS_ENTITY, "metric": fx.ANOMALOUS_METRIC, "starts_at": opened, "ends_at": None}
    charts = AlertCharts(url, token, DATABASE, tmp_path / "charts")

    # what the chart shows: three hours before the alert, its flagged minutes in red
    series = parse_series(asyncio.run(charts._query(series_query(
        "iot", fx.ANOMALOUS_ENTITY, fx.ANOMALOUS_METRIC, opened - 3 * 3600, opened + 3600))))
    assert len(series.times) == fx.MINUTES and series.flagged.count(True) == 5
    assert max(series.observed) == fx.SPIKE and series.lower[0] < series.observed[0] < series.upper[0]

    png = asyncio.run(charts.png(alert))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (750, 390)
    assert charts.path(alert["id"]).read_bytes() == png and charts.rendered == 1
    assert asyncio.run(charts.png(alert)) == png and charts.rendered == 1, "rendered once, then read from disk"
    # a restarted worker finds it on disk too
    assert asyncio.run(AlertCharts(url, token, DATABASE, tmp_path / "charts").png(alert)) == png

    nothing = {**alert, "id": "iot:nowhere/x:temperature:1", "entity": "nowhere/x"}
    with pytest.raises(ChartUnavailable, match="no scored points"):
        asyncio.run(charts.png(nothing))
    with pytest.raises(ChartUnavailable, match="refused the query: database not found"):
        asyncio.run(AlertCharts(url, token, "no_such_db", tmp_path / "other").png(alert))
    with pytest.raises(ChartUnavailable, match="did not answer"):
        asyncio.run(AlertCharts("http://127.0.0.1:9", token, DATABASE, tmp_path / "other").png(alert))
    with pytest.raises(ChartUnavailable, match="answered 401"):
        asyncio.run(AlertCharts(url, "opsmon-writer:wrong", DATABASE, tmp_path / "other").png(alert))
    assert not (tmp_path / "other").exists(), "a failed chart is not cached"
