"""What the pipeline writes is what the boards read: simulated hours through a real worker into the real
InfluxDB, then every panel, variable, annotation and alert-rule query of the five boards run against it,
key figures compared with the events sent, and the boards rendered to PNG with every panel drawing data."""

from __future__ import annotations

import math
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from deploy.grafana import rules
from deploy.grafana.boards.common import UID_PIPELINE as PIPELINE
from deploy.grafana.live import BoardRun, InfluxQLClient, Series, TimeRange, board_dicts, substitute
from deploy.influxdb import provision
from deploy.stack import Stack
from opsmon.cli.boards import render_boards
from opsmon.feedback import send_feedback
from opsmon.settings import Settings
from opsmon.simulator import Simulator, replay
from streams.app import alert_states
from streams.publisher import Publisher
from streams.schemas import PosTransaction, StockEvent, decode, decode_alert, encode
from streams.topics import create_topics
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess, read_topic
from tests.tsdb import eventually

HOURS = 4
DAY = 86_400
DATABASE = "opsmon_boards"  # the boards read a database of this run alone: the figures are its events'
BAD_MESSAGES = (b"{not json", b'{"v":1,"site":"x"}')


@dataclass
class Sent:
    """What the simulator sent, as the boards should show it."""

    start: float
    end: float
    revenue: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # store -> net revenue
    sales: Counter = field(default_factory=Counter)  # store -> sales
    devices_last_5m: set[tuple[str, str]] = field(default_factory=set)
    events: Counter = field(default_factory=Counter)
    last_iot: Any = None

    def add(self, source: str, value: bytes) -> object:
        """Fold one sent event in; the decoded event."""
        ev = decode(source, value, now=math.inf)
        self.events[source] += 1
        if isinstance(ev, PosTransaction) and ev.kind != "void":
            self.revenue[ev.store] += ev.total if ev.kind == "sale" else -ev.total
            self.sales[ev.store] += ev.kind == "sale"
        elif source == "iot":
            self.last_iot = ev
            if ev.time.timestamp() >= self.end - 300:
                self.devices_last_5m.add((ev.site, ev.device))
        return ev


@dataclass
class Run:
    """The simulated run: settings, what was sent, the database the boards read, the alerts the worker raised."""

    settings: Settings
    sent: Sent
    db: InfluxQLClient
    span: TimeRange
    alerts: list = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _revenue_per_store(db: InfluxQLClient) -> dict[str, float]:
    series = db.query('SELECT sum("revenue") FROM "pos_window" GROUP BY "store"')
    return {s.tags["store"]: round(float(s.values[0][1]), 2) for s in series}


def _window(now: float) -> tuple[float, float]:
    """Simulated hours that cross a UTC midnight (day buckets close: day forecasts, stock-out risk), in the past."""
    midnight = now // DAY * DAY
    if now - midnight < 2 * 3600:  # the sim must end well before now
        midnight -= DAY
    return midnight - (HOURS - 1) * 3600, midnight + 3600


@pytest.fixture(scope="module")
def run(stack: Stack, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Simulated hours (backfilled as fast as the worker takes them) in a database of their own."""
    tmp = tmp_path_factory.mktemp("boards-live")
    name = f"boards-live-{int(time.time())}"
    start, end = _window(time.time())
    sim = Simulator(seed=11, sites=2, devices_per_site=3, stores=2, skus=20, web_sites=1, rate=2.0,
                    hours="mon-sun 24h", faults_per_hour=1.0)
    settings = stack_settings.model_copy(update={
        "app_id": f"opsmon-{name}", "influx_bucket": DATABASE,
        "topic_iot": f"{name}.iot", "topic_pos": f"{name}.pos", "topic_web": f"{name}.web",
        "topic_stock": f"{name}.stock", "topic_alerts": f"{name}.alerts", "topic_feedback": f"{name}.feedback",
        "worker_web_port": _free_port(), "data_dir": tmp / "worker", "idle_close_seconds": 2.0,
        "feedback_token": SecretStr("boards-live-feedback"), "limits": sim.limits()})
    settings.__dict__.pop("dlq_topics", None)  # a cached property of the copied settings
    base = stack.status()["influxdb"].endpoint
    provision(base, stack.influx_auth(), DATABASE)  # the stack made only its own database
    create_topics(settings)
    sent = Sent(start, end)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    user, _, password = settings.influx_token.get_secret_value().partition(":")
    db = InfluxQLClient(base, DATABASE, (user, password))
    counted: set[tuple[str, str]] = set()
    try:
        with Publisher(settings) as pub:
            for bad in BAD_MESSAGES:
                pub.send_raw("iot", b"bad", bad)

            def send(source: str, key: bytes, value: bytes) -> None:
                ev = sent.add(source, value)
                if isinstance(ev, PosTransaction):  # a stock count before an item first sells: stock-out risk
                    for ln in ev.lines:
                        if (ev.store, ln.sku) not in counted:
                            counted.add((ev.store, ln.sku))
                            stock = StockEvent(v=1, time=ev.time, store=ev.store, sku=ln.sku, kind="count", qty=40.0)
                            pub.send_to(settings.topic_stock, ev.store, encode(stock))
                pub.send_raw(source, key, value)

            replay(sim, send, mode="backfill", start=start, end=end)
            # One reading 20 minutes behind its device's stream: late, but within the correction period.
            last = sent.last_iot
            pub.send_raw("iot", f"{last.site}/{last.device}", raw(iot(end - 1200.5, last.site, last.device,
                                                                      **last.measurements)))
        expected = {store: round(v, 2) for store, v in sent.revenue.items()}
        got = eventually(lambda: _revenue_per_store(db), lambda r: r == expected, timeout=120, every=2.0)
        assert got == expected, f"revenue per store in InfluxDB {got} != sent {expected}\n{worker.log_tail()}"
        alerts = [decode_alert(r.value) for r in read_topic(settings, settings.topic_alerts, expect=10**9, timeout=5)]
        firing = [a for a in alerts if a.status == "firing"]
        # Staff answer two alerts (the pipeline board's feedback and precision panels read their answers).
        for alert, kind in zip(firing, ("ack", "false_positive"), strict=False):
            assert send_feedback(settings, alert.id, kind, user="test").status_code == 202
        answered = min(2, len(firing))
        eventually(lambda: db.query('SELECT count("count") FROM "feedback"'),
                   lambda r: bool(r) and r[0].values[0][1] >= answered, timeout=30)
        # The pipeline board's rates are differences between minutes of the worker's counters: two minutes.
        eventually(lambda: db.query('SELECT last("events") FROM "opsmon_pipeline" WHERE time > now() - 15m '
                                    'GROUP BY time(1m) fill(none)'),
                   lambda r: bool(r) and len(r[0].values) >= 3, timeout=150, every=5.0)
        yield Run(settings, sent, db, TimeRange(int(start * 1000), int(end * 1000)), alerts)
    finally:
        worker.stop()
        db.close()


def _span(run: Run, board_uid: str) -> TimeRange:
    """The simulated hours; for the pipeline board up to now, as it shows both the models' scores (event time)
    and the worker's own counters and the staff's feedback (stamped with the wall clock)."""
    return TimeRange(run.span.start_ms, int(time.time() * 1000)) if board_uid == PIPELINE else run.span


def _open_alerts(run: Run, until_ms: int) -> set[tuple[str, str, str, str]]:
    """Per identity the latest state the topic's alert events give it that is firing, of the points the worker
    writes for them (``alert_states``) no later than ``until_ms``: what a board ending then shows (it reads the
    latest point).

    The topic is read now, not when the run was set up, and filtered: alerts go on after the stream ends (its
    devices fall silent two minutes later, while the fixture waits for the pipeline board's minutes), at times
    after the simulated hours the boards show.
    """
    s = run.settings
    latest: dict[tuple[str, str, str, str], str] = {}
    for a in [decode_alert(r.value) for r in read_topic(s, s.topic_alerts, expect=10**9, timeout=5)]:
        for severity, status, t_ms in alert_states(a):
            if t_ms <= until_ms:
                latest[(a.source, a.entity, a.metric, severity)] = status
    return {k for k, status in latest.items() if status == "firing"}


def _settled(run: Run, until_ms: int, board_shows_open: Callable[[], bool]) -> tuple[bool, bool]:
    """(whether a board shows open alerts, whether the topic has alerts open at ``until_ms``), asked again until
    the two agree or a minute passes.

    A silence alert is stamped with its device's last reading, inside the simulated hours, but fires whenever the
    worker's tick finds the device silent, which can be at any moment of the tests; the worker writes its point
    just after it puts it on the topic. So a board read once can be a step behind the topic read after it.
    """
    return eventually(lambda: (board_shows_open(), bool(_open_alerts(run, until_ms))), lambda r: r[0] == r[1],
                      timeout=60, every=3.0)


def _boards(run: Run) -> list[BoardRun]:
    return [BoardRun(run.db, b, _span(run, b["uid"])) for b in board_dicts()]


def _has_data(series: list[Series]) -> bool:
    return any(s.numbers() for s in series) or any(s.values for s in series)


def test_every_variable_panel_and_annotation_query_returns_data(run: Run) -> None:
    empty: list[str] = []
    checked = 0
    for board in _boards(run):
        for name, values in board.variables.items():
            checked += 1
            if not values:
                empty.append(f"{board.board['uid']} variable ${name}")
        for panel in board.panels():
            for ref, series in board.panel_results(panel).items():
                checked += 1
                if not _has_data(series):
                    empty.append(f"{board.board['uid']} / {panel['title']} / {ref}")
        for name, series in board.annotations().items():
            checked += 1
            # Each annotation row needs the columns Grafana reads for its text and tags.
            assert all({"metric", "entity"} <= set(s.columns) for s in series), name
    assert checked > 60
    open_table = "opsmon-overview / Alerts open now / A"
    if open_table in empty:
        overview = next(b for b in _boards(run) if b.board["uid"] == "opsmon-overview")
        table = next(p for p in overview.panels() if p["title"] == "Alerts open now")
        shown, open_then = _settled(run, run.span.end_ms, lambda: _has_data(
            next(iter(overview.panel_results(table).values()))))
        assert shown == open_then, f"the table shows rows: {shown}; alerts open at the board's end: {open_then}"
        empty.remove(open_table)  # it shows rows now when any was open then, and is rightly empty when none was
    assert not empty, f"queries without data: {empty}"


def test_every_alert_rule_query_runs_and_names_its_instances(run: Run) -> None:
    for spec in rules.specs():
        end = _span(run, spec.dashboard_uid).end_ms
        series = run.db.query(substitute(spec.query, {}, f"time >= {end - spec.lookback_s * 1000}ms and "
                                                         f"time <= {end}ms"))
        assert series, f"{spec.uid}: no data, every instance would be NoData"
        for s in series:
            assert s.tags and all(s.tags.values()), f"{spec.uid}: an instance without its identity: {s}"
            assert len(s.columns) == 2 and s.columns[0] == "time", f"{spec.uid}: one value column: {s.columns}"


def test_board_figures_agree_with_the_events_sent(run: Run) -> None:
    boards = {b.board["uid"]: b for b in _boards(run)}
    sales, overview = boards["opsmon-sales"], boards["opsmon-overview"]

    def panel(board: BoardRun, title: str) -> list[Series]:
        chosen = next(p for p in board.panels() if p["title"] == title)
        return next(iter(board.panel_results(chosen).values()))

    assert sorted(sales.variables["store"]) == sorted(run.sent.revenue)
    per_store = {s.tags["store"]: sum(s.numbers()) for s in panel(sales, "Revenue per store")}
    assert per_store == pytest.approx(dict(run.sent.revenue), abs=0.01)
    assert sum(panel(sales, "Revenue")[0].numbers()) == pytest.approx(sum(run.sent.revenue.values()), abs=0.01)
    per_store_sales = {s.tags["store"]: sum(s.numbers()) for s in panel(sales, "Transactions per store")}
    assert per_store_sales == dict(run.sent.sales)
    # Devices reporting: the widest column of the last five minutes' count (the panel's reduceRow max).
    assert max(panel(overview, "Devices reporting, last 5 min")[0].numbers()) == len(run.sent.devices_last_5m)
    # Open alerts: per identity the latest alert event on the topic, as the board reads the latest point. The
    # board follows the topic (the worker writes each event's point after it), so the two agree once it caught up.
    assert run.alerts, "the faults raised alerts"

    def board_and_topic() -> tuple[float, set, set]:
        shown = panel(overview, "Open alerts")
        rows = {(s.tags["source"], s.tags["entity"], s.tags["metric"], s.tags["severity"])
                for s in panel(overview, "Alerts open now")}
        return (sum(shown[0].numbers()) if shown else 0), rows, _open_alerts(run, until_ms=run.span.end_ms)

    count, rows, open_now = eventually(board_and_topic, lambda r: r[0] == len(r[2]) and r[1] == r[2],
                                       timeout=60, every=3.0)
    assert count == len(open_now)
    assert rows == open_now


def test_rendered_boards_show_data_in_every_panel(run: Run, tmp_path: Path) -> None:
    drawn, ends = {}, {}
    for board in board_dicts():
        span = _span(run, board["uid"])
        minutes = (span.end_ms - span.start_ms) // 60_000
        drawn.update(render_boards(run.settings, tmp_path, board["uid"], since=f"-{minutes}m", end_ms=span.end_ms))
        ends[f"{board['uid']}.png"] = span.end_ms
    assert sorted(p.name for p in drawn) == sorted(f"{b['uid']}.png" for b in board_dicts())
    for path, panels in drawn.items():
        assert path.stat().st_size > 20_000, path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not [p for p in panels if p.error], [p.error for p in panels if p.error]
        empty = [p.title for p in panels if p.points == 0]
        if "Alerts open now" in empty:
            uid = path.stem

            def drawn_open(uid: str = uid, end_ms: int = ends[path.name]) -> bool:
                again = render_boards(run.settings, tmp_path, uid, since="-60m", end_ms=end_ms)
                return any(p.points for ps in again.values() for p in ps if p.title == "Alerts open now")

            shown, open_then = _settled(run, ends[path.name], drawn_open)
            assert shown == open_then, f"{path.name}: rows drawn: {shown}; alerts open at the board's end: {open_then}"
            empty.remove("Alerts open now")  # drawn when any was open then; rightly empty when none was
        assert not empty, f"{path.name}: panels without data"
