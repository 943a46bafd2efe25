"""Real worker processes (``python -m opsmon worker``) timed over the preloaded topics.

Each run has a fresh consumer group (Faust app id), so its workers start at the beginning of the topics.
Throughput is measured from the first poll of ``/opsmon/stats`` that shows consumption to the first that
shows every preloaded event consumed (validated, aggregated, scored and written: a batch is counted
before its InfluxDB write is acknowledged, so the end also waits for the consumer group's committed
offsets, reported separately). CPU time (user + sys) and peak RSS come from the worker processes.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.env import committed_lag, end_offsets, partition_lag, worker_settings
from bench.metrics import rate_between
from opsmon.settings import Settings
from opsmon.worker_process import WorkerProcess

POLL_S = 0.25
SOURCES = ("iot", "pos", "web")


class Worker(WorkerProcess):
    """One ``opsmon worker`` child process, with its CPU time and memory sampled (psutil)."""

    def __init__(self, settings: Settings, log_path: Path, argv: tuple[str, ...] | None = None) -> None:
        super().__init__(settings, log_path, argv)
        self.ps: psutil.Process | None = None
        self.rss_peak = 0

    def start(self, ready_timeout: float | None = None) -> Worker:
        """Spawn the worker; the bench waits for it with ``wait_ready`` once all workers are spawned."""
        super().start(ready_timeout)
        assert self.proc is not None
        self.ps = psutil.Process(self.proc.pid)
        return self

    def consumed(self) -> int | None:
        """Source messages the worker has taken through the pipeline (accepted, dead-lettered, replayed)."""
        sample = self.counted()
        return None if sample is None else sample[1]

    def counted(self) -> tuple[float, int] | None:
        """(the worker's clock, ``consumed``) as the worker read them, or None while it does not answer."""
        st = self.stats()
        if st is None:
            return None
        return float(st["at"]), consumed_of(st)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the worker so far."""
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system

    def sample_rss(self) -> int:
        """Current RSS in bytes (and remember the peak)."""
        assert self.ps is not None
        rss = self.ps.memory_info().rss
        self.rss_peak = max(self.rss_peak, rss, _vm_hwm(self.ps.pid))
        return rss


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def consumed_of(stats: dict) -> int:
    """Source messages in a worker's stats: accepted, dead-lettered and replayed, over all sources."""
    return sum(int(stats.get(src, {}).get(k, 0)) for src in ("iot", "pos", "web")
               for k in ("events", "dead_lettered", "replayed"))


def _vm_hwm(pid: int) -> int:
    """Peak RSS (VmHWM) from /proc, 0 where there is none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Profiler:
    """py-spy sampling one worker (optional: only when py-spy is installed); raw collapsed stacks."""

    pid: int
    out: Path
    rate: int = 100
    proc: subprocess.Popen | None = None
    error: str = field(default="")

    @staticmethod
    def available() -> str | None:
        """The py-spy executable, or None."""
        return shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy")
                                          if (Path(sys.executable).parent / "py-spy").exists() else None)

    def start(self) -> bool:
        """Start sampling; False when py-spy is missing."""
        exe = self.available()
        if exe is None:
            self.error = "py-spy not installed"
            return False
        self.proc = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate",
                                      str(self.rate), "--nonblocking", "-o", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        return True

    def stop(self) -> Path | None:
        """Stop sampling (SIGINT makes py-spy write its file); the file, or None."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
            if not self.out.exists():
                self.error = (err or b"").decode(errors="replace")[-300:]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.out if self.out.exists() else None


def assigned_hosts(worker: Worker) -> int:
    """How many workers of the group hold partitions, as this worker's Faust router sees it (0 if it does not say)."""
    try:
        resp = httpx.get(f"http://127.0.0.1:{worker.settings.worker_web_port}/router/", timeout=2)
        body = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return 0
    return sum(1 for tables in body.values() if any(tables.values()))


def run_workers(settings: Settings, workers: int, total: int, app_id: str, run_dir: Path,
                feed: Callable[[], object], on_progress: Callable[[int], None] | None = None,
                profile_to: Path | None = None, timeout_s: float = 600.0, stall_s: float = 60.0,
                services: dict[str, int] | None = None, argv: tuple[str, ...] | None = None) -> dict:
    """Start ``workers`` processes of one consumer group, let them join, ``feed`` the topics, time the consumption.

    The workers join before the events arrive: a worker joining while another consumes triggers a
    rebalance, and with faust-streaming 0.15 a partition can then stay unfetched (seen here: one IoT
    partition stuck for ten minutes; faust-streaming/faust#629). That is a finding of its own, not the
    throughput this run measures. ``stall_s`` seconds without progress end the run with an error.
    ``services`` (name -> pid, e.g. the Kafka broker) get their CPU seconds over the same window reported;
    ``argv`` replaces ``-m opsmon worker`` (what-if experiments with a patched worker).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    procs = [Worker(worker_settings(settings, app_id, i, run_dir / f"worker-{i}"), run_dir / f"worker-{i}.log",
                    **({"argv": argv} if argv else {})) for i in range(workers)]
    watched = {name: psutil.Process(pid) for name, pid in (services or {}).items() if psutil.pid_exists(pid)}
    profiler: Profiler | None = None
    try:
        for w in procs:
            w.start()
        for w in procs:
            w.wait_ready()
        deadline = time.monotonic() + 90
        while assigned_hosts(procs[0]) < workers:
            for w in procs:
                w.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not all get partitions within 90s:\n{procs[0].log_tail()}")
            time.sleep(0.5)
        time.sleep(2.0)  # Faust resumes the streams just after the assignment shows
        # The window runs from the first batch a worker began (its own clock) to the last count, dated by the
        # worker's clock when it read it (its stats' "at"): a busy worker that answers late moves nothing in time,
        # and what the workers took in while the events were still being produced counts too. The CPU is from
        # just before the events, while the workers idle.
        cpu0 = [w.cpu_s() for w in procs]
        svc0 = {name: _cpu(p) for name, p in watched.items()}
        machine0 = psutil.cpu_times()
        feed()
        ends = end_offsets(settings)
        if profile_to is not None:
            assert procs[0].proc is not None
            profiler = Profiler(procs[0].proc.pid, profile_to)
            profiler.start()
        lasts: list[tuple[float, int] | None] = [None] * workers
        progress_at = (time.monotonic(), -1)
        deadline = time.monotonic() + timeout_s
        while True:
            samples = [w.counted() for w in procs]
            for i, (w, sample) in enumerate(zip(procs, samples, strict=True)):
                w.check_alive()
                w.sample_rss()
                if sample is not None:
                    lasts[i] = sample
            n = sum(last[1] for last in lasts if last is not None)
            if on_progress is not None:
                on_progress(n)
            if n >= total and None not in samples:
                break
            if n != progress_at[1]:
                progress_at = (time.monotonic(), n)
            elif time.monotonic() - progress_at[0] > stall_s:
                behind = {f"{tp.topic}[{tp.partition}]": lag for tp, lag in
                          partition_lag(settings, app_id, ends).items() if lag}
                raise RuntimeError(f"{workers} worker(s) stalled at {n:,} of {total:,} events for {stall_s:.0f}s; "
                                   f"uncommitted: {behind}; logs in {run_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} worker(s) consumed {n:,} of {total:,} events in {timeout_s:.0f}s; "
                                   f"logs in {run_dir}")
            time.sleep(POLL_S)
        cpu = sum(w.cpu_s() for w in procs) - sum(cpu0)
        svc = {name: round(_cpu(p) - svc0[name], 2) for name, p in watched.items()}
        machine = psutil.cpu_times()
        busy = 1.0 - (machine.idle - machine0.idle) / max(1e-9, sum(machine) - sum(machine0))
        last = (max(s[0] for s in lasts if s is not None), n)
        done_at = time.perf_counter()
        lag = committed_lag(settings, app_id, ends)
        while lag > 0 and time.perf_counter() - done_at < 60:
            time.sleep(0.2)
            lag = committed_lag(settings, app_id, ends)
        commit_s = time.perf_counter() - done_at
        stats = [w.stats() or {} for w in procs]
        first = (min(t for t in (st.get("first_batch_at") for st in stats) if t is not None), 0)
    finally:
        if profiler is not None:
            profiler.stop()
        for w in procs:
            w.stop()
    seconds = last[0] - first[0]
    events = last[1] - first[1]
    sink = [s.get("sink", {}) for s in stats]
    return {
        "workers": workers,
        "events": total,
        "seconds": round(seconds, 3),
        "events_per_s": round(rate_between(first, last), 1),
        "events_per_s_per_worker": round(rate_between(first, last) / workers, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_event": round(cpu / events * 1e6, 2) if events else None,
        "cpu_utilisation": round(cpu / seconds / workers, 3) if seconds else None,
        "peak_rss_mib": round(max(w.rss_peak for w in procs) / 2**20, 1),
        "service_cpu_seconds": svc,
        "machine_cpu_busy": round(busy, 3),
        "committed_lag_after": lag,
        "commit_wait_s": round(commit_s, 2),
        "lines_written": sum(int(s.get("lines_written", 0)) for s in sink),
        "influx_requests": sum(int(s.get("requests", 0)) for s in sink),
        "influx_retries": sum(int(s.get("retries", 0)) for s in sink),
        "by_source": {src: sum(int(s.get(src, {}).get("events", 0)) for s in stats) for src in SOURCES},
        "dead_lettered": sum(int(s.get(src, {}).get("dead_lettered", 0)) for s in stats for src in SOURCES),
        "profile": str(profile_to) if profiler is not None and profile_to is not None and profile_to.exists() else None,
        "profile_error": profiler.error if profiler is not None else "",
    }
