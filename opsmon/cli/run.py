"""``opsmon worker``, ``opsmon topics create``, ``opsmon simulate`` and ``opsmon demo``."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.table import Table

from opsmon.cli.output import print_error
from opsmon.settings import Settings
from opsmon.worker_process import WorkerProcess

console = Console()
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


def worker() -> None:
    """Run the stream worker (a Faust worker) until stopped with Ctrl-C or SIGTERM."""
    import warnings

    from faust import Worker
    from pydantic import ValidationError

    from streams.app import create_app
    from streams.heap import collect_less

    warnings.filterwarnings("ignore", message="The pickle codec")
    try:
        settings = Settings()
    except ValidationError as exc:  # a bad setting (a model expression, a limit) stops the worker with it named
        typer.echo(f"opsmon worker: settings refused: {exc}", err=True)  # whole lines: the fault is read in logs
        raise typer.Exit(2) from None
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
    collect_less()
    Worker(app, loglevel=settings.log_level, redirect_stdouts=False).execute_from_commandline()


@topics_app.command("create")
def topics_create() -> None:
    """Create opsmon's topics (source, dead-letter, alerts, feedback) if missing."""
    from streams.topics import all_topics, create_topics

    settings = Settings()
    created = create_topics(settings)
    for spec in all_topics(settings):
        mark = "[green]created[/]" if spec.name in created else "exists"
        console.print(f"{spec.name:<28} {spec.partitions} partitions  {mark}")


def simulate(
    rate: Annotated[float, typer.Option(help="Mean events per simulated second, all sources together (averaged over "
                                        "a week: stores close at night, so peaks run higher).")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="Wall-clock seconds to run; default until Ctrl-C (realtime, "
                                                   "fast) or --end (backfill).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, sizes and start give the same traffic.")] = 0,
    sites: int = typer.Option(2), devices: int = typer.Option(5, help="Devices per site."),
    stores: int = typer.Option(3), web_sites: int = typer.Option(1),
    mode: Annotated[str, typer.Option(help="realtime: simulated time = wall time; fast: as fast as Kafka takes it "
                                      "from --start, then keep up with the wall clock; backfill: [--start, --end) as "
                                      "fast as possible, then stop.")] = "realtime",
    start: Annotated[str | None, typer.Option(
        help="Simulated start: 2026-11-01, 2026-11-01T08:00 (in --tz), now-2h. Default: now (realtime), now-1d "
        "(fast); backfill needs it.")] = None,
    end: Annotated[str | None, typer.Option(help="Simulated end, same forms or +1d (after the start); backfill "
                                            "default: now.")] = None,
    speed: Annotated[float, typer.Option(help="realtime: simulated seconds per wall second (never ahead of the "
                                         "wall clock).")] = 1.0,
    faults_per_hour: Annotated[float, typer.Option(help="Random faults per simulated hour (seeded).")] = 0.0,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help="An explicit fault kind:target:start:duration (target@metric picks the metric), e.g. "
        "spike:site-0/fridge-0@temperature:+2h:30s or till_silent:store-0-till-2:2026-11-02T10:00:1h. Kinds: "
        "spike, level_shift, drift, stuck, dropout, overheat (devices); till_silent, refund_burst (tills); "
        "card_failure (stores); error_burst, latency, checkout_broken (web shops). Repeatable.")] = None,
    truth: Annotated[Path | None, typer.Option(help="Write every injected fault to this ground-truth file (JSON "
                                               "lines; CSV for a .csv name).")] = None,
    tills: Annotated[int, typer.Option(help="Tills per store.")] = 3,
    skus: Annotated[int, typer.Option(help="Articles in the catalogue (long-tailed popularity).")] = 200,
    hours: Annotated[str, typer.Option(help="Store opening hours, e.g. 'mon-fri 08:00-20:00; sat 09:00-18:00'.")
                     ] = "mon-sat 08:00-20:00",
    tz: Annotated[str, typer.Option(help="Time zone of opening hours, daily cycles and naive times.")] = "UTC",
    promotions_per_week: Annotated[float, typer.Option(help="Promotions (known events; also in the ground truth).")
                                   ] = 1.0,
    max_rate: Annotated[float | None, typer.Option(help="fast, backfill: cap on events per wall second.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write <out>/{iot,pos,web}.jsonl instead of publishing to Kafka.")
                   ] = None,
) -> None:
    """Generate realistic IoT, POS and web events with injected faults, in real time or as a backfill."""
    from kafka.errors import KafkaError
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from opsmon.sim.clock import iso as _ts
    from opsmon.sim.sinks import JsonlFiles
    from opsmon.simulator import MODES, Simulator, TruthWriter, parse_time, replay
    from streams.publisher import Publisher

    if mode not in MODES:
        raise typer.BadParameter(f"use one of {', '.join(MODES)}", param_hint="--mode")
    try:
        now = time.time()
        t0 = parse_time(start, tz=tz, now=now) if start else (now - 86_400.0 if mode == "fast" else None)
        if mode == "backfill" and t0 is None:
            raise typer.BadParameter("backfill needs --start", param_hint="--start")
        t1 = parse_time(end, ref=t0 if t0 is not None else now, tz=tz, now=now) if end else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    writer = TruthWriter(truth) if truth else None
    try:
        sim = Simulator(seed=seed, sites=sites, devices_per_site=devices, stores=stores, web_sites=web_sites,
                        rate=rate, tills_per_store=tills, skus=skus, hours=hours, tz=tz,
                        faults_per_hour=faults_per_hour, faults=fault or (), promotions_per_week=promotions_per_week,
                        on_fault=writer)
        sink = JsonlFiles(out) if out else Publisher(Settings())
    except ValueError as exc:  # bad fault spec, calendar or time zone
        raise typer.BadParameter(str(exc)) from None
    except KafkaError as exc:
        print_error(f"cannot reach Kafka at {Settings().kafka_bootstrap}: {exc}")
        raise typer.Exit(1) from None
    send = sink if isinstance(sink, JsonlFiles) else sink.send_raw
    try:
        if mode == "realtime":
            with console.status("simulating") as status:
                stats = replay(sim, send, "realtime", start=t0, end=t1, duration=duration, speed=speed,
                               on_progress=lambda t, s: status.update(
                                   f"simulated {_ts(t)}: sent {s.events:,} events, {len(sim.truth)} faults"))
        else:
            goal = (t1 if t1 is not None else time.time()) - t0
            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(mode, total=goal, info="")

                def show(t: float, s) -> None:  # noqa: ANN001
                    wall = time.time() - s_wall0
                    progress.update(task, completed=min(goal, t - t0), description=f"{mode} {_ts(t)}",
                                    info=f"{s.events:,} events, {s.events / wall if wall else 0:,.0f}/s, "
                                    f"{len(sim.truth)} faults")

                s_wall0 = time.time()
                stats = replay(sim, send, mode, start=t0, end=t1, duration=duration, max_rate=max_rate,
                               on_progress=show)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        sink.close()
        if writer is not None:
            writer.close()
    per_source = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.by_source.items()))
    console.print(f"{'stopped: ' if stats.interrupted else ''}sent {stats.events:,} events ({per_source}) "
                  f"for {_ts(stats.sim_start)} .. {_ts(stats.sim_end)} in {stats.wall_seconds:.1f}s "
                  f"({stats.rate:,.0f}/s); {len(sim.truth)} faults/events"
                  + (f" written to {truth}" if truth else ""))


def demo(
    rate: float = typer.Option(300.0, help="Simulated events per second."),
    duration: float = typer.Option(None, help="Seconds to run; default until Ctrl-C."),
) -> None:
    """Bring the local stack up, create topics, run a worker and the simulator, and show what flows."""
    from deploy.stack import Stack
    from opsmon.simulator import Simulator, run
    from streams.publisher import Publisher
    from streams.topics import create_topics

    settings = Settings()
    with console.status("starting the local stack (Kafka, InfluxDB, Alertmanager)..."):
        stack = Stack(settings)
        stack.up(["kafka", "influxdb", "alertmanager"])
        # The worker writes as the stack's InfluxDB writer (OPSMON_INFLUX_TOKEN when it is user:password).
        settings = settings.model_copy(update={"influx_token": SecretStr(stack.influx_auth().token)})
        create_topics(settings)
    log_path = settings.data_dir / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with console.status("starting a worker..."):
        worker = WorkerProcess(settings, log_path).start()
    stop = threading.Event()
    pub = Publisher(settings)

    def produce() -> None:
        # Stores open around the clock here, so sales flow whenever the demo runs; a fault now and then.
        sim = Simulator(seed=int(time.time()), rate=rate, hours="mon-sun 24h", faults_per_hour=2.0)
        # A few malformed messages, so the dead-letter path shows too.
        for bad in (b"{not json", b'{"v":1,"site":"x"}', b'{"v":9,"time":"2026-01-01T00:00:00Z"}'):
            pub.send_raw("iot", b"bad", bad)
        run(sim, pub.send, rate, None, stop=stop, sleep=stop.wait)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    boards_dir = settings.data_dir / "boards"

    def render() -> None:
        from deploy.grafana.live import QueryError
        from opsmon.cli.boards import render_boards

        # The first minute has little to show; then every minute, the last hour of each board.
        while not stop.wait(60.0):
            try:
                render_boards(settings, boards_dir, since="-1h")
            except (QueryError, OSError, ValueError) as exc:
                logging.getLogger("opsmon.demo").warning("rendering the boards failed: %s", exc)

    threading.Thread(target=render, daemon=True).start()
    console.print(f"worker log: {log_path}; boards read from {settings.influx_url}. Ctrl-C to stop.")
    console.print(f"the boards as images, redrawn every minute: {boards_dir}/*.png "
                  f"(or `opsmon boards render --out DIR`)")
    started = time.time()
    try:
        with Live(_stats_table({}, {}, 0.0), console=console, refresh_per_second=2) as live:
            prev: dict = {}
            prev_t = time.time()
            while duration is None or time.time() - started < duration:
                time.sleep(2.0)
                stats = worker.stats() or {}
                now = time.time()
                live.update(_stats_table(stats, prev, now - prev_t))
                prev, prev_t = stats, now
                if not worker.running():
                    print_error(f"the worker stopped; see {log_path}")
                    raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        producer.join(timeout=5)
        pub.close()
        worker.stop()
    console.print("stopped the worker and simulator; `opsmon stack down` stops the stack.")


def _stats_table(stats: dict, prev: dict, dt: float) -> Table:
    table = Table(title="opsmon: what flows")
    for col in ("source", "events/s", "events", "windows written", "dead-lettered", "late"):
        table.add_column(col, justify="right" if col != "source" else "left")
    for src in ("iot", "pos", "web"):
        cur, old = stats.get(src, {}), prev.get(src, {})
        rate = (cur.get("events", 0) - old.get("events", 0)) / dt if dt > 0 and old else 0.0
        table.add_row(src, f"{rate:,.0f}", f"{cur.get('events', 0):,}", f"{cur.get('windows_written', 0):,}",
                      f"{cur.get('dead_lettered', 0):,}", f"{cur.get('late', 0):,}")
    sink = stats.get("sink", {})
    table.caption = (f"InfluxDB: {sink.get('lines_written', 0):,} lines written, {sink.get('retries', 0)} retries"
                     if sink else "waiting for the worker...")
    return table
