"""The event simulator, one module per job.

* ``clock``: simulated time (parsing, formatting, local time).
* ``iot``, ``pos``, ``web``: the three source generators, with the faults they can show.
* ``faults``: fault records, the random/explicit fault schedule, the ground-truth file.
* ``engine``: :class:`Simulator`, the three generators on one simulated clock.
* ``replay``: pacing (realtime, fast, backfill) and the legacy ``run`` loop.

``opsmon.simulator`` re-exports the public names.
"""
