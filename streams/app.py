"""The Faust app: topics declared once, one thin agent per source, state in changelogged tables.

Each agent takes a batch of events, lets :class:`streams.pipeline.SourcePipeline` turn it into points
and dead letters, sends the dead letters, waits until InfluxDB has acknowledged the points, and then
changelogs the touched entity states. Faust acks the batch's offsets only when the loop body is done,
and flushes the producer (dead letters, changelogs) before it commits them: at-least-once, and replay
is idempotent (see ``pipeline``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faust
from aiohttp import web

from opsmon.settings import Settings
from sinks.influx import InfluxWriter
from sinks.lineproto import line
from streams.pipeline import EntityState, Output, Record, SourcePipeline, WindowConfig
from streams.topics import source_topics

log = logging.getLogger("opsmon.worker")

BATCH_MAX = 2000
BATCH_WITHIN_S = 0.25
TICK_S = 1.0
STATS_EVERY_S = 10.0


@dataclass
class Runtime:
    """What the agents share within one worker process (lives on the app, not in a module global)."""

    settings: Settings
    sink: InfluxWriter
    clock: Callable[[], float]
    pipelines: dict[str, SourcePipeline] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    started: float = field(default_factory=time.time)


def window_config(settings: Settings) -> WindowConfig:
    """Window policy from settings."""
    return WindowConfig(size=settings.window_seconds, grace=settings.grace_seconds,
                        late_retention=settings.late_retention_seconds, idle_close=settings.idle_close_seconds)


def faust_broker_options(settings: Settings) -> dict:
    """Faust's broker URL and credentials from settings."""
    opts: dict = {"broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")]}
    proto = settings.kafka_security_protocol
    if proto.startswith("SASL"):
        ssl_context = None
        if proto == "SASL_SSL":
            import ssl

            ssl_context = ssl.create_default_context(
                cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
        opts["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context)
    elif proto == "SSL":
        import ssl

        opts["broker_credentials"] = faust.SSLCredentials(ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None))
    return opts


def create_app(settings: Settings, sink: InfluxWriter | None = None,
               clock: Callable[[], float] = time.time) -> faust.App:
    """Build the worker's Faust app with its topics, tables, agents, timers and web routes."""
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **faust_broker_options(settings),
        store="memory://",
        value_serializer="raw",
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=5000,
        broker_commit_interval=1.0,
        producer_acks=-1,
        # A killed worker's partitions move to a new one after this, not after Faust's 60 s default.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        stream_buffer_maxsize=8192,
        web_port=settings.worker_web_port,
        web_bind="127.0.0.1",
        datadir=str(settings.data_dir / "faust"),
        table_standby_replicas=0,
    )
    if sink is None:
        sink = InfluxWriter(settings.influx_url, settings.influx_token.get_secret_value(), settings.influx_org,
                            settings.influx_bucket, max_batch_lines=settings.influx_batch_lines,
                            reject_file=settings.data_dir / "rejected-lines.txt")
    rt = Runtime(settings=settings, sink=sink, clock=clock)
    app.opsmon = rt  # type: ignore[attr-defined]
    wcfg = window_config(settings)

    for source, topic_name in source_topics(settings).items():
        topic = app.topic(topic_name, value_type=bytes, value_serializer="raw", key_serializer="raw",
                          partitions=settings.kafka_partitions)
        dlq = app.topic(settings.dlq_topics[topic_name], value_type=bytes, value_serializer="raw",
                        key_serializer="raw", partitions=settings.kafka_partitions)
        table = app.Table(f"state-{source}", default=None, partitions=settings.kafka_partitions)
        # State holds River models, which only pickle. Only opsmon workers write these changelogs;
        # restrict them with Kafka ACLs in production (README, Security). Faust derives a table's
        # serializers from its value type and fixes them in the changelog topic it builds at once,
        # so set them and build that topic again.
        table.key_serializer, table.value_serializer = "json", "pickle"
        table.changelog_topic = table._new_changelog_topic()
        rt.locks[source] = asyncio.Lock()
        _add_agent(app, rt, source, topic, dlq, table, wcfg)

    @app.timer(interval=TICK_S, name="opsmon.idle-flush")
    async def idle_flush() -> None:
        for source, pipeline in list(rt.pipelines.items()):
            async with rt.locks[source]:
                out = pipeline.tick(rt.clock())
                await _deliver(rt, source, out, None, _tables[source])

    @app.timer(interval=STATS_EVERY_S, name="opsmon.stats")
    async def write_stats() -> None:
        now_ms = int(time.time() * 1000)
        lines = [line("opsmon_pipeline", {"worker": settings.app_id, "topic": src},
                      {k: int(v) for k, v in p.totals.items()} or {"events": 0}, now_ms)
                 for src, p in rt.pipelines.items()]
        await rt.sink.write(lines)

    @app.page("/opsmon/stats")
    async def stats(self, request: web.Request) -> web.Response:  # noqa: ARG001
        body = {src: dict(p.totals) for src, p in rt.pipelines.items()}
        body["sink"] = vars(rt.sink.stats)
        return self.json(body)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **_: object) -> None:  # noqa: ARG001
        # Another worker owns these partitions now; drop our copy of their state.
        for source, topic_name in source_topics(settings).items():
            gone = {tp.partition for tp in revoked if tp.topic == topic_name}
            pipeline = rt.pipelines.get(source)
            if gone and pipeline is not None:
                for entity in [e for e, s in pipeline.states.items() if s.partition in gone]:
                    pipeline.states.pop(entity, None)
                for p in gone:
                    pipeline.watermarks.pop(p, None)
                    pipeline.last_arrival.pop(p, None)

    @app.on_before_shutdown.connect
    async def close_sink(app: faust.App, **_: object) -> None:  # noqa: ARG001
        await rt.sink.close()

    _tables = {src: app.tables[f"state-{src}"] for src in source_topics(settings)}
    return app


def _add_agent(app: faust.App, rt: Runtime, source: str, topic: faust.TopicT, dlq: faust.TopicT,
               table: faust.Table, wcfg: WindowConfig) -> None:
    async def process(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            pipeline = rt.pipelines.get(source)
            if pipeline is None:
                pipeline = rt.pipelines[source] = SourcePipeline(source, table.data, wcfg)
            records = [Record(e.message.partition, e.message.offset, e.message.key, e.value) for e in events]
            async with rt.locks[source]:
                out = pipeline.process(records, rt.clock())
                await _deliver(rt, source, out, dlq, table)

    app.agent(topic, name=f"opsmon.{source}", concurrency=1)(process)


async def _deliver(rt: Runtime, source: str, out: Output, dlq: faust.TopicT | None, table: faust.Table) -> None:
    """Dead letters out, points stored (acknowledged), then entity states changelogged."""
    for dead in out.dead:
        rec = dead.record
        await dlq.send(key=rec.key, value=rec.value, partition=rec.partition, headers={
            "opsmon-reason": dead.reason.encode(), "opsmon-kind": dead.kind.encode(),
            "opsmon-source-topic": source_topics(rt.settings)[source].encode(),
            "opsmon-source-partition": str(rec.partition).encode(),
            "opsmon-source-offset": str(rec.offset).encode()})
        log.info("dead-lettered source=%s partition=%d offset=%d reason=%r",
                 source, rec.partition, rec.offset, dead.reason)
    await rt.sink.write(out.lines)
    for entity in out.changed:
        state: EntityState | None = table.data.get(entity)
        if state is not None:
            table.send_changelog(state.partition, entity, state)
