"""A seeded generator of realistic IoT, POS and web events, with injected faults and a ground truth.

The code lives in :mod:`opsmon.sim`; this module keeps the public names in one place.

>>> sim = Simulator(seed=1, sites=1, devices_per_site=2, stores=1, web_sites=1, rate=50)
>>> evs = list(sim.events(t=1_793_700_000.0, n=100))  # a Tuesday morning: stores open
>>> len(evs), sorted({type(e).__name__ for e in evs})
(100, ['IotReading', 'PosTransaction', 'WebEvent'])
"""

from __future__ import annotations

from opsmon.sim import iot as _iot
from opsmon.sim import pos as _pos
from opsmon.sim import web as _web
from opsmon.sim.clock import DAY, parse_duration, parse_time
from opsmon.sim.engine import Mix, RawEvent, Simulator
from opsmon.sim.faults import Fault, FaultError, FaultSpec, TruthWriter, read_truth
from opsmon.sim.iot import DEVICE_KINDS
from opsmon.sim.pos import DEFAULT_HOURS
from opsmon.sim.replay import MODES, ReplayStats, replay, run

# Every injectable fault kind -> its source (promotions are scheduled business events, not faults).
FAULT_KINDS: dict[str, str] = {k: src for src, kinds in (("iot", _iot.KINDS), ("pos", _pos.KINDS), ("web", _web.KINDS))
                               for k in kinds if k != "promotion"}

__all__ = ["DAY", "DEFAULT_HOURS", "DEVICE_KINDS", "FAULT_KINDS", "MODES", "Fault", "FaultError", "FaultSpec",
           "Mix", "RawEvent", "ReplayStats", "Simulator", "TruthWriter", "parse_duration", "parse_time",
           "read_truth", "replay", "run"]
