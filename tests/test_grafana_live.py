"""Grafana's query rendering without Grafana (deploy/grafana/live.py) and the tests' series selectors."""

from __future__ import annotations

import pytest

from deploy.grafana.live import TimeRange, board_dicts, duration_ms, substitute
from tests.tsdb import parse_selector


def test_durations_and_time_ranges() -> None:
    assert duration_ms("6h") == duration_ms("-6h") == duration_ms("now-6h") == 6 * 3_600_000
    assert duration_ms("30m") == 1_800_000 and duration_ms("2d") == 172_800_000
    with pytest.raises(ValueError, match="not a duration: '6'"):
        duration_ms("6")
    span = TimeRange.last("-6h", end_ms=36_000_000)
    assert (span.start_ms, span.end_ms) == (14_400_000, 36_000_000)
    assert span.time_filter() == "time >= 14400000ms and time <= 36000000ms"
    assert span.time_filter("1h") == "time >= 32400000ms and time <= 36000000ms"
    assert span.interval() == "1m"  # 6 h over 1000 points is 22 s: at least the datasource's minute
    assert TimeRange.last("2d", end_ms=10**12).interval() == "2m"  # 173 s, in whole minutes


def test_substitute_renders_variables_like_grafana() -> None:
    q = 'SELECT sum("revenue") FROM "pos_window" WHERE "store" =~ /^$store$/ AND $timeFilter ' \
        'GROUP BY time($__interval), "store"'
    out = substitute(q, {"store": ["store-a", "b.c"]}, "time >= 0ms", "5m")
    assert out == ('SELECT sum("revenue") FROM "pos_window" WHERE "store" =~ /^(store-a|b\\.c)$/ AND time >= 0ms '
                   'GROUP BY time(5m), "store"')
    assert substitute("SELECT $col FROM x WHERE $timeFilter", {"col": ["hour"]}, "t") == "SELECT hour FROM x WHERE t"
    with pytest.raises(ValueError, match=r"unsubstituted \$site"):
        substitute("SELECT * FROM x WHERE site = '$site'", {}, "t")
    with pytest.raises(ValueError, match="multi-valued outside a regex"):
        substitute("SELECT * FROM x WHERE s = '$s'", {"s": ["a", "b"]}, "t")


def test_board_dicts_pick_by_name_and_refuse_unknown_boards() -> None:
    assert [b["uid"] for b in board_dicts("sales")] == ["opsmon-sales"]
    assert len(board_dicts()) == 5
    with pytest.raises(ValueError, match="no board 'nope'; boards: overview, iot, sales, web, pipeline"):
        board_dicts("nope")


def test_series_selectors() -> None:
    assert parse_selector('iot_reading_power{site="a",device=~"d.*"}') == (
        [("__name__", "=", "iot_reading_power")], [("site", "=", "a"), ("device", "=~", "d.*")])
    assert parse_selector('{__name__=~"a_.*|b_c", x!="y"}') == ([("__name__", "=~", "a_.*|b_c")], [("x", "!=", "y")])
    with pytest.raises(ValueError, match="names no metric"):
        parse_selector('{site="a"}')
    with pytest.raises(ValueError, match="cannot read the matchers"):
        parse_selector("x{site=a}")
