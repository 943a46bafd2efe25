"""The whole benchmark, phase by phase, with progress bars; returns the result document (``bench.report``)."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench import ceiling as _ceiling
from bench import latency as _latency
from bench import memory as _memory
from bench import pipeline as _pipeline
from bench import profile as _profile
from bench import rebalance as _rebalance
from bench import report as _report
from bench import soak as _soak
from bench import stages as _stages
from bench import workload as _workload
from bench.env import BenchStack, bench_settings, with_topics
from bench.metrics import ratio, stage_split


@dataclass
class Options:
    """What to run and how big."""

    events: int = 100_000
    quick: bool = False
    skip_scaling: bool = False
    skip_rebalance: bool = False
    rebalance_settle_s: float = 10.0  # the steady load before each change of the group
    rebalance_timeout_s: float = 120.0
    soak_minutes: float = 0.0
    soak_rate: float | None = None  # default: half the measured capacity of one worker
    latency_rate: float = 10_000.0
    latency_seconds: float = 30.0
    latency_drain_s: float = 15.0
    profile: bool = True
    keep_stack: bool = False
    data_dir: Path = Path(".opsmon/bench")
    seed: int = 42
    partitions: int = 4
    memory_devices: tuple[int, ...] = (1_000, 10_000, 100_000)
    memory_readings: int = 3
    full_day_devices: int = 400
    stage_events: int = 50_000
    what_if: tuple[str, ...] = ()  # bench.whatif patches, each measured like the 1-worker run
    fleet: _workload.Fleet = field(default_factory=_workload.Fleet)

    def quicken(self) -> Options:
        """A small run for smoke use (about two minutes)."""
        self.quick = True
        self.events = min(self.events, 20_000)
        self.latency_seconds = min(self.latency_seconds, 5.0)
        self.latency_drain_s = min(self.latency_drain_s, 10.0)
        self.memory_devices = (1_000, 5_000)
        self.full_day_devices = 100
        self.stage_events = min(self.stage_events, 10_000)
        self.rebalance_settle_s = min(self.rebalance_settle_s, 5.0)
        self.rebalance_timeout_s = min(self.rebalance_timeout_s, 60.0)
        return self


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "python_build": sys.version}  # (which build: they differ ~8%)
    for pkg in ("faust-streaming", "aiokafka", "kafka-python", "msgspec", "influxdb-client"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


class Phases:
    """One progress bar per phase, and the machine's load when each phase starts."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.load: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
        """A bar for ``name``; yields ``update(completed)``."""
        self.load[name] = round(os.getloadavg()[0], 2)
        task = self.progress.add_task(name, total=total)

        def update(done: float) -> None:
            self.progress.update(task, completed=done)

        t0 = time.monotonic()
        try:
            yield update
        finally:
            self.progress.update(task, completed=total if total is not None else 1, total=total or 1,
                                 description=f"{name} [dim]({time.monotonic() - t0:.0f}s)[/]")


def run_bench(opts: Options, console: Console, out_dir: Path | None = None) -> dict:
    """Run every phase on the bench stack and return the result document."""
    started = time.time()
    tag = f"bench-{datetime.now(UTC).strftime('%m%d%H%M%S')}"
    data_dir = opts.data_dir.absolute()
    run_dir = data_dir / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    base = bench_settings(data_dir, opts.partitions)
    stack = BenchStack(base, keep=opts.keep_stack)
    result: dict = {"schema": _report.SCHEMA, "run": {}, "preload": {}, "ceiling": {}, "pipeline": {}, "ratios": {},
                    "latency": {}, "stages": None, "profile": None, "memory": {}, "soak": None, "rebalance": None,
                    "targets": []}
    columns = (SpinnerColumn(), TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        ph = Phases(progress)
        try:
            with ph.phase("stack up (Kafka, InfluxDB)"):
                up_s = stack.up()
            settings = with_topics(base, tag)

            with ph.phase("generate events (simulator)", opts.events) as bar:
                t0 = time.perf_counter()
                events, sim_start = _workload.preload_events(opts.fleet, opts.events, seed=opts.seed)
                gen_s = time.perf_counter() - t0
                bar(len(events))
            with ph.phase("preload into Kafka", len(events)) as bar:
                pre_s = _workload.preload(settings, events, bar)
            result["preload"] = {"events": len(events), "by_source": _workload.by_source(events),
                                 "seconds": round(pre_s, 3), "events_per_s": round(len(events) / pre_s, 1),
                                 "generate_seconds": round(gen_s, 2),
                                 "simulated_start": datetime.fromtimestamp(sim_start, UTC).isoformat()}

            with ph.phase("ceiling: aiokafka fetch + decode", len(events)) as bar:
                result["ceiling"] = _ceiling.ceiling(settings, len(events), bar)

            runs = [1] if opts.skip_scaling else [1, 2]
            services = {name: st.pid for name, st in stack.stack.status().items()
                        if st.pid and name in ("kafka", "influxdb")}
            for k in runs:
                topics = with_topics(base, f"{tag}-p{k}")  # each run's own topics: its workers join before the data
                with ph.phase(f"pipeline: {k} worker{'s' if k > 1 else ''}", len(events)) as bar:
                    result["pipeline"][str(k)] = _pipeline.run_workers(
                        topics, k, len(events), f"{tag}-w{k}", run_dir / f"w{k}",
                        feed=lambda topics=topics: _workload.preload(topics, events), on_progress=bar,
                        services=services)
            one = result["pipeline"]["1"]
            for i, name in enumerate(opts.what_if):
                topics = with_topics(base, f"{tag}-x{i}")
                with ph.phase(f"what-if {name}: 1 worker", len(events)) as bar:
                    run = _pipeline.run_workers(
                        topics, 1, len(events), f"{tag}-x{i}", run_dir / f"x{i}",
                        feed=lambda topics=topics: _workload.preload(topics, events), on_progress=bar,
                        services=services, argv=("-m", "bench.whatif", name))
                result.setdefault("what_if", {})[name] = {
                    **{k: run[k] for k in ("events_per_s", "cpu_us_per_event", "cpu_utilisation", "peak_rss_mib",
                                           "service_cpu_seconds", "machine_cpu_busy")},
                    "speedup": _round(ratio(run["events_per_s"], one["events_per_s"])),
                    "cpu_per_event_ratio": _round(ratio(run["cpu_us_per_event"], one["cpu_us_per_event"]))}
            two = result["pipeline"].get("2")
            result["ratios"] = {
                "pipeline_to_ceiling": _round(ratio(one["events_per_s_per_worker"], result["ceiling"]["events_per_s"])),
                "speedup_2_workers": _round(ratio(two["events_per_s"], one["events_per_s"])) if two else None}

            if not opts.skip_rebalance:
                # Half of one worker's capacity: a change's backlog is caught up, not added to a standing one.
                rate = max(100.0, round(0.5 * one["events_per_s"], -1))
                with ph.phase(f"rebalance: a worker joins, leaves ({rate:,.0f}/s)", 3) as bar:
                    result["rebalance"] = _rebalance.run_rebalance(
                        base, opts.fleet, rate, f"{tag}-rb", run_dir / "rebalance", settle_s=opts.rebalance_settle_s,
                        timeout_s=opts.rebalance_timeout_s, on_progress=bar)

            sample = events[:opts.stage_events]
            with ph.phase("time per stage (in process)", len(sample)) as bar:
                # A checkpoint every checkpoint_seconds at the rate the worker reached.
                st = _stages.measure_stages(sample, settings, on_progress=bar, checkpoint_events=int(
                    one["events_per_s"] * settings.checkpoint_seconds))
            worker_us = 1e6 / one["events_per_s"] if one["events_per_s"] else None
            st["worker_us_per_event"] = round(worker_us, 2) if worker_us else None
            cpu_us = one.get("cpu_us_per_event")
            st["worker_cpu_us_per_event"] = cpu_us
            st["rows"] = stage_split(st["stages_us"], worker_us, cpu_us)
            result["stages"] = st

            n_lat = int(opts.latency_rate * opts.latency_seconds)
            prof_path = run_dir / "worker.pyspy.txt" if opts.profile else None
            with ph.phase(f"latency at {opts.latency_rate:,.0f}/s (+ profile)", n_lat) as bar:
                lat = _latency.run_latency(
                    base, events, opts.latency_rate, opts.latency_seconds, f"{tag}-lat", run_dir / "lat",
                    drain_s=opts.latency_drain_s, on_progress=lambda _stage, i, _n: bar(min(i, n_lat)),
                    profile_to=prof_path)
            result["latency"]["target_rate"] = lat
            if prof_path is not None and prof_path.exists():
                result["profile"] = _profile.summarise(prof_path)
                result["profile"]["during"] = (f"the latency run at {opts.latency_rate:,.0f}/s offered "
                                               "(the worker saturated, fresh entities)")
                if out_dir is not None:
                    out_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy(prof_path, out_dir / "worker-profile.txt")
            elif lat.get("profile_error"):
                console.print(f"[yellow]no worker profile: {lat['profile_error']}[/]")
            half = round(0.5 * one["events_per_s"], -1)
            if not opts.quick and half > 0:  # (above the target rate too: the target is at half capacity)
                n_half = int(half * opts.latency_seconds)
                with ph.phase(f"latency at {half:,.0f}/s (half capacity)", n_half) as bar:
                    result["latency"]["half_capacity"] = _latency.run_latency(
                        base, events, half, opts.latency_seconds, f"{tag}-lat2", run_dir / "lat2",
                        drain_s=opts.latency_drain_s, on_progress=lambda _stage, i, _n: bar(min(i, n_half)))

            mem_steps = len(opts.memory_devices) + 1
            with ph.phase("memory per entity", mem_steps) as bar:
                series = []
                for i, n in enumerate(opts.memory_devices):
                    series.append(_memory.measure_in_subprocess(n, opts.memory_readings, 10.0))
                    bar(i + 1)
                # a day and an hour at five-minute intervals: the first value after the day forms the profile
                # (and as many again: what one more device costs, without what any fleet allocates once)
                full_day = _memory.marginal(opts.full_day_devices, 300, 300.0)
                bar(mem_steps)
            result["memory"] = {"series": series, "full_day": full_day,
                                # A device runs for days: its state after a full day is the one to budget for.
                                "per_entity_bytes": full_day["marginal_bytes_per_entity"]}

            if opts.soak_minutes > 0:
                rate = opts.soak_rate or round(0.5 * one["events_per_s"], -1)
                with ph.phase(f"soak at {rate:,.0f}/s", opts.soak_minutes * 60) as bar:
                    result["soak"] = _soak.run_soak(base, opts.fleet, rate, opts.soak_minutes, f"{tag}-soak",
                                                    run_dir / "soak", on_progress=bar)
        finally:
            with ph.phase("clean up (topics; the stack if this run started it)"):
                stack.down(tag)
    result["run"] = {
        "tag": tag, "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1), "quick": opts.quick, "events": opts.events,
        "stack_started_by_run": stack.started, "stack_up_s": round(up_s, 1), "logs": str(run_dir),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "load_avg_1m_at_phase_start": ph.load},
        "versions": _versions(),
        "fleet": asdict(opts.fleet),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "fleet"},
    }
    result["targets"] = _report.targets(result)
    return result


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)
