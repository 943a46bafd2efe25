"""``opsmon bench``: the stream pipeline measured against its ceiling on the real local stack.

* ``env``: the bench's own stack (ports, data dir), per-run topics, worker settings.
* ``workload``: a seeded, calibrated event mix from :class:`opsmon.simulator.Simulator`; the preload.
* ``ceiling``: a plain aiokafka consumer that only fetches and decodes.
* ``pipeline``: real worker processes, timed from first consumption to the last event; CPU, RSS, profile.
* ``latency``: event-to-InfluxDB latency at a fixed offered load (an acknowledging proxy timestamps writes).
* ``stages``: time per stage of the worker's hot path, in process.
* ``memory``: RSS and pickled bytes per tracked entity.
* ``soak``: steady load for minutes: is memory flat and lag bounded.
* ``metrics``: pure computations (percentiles, rates, slopes); ``report``: targets, JSON, table, chart.
* ``run``: the whole benchmark, phase by phase.
"""
