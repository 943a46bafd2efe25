"""Driving a simulator's clock: replay in real time, as fast as the sink takes it, or backfill a period.

* ``realtime``: simulated time follows the wall clock (from ``start``, at ``speed`` simulated seconds per
  wall second, but never ahead of the wall clock), until ``end``, ``duration`` or a stop.
* ``fast``: no pacing from ``start``; on reaching the wall clock it keeps up with it (catch up, then
  follow) unless ``end`` comes first.
* ``backfill``: no pacing over [start, end), then stop.

Time is injected (``clock``, ``sleep``), so tests run every mode without waiting.

>>> from opsmon.sim.engine import Simulator
>>> sent = []
>>> stats = replay(Simulator(seed=1, rate=20), lambda s, k, v: sent.append(s), mode="backfill",
...                start=1_793_491_200.0, end=1_793_491_200.0 + 600, clock=lambda: 1_800_000_000.0)
>>> stats.events == len(sent) > 0, stats.sim_end - stats.sim_start
(True, 600.0)
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from opsmon.sim.engine import Simulator
from streams.schemas import MAX_FUTURE_SECONDS, Event, decode

Mode = Literal["realtime", "fast", "backfill"]
MODES: tuple[str, ...] = ("realtime", "fast", "backfill")
SendRaw = Callable[[str, bytes, bytes], None]
TICK = 0.1  # wall seconds between realtime steps


@dataclass
class ReplayStats:
    """What a replay produced."""

    events: int = 0
    by_source: Counter = field(default_factory=Counter)
    sim_start: float = 0.0
    sim_end: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Events per wall second."""
        return self.events / self.wall_seconds if self.wall_seconds > 0 else 0.0


def replay(sim: Simulator, send: SendRaw, mode: Mode = "realtime", start: float | None = None,
           end: float | None = None, duration: float | None = None, speed: float = 1.0,
           max_rate: float | None = None, clock: Callable[[], float] = time.time,
           sleep: Callable[[float], None] = time.sleep, stop: threading.Event | None = None,
           on_progress: Callable[[float, ReplayStats], None] | None = None) -> ReplayStats:
    """Generate events on the simulated clock of ``mode`` and hand each to ``send(source, key, value)``.

    ``duration`` limits wall seconds, ``max_rate`` caps events per wall second (fast and backfill),
    Ctrl-C ends the replay early (``interrupted``) rather than raising.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    wall0 = clock()
    if mode != "realtime" and start is None:
        raise ValueError(f"{mode} needs a start")
    if mode == "backfill" and end is None:
        end = wall0
    sim_t = wall0 if start is None else start
    if end is not None and end > wall0 + MAX_FUTURE_SECONDS:
        raise ValueError("the end lies in the future: the pipeline rejects events more than "
                         f"{MAX_FUTURE_SECONDS:.0f}s ahead of its clock")
    if end is not None and end <= sim_t:
        raise ValueError("the end must come after the start")
    if speed <= 0:
        raise ValueError("the speed must be positive")
    stats = ReplayStats(sim_start=sim_t, sim_end=sim_t)
    step = sim.step_for()
    following = False  # caught up with the wall clock: simulated time = wall time from here on
    try:
        while not (stop is not None and stop.is_set()):
            now = clock()
            if duration is not None and now - wall0 >= duration:
                break
            if following:
                target = now
            elif mode == "realtime":
                target = min(now, stats.sim_start + (now - wall0) * speed)
            else:
                target = sim_t + step
                if mode == "fast" and target >= now:
                    target, following = now, True
            if end is not None:
                target = min(target, end)
            if target > sim_t:
                for source, key, value in sim.generate(sim_t, target):
                    send(source, key, value)
                    stats.by_source[source] += 1
                stats.events = sum(stats.by_source.values())
                sim_t = stats.sim_end = target
                if on_progress is not None:
                    on_progress(sim_t, stats)
            if end is not None and sim_t >= end:
                break
            if mode == "realtime" or following:
                sleep(max(0.0, TICK - (clock() - now)))
            elif max_rate:
                ahead = stats.events / max_rate - (clock() - wall0)
                if ahead > 0:
                    sleep(ahead)
    except KeyboardInterrupt:
        stats.interrupted = True
    stats.wall_seconds = clock() - wall0
    return stats


def run(sim: Simulator, send: Callable[[Event], None], rate: float, duration: float | None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> int:
    """Publish typed events in real time at ``rate`` events per second (on average) for ``duration`` seconds."""
    if not math.isclose(rate, sim.rate):
        sim.set_rate(rate)

    def send_typed(source: str, key: bytes, value: bytes) -> None:  # noqa: ARG001
        send(decode(source, value, now=math.inf))

    stats = replay(sim, send_typed, "realtime", duration=duration, clock=clock, sleep=sleep, stop=stop,
                   on_progress=(lambda _t, s: on_tick(s.events)) if on_tick else None)
    return stats.events
