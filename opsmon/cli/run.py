"""``opsmon worker``, ``opsmon topics create``, ``opsmon simulate`` and ``opsmon demo``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from opsmon.settings import Settings

console = Console()
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


def worker() -> None:
    """Run the stream worker (a Faust worker) until stopped with Ctrl-C or SIGTERM."""
    import warnings

    from faust import Worker

    from streams.app import create_app

    warnings.filterwarnings("ignore", message="The pickle codec")
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings)
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
    rate: float = typer.Option(200.0, help="Events per second, all sources together."),
    duration: float = typer.Option(None, help="Seconds to run; default until Ctrl-C."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same traffic."),
    sites: int = typer.Option(2), devices: int = typer.Option(5, help="Devices per site."),
    stores: int = typer.Option(3), web_sites: int = typer.Option(1),
) -> None:
    """Publish realistic IoT, POS and web events to Kafka at a steady rate."""
    from opsmon.simulator import Simulator, run
    from streams.publisher import Publisher

    sim = Simulator(seed=seed, sites=sites, devices_per_site=devices, stores=stores, web_sites=web_sites)
    with Publisher(Settings()) as pub:
        try:
            with console.status("simulating") as status:
                n = run(sim, pub.send, rate, duration, on_tick=lambda s: status.update(f"sent {s} events"))
        except KeyboardInterrupt:
            n = pub.sent
    console.print(f"sent {n} events")


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
    with console.status("starting the local stack (Kafka, VictoriaMetrics, Alertmanager)..."):
        Stack(settings).up(["kafka", "victoria", "alertmanager"])
        create_topics(settings)
    log_path = settings.data_dir / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "opsmon", "worker"], stdout=log_file,
                                stderr=subprocess.STDOUT, env=os.environ.copy())
    stop = threading.Event()
    pub = Publisher(settings)

    def produce() -> None:
        sim = Simulator(seed=int(time.time()))
        # A few malformed messages, so the dead-letter path shows too.
        for bad in (b"{not json", b'{"v":1,"site":"x"}', b'{"v":9,"time":"2026-01-01T00:00:00Z"}'):
            pub.send_raw("iot", b"bad", bad)
        run(sim, pub.send, rate, None, stop=stop, sleep=stop.wait)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    console.print(f"worker log: {log_path}; boards read from {settings.influx_url}. Ctrl-C to stop.")
    started = time.time()
    try:
        with Live(_stats_table({}, {}, 0.0), console=console, refresh_per_second=2) as live:
            prev: dict = {}
            prev_t = time.time()
            while duration is None or time.time() - started < duration:
                time.sleep(2.0)
                stats = _fetch_stats(settings)
                now = time.time()
                live.update(_stats_table(stats, prev, now - prev_t))
                prev, prev_t = stats, now
                if proc.poll() is not None:
                    console.print(f"[red]worker exited with {proc.returncode}; see {log_path}[/]")
                    raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        producer.join(timeout=5)
        pub.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    console.print("stopped the worker and simulator; `opsmon stack down` stops the stack.")


def _fetch_stats(settings: Settings) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/opsmon/stats", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


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
