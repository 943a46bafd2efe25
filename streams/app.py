"""The Faust app: topics declared once, thin agents, state in changelogged tables.

The source topics (IoT, POS, web, stock) are fetched in batches by :class:`streams.feed.SourceFeed`, not by
Faust agents: :class:`streams.pipeline.SourcePipeline` (with the scoring and demand observers) turns a
fetched batch into points, dead letters and alert events; the dead letters and alert events are sent and
the points written (acknowledged asynchronously, a few writes in flight), and the touched states are
marked changed. Every ``checkpoint_seconds`` the changed states are serialised; once every write so far is
acknowledged they are changelogged, the producer is flushed (dead letters, alert events, changelogs) and only
then the source offsets are committed, while the feed goes on: at-least-once, and replay is idempotent (see
``pipeline``).

The alerts agent groups alert events into incidents and delivers them (Alertmanager, webhook), retrying
while a receiver is down, so its offsets wait too. The feedback agent applies what people said about an
alert to that series' alert policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import faust
import faust.web
import msgspec
from aiohttp import web
from aiokafka.structs import TopicPartition
from faust.serializers import codecs

from models.alerting import IncidentTracker
from sinks.alerts import AlertmanagerSink, DeliveryRefused, WebhookSink
from sinks.influx import InfluxWriter
from sinks.lineproto import line
from sinks.links import signer as link_signer
from streams.alert_chart import AlertCharts
from streams.calendar import Calendars
from streams.config import WorkerSettings
from streams.demand import Demand, apply_stock
from streams.feed import SourceFeed
from streams.feedback_page import add_feedback_pages
from streams.heap import TRIM_EVERY_S, trim_heap
from streams.limits_file import LimitsFile
from streams.pipeline import DeadLetter, Output, Record, SourcePipeline, WindowConfig
from streams.schemas import (
    AlertEvent,
    Feedback,
    InvalidEvent,
    decode,
    decode_alert,
    decode_feedback,
    parse_alert_id,
)
from streams.scoring import Scoring, ScoringConfig
from streams.sources import SOURCES
from streams.state_codec import STATE_CODEC
from streams.state_codec import register as register_state_codec
from streams.topics import source_topics

log = logging.getLogger("opsmon.worker")

BATCH_MAX = 10_000  # records per fetch, over all source partitions
MAX_WRITES_IN_FLIGHT = 4  # unacknowledged InfluxDB writes before the feed waits (back-pressure)
TICK_S = 1.0
STATS_EVERY_S = 10.0


@dataclass
class Runtime:
    """What the agents share within one worker process (lives on the app, not in a module global)."""

    settings: WorkerSettings
    sink: InfluxWriter
    clock: Callable[[], float]
    pipelines: dict[str, SourcePipeline] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    alert_sinks: list = field(default_factory=list)
    alerts_sent: int = 0  # alert events put on the alerts topic
    alerts_delivered: int = 0
    # per source, accepted and dead-lettered events whose outputs are all out (alerts sent, points stored)
    delivered: Counter = field(default_factory=Counter)
    feedback_applied: int = 0
    feedback_to_models: int = 0  # of which changed a model (an alert's policy, or a detector's history)
    # per table ("iot", "pos", "web", "demand"), keys changed since the last checkpoint -> their partition
    dirty: dict[str, dict[str, int]] = field(default_factory=dict)
    writes: list[asyncio.Future] = field(default_factory=list)  # InfluxDB writes not yet acknowledged
    changelogging: asyncio.Future | None = None  # the latest changelog send (changelog_after)
    feed: SourceFeed | None = None
    first_batch_at: float | None = None  # when this worker began its first source batch (Unix time)


def window_config(settings: WorkerSettings) -> WindowConfig:
    """Window policy from settings."""
    return WindowConfig(size=settings.window_seconds, grace=settings.grace_seconds,
                        late_retention=settings.late_retention_seconds, idle_close=settings.idle_close_seconds)


def faust_broker_options(settings: WorkerSettings) -> dict:
    """Faust's broker URL and credentials from settings."""
    opts: dict = {"broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")]}
    proto = settings.kafka_security_protocol
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    if proto.startswith("SASL"):
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        opts["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=password, mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl.create_default_context(cafile=cafile) if proto == "SASL_SSL" else None)
    elif proto == "SSL":
        opts["broker_credentials"] = faust.SSLCredentials(ssl.create_default_context(cafile=cafile))
    return opts


# A state is one changelog record. A busy store remembers up to 50,000 transaction ids for de-duplication
# (streams.pipeline.MAX_REMEMBERED_TXNS), about 0.5-1 MB compressed: more than Kafka's 1 MB default record
# (a worker whose producer refused one crashed at its checkpoint). Changelog topics and the producer take records
# up to this size; the topic's setting overrides the broker's message.max.bytes.
MAX_STATE_BYTES = 16 * 2**20


def _pickled_table(app: faust.App, name: str, partitions: int) -> faust.Table:
    """A table whose values are pickled (River-style model state only pickles) and compressed (streams.state_codec)."""
    table = app.Table(name, default=None, partitions=partitions,
                      extra_topic_configs={"max.message.bytes": str(MAX_STATE_BYTES)})
    # Only opsmon workers write these changelogs; restrict them with Kafka ACLs in production (README,
    # Security). Faust derives a table's serializers from its value type and fixes them in the changelog
    # topic it builds at once, so set them and build that topic again.
    register_state_codec()
    table.key_serializer, table.value_serializer = "json", STATE_CODEC
    table.changelog_topic = table._new_changelog_topic()
    return table


def create_app(settings: WorkerSettings, sink: InfluxWriter | None = None,
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
        # Room for a big entity's state in one changelog record (see MAX_STATE_BYTES)
        producer_max_request_size=MAX_STATE_BYTES,
        consumer_max_fetch_size=MAX_STATE_BYTES,  # and restoring it from the changelog
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
                            reject_file=settings.data_dir / "rejected-lines.txt", gzip=settings.influx_gzip)
    rt = Runtime(settings=settings, sink=sink, clock=clock)
    # one-click feedback links in notifications (streams.feedback_page); off without a link secret
    links = link_signer(settings.link_secret.get_secret_value() if settings.link_secret else "",
                        settings.public_url, settings.worker_web_port, settings.link_ttl_seconds)
    if settings.alertmanager_url:
        rt.alert_sinks.append(AlertmanagerSink(settings.alertmanager_url, resend_s=settings.alert_resend_seconds,
                                               links=links))
    if settings.alert_webhook_url:
        rt.alert_sinks.append(WebhookSink(settings.alert_webhook_url, skip=settings.boards_only_severities,
                                          links=links))
    app.opsmon = rt  # type: ignore[attr-defined]
    parts = settings.kafka_partitions

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, value_type=bytes, value_serializer="raw", key_serializer="raw", partitions=parts)

    alerts_topic, feedback_topic = topic(settings.topic_alerts), topic(settings.topic_feedback)
    tables = {src: _pickled_table(app, f"state-{src}", parts) for src in source_topics(settings)}
    demand_table = _pickled_table(app, "demand", parts)
    incidents = _pickled_table(app, "incidents", parts)
    alert_index = app.Table("alert-index", default=None, partitions=parts)  # alert id -> latest event (json)
    calendars = Calendars.parse(settings.calendars, settings.default_calendar, settings.timezone)
    limits_file = LimitsFile(settings.limits_file, settings.limits) if settings.limits_file else None
    scoring_cfg = ScoringConfig(threshold=settings.score_threshold, grafana_url=settings.grafana_url,
                                window_size=settings.window_seconds, window_grace=settings.grace_seconds,
                                min_trials=settings.rate_min_trials, freeze_idle_s=settings.state_idle_seconds,
                                limits=limits_file.current if limits_file else settings.parsed_limits,
                                models=settings.parsed_models if settings.models else None)

    def pipeline(source: str) -> SourcePipeline:
        """The source's pipeline, built on first use (table stores exist once the app runs)."""
        p = rt.pipelines.get(source)
        if p is None:
            observers: list = [Scoring(source, scoring_cfg, calendars.is_open, calendars.pattern_time)]
            aux = None
            if SOURCES[source].forecasts_demand:
                aux = demand_table.data
                observers.append(Demand(aux, lead_time_days=settings.stock_lead_time_days,
                                        forecasters=settings.parsed_forecasters if settings.forecasters else None))
            p = rt.pipelines[source] = SourcePipeline(source, tables[source].data, window_config(settings),
                                                      observers, aux=aux)
        return p

    async def deliver(source: str, out: Output, dlq: faust.TopicT | None, changelog_now: bool = False) -> None:
        """Dead letters and alert events out, points written, changed state marked for the next checkpoint.

        The write is acknowledged in the background (the checkpoint waits for it); ``changelog_now`` sends
        the changed states at once and waits for the write, for callers whose offsets Faust commits (feedback).
        """
        for dead in out.dead:
            rec = dead.record
            assert dlq is not None
            await dlq.send(key=rec.key, value=rec.value, partition=rec.partition, headers={
                **dict(rec.headers),  # e.g. `producer`, and `opsmon-replay-of` on a replayed copy (streams.dlq)
                "opsmon-reason": dead.reason.encode(), "opsmon-kind": dead.kind.encode(),
                "opsmon-source-topic": dlq.get_topic_name().removesuffix(settings.dlq_suffix).encode(),
                "opsmon-source-partition": str(rec.partition).encode(),
                "opsmon-source-offset": str(rec.offset).encode()})
            log.info("dead-lettered source=%s partition=%d offset=%d reason=%r",
                     source, rec.partition, rec.offset, dead.reason)
        for ev in out.alerts:
            await alerts_topic.send(key=ev.group.encode(), value=msgspec.json.encode(ev))
            log.info("alert %s id=%s score=%.3f", ev.status, ev.id, ev.score)
        rt.alerts_sent += len(out.alerts)
        done = out.counts["events"] + out.counts["dead_lettered"]
        if source in tables:
            rt.dirty.setdefault(source, {}).update({e: s.partition for e in out.changed
                                                    if (s := tables[source].data.get(e)) is not None})
        rt.dirty.setdefault("demand", {}).update(out.aux_changed)
        write = asyncio.ensure_future(rt.sink.write(out.lines))
        write.add_done_callback(lambda f: f.cancelled() or f.exception() or rt.delivered.update({source: done}))
        rt.writes = [w for w in rt.writes if not w.done()]
        rt.writes.append(write)
        if changelog_now:
            await changelog_after()
            return
        while len(rt.writes) > MAX_WRITES_IN_FLIGHT:
            await rt.writes.pop(0)

    def snapshot() -> list[tuple[faust.Table, int, object, bytes]]:
        """Every state changed since the last checkpoint, serialised now: (table, partition, key, bytes).

        The bytes are the state of this moment (Faust's producer would serialise later); a state changed after
        this is marked again, for the next checkpoint.
        """
        taken = []
        for name, keys in list(rt.dirty.items()):
            table = demand_table if name == "demand" else tables[name]
            rt.dirty[name] = {}
            for key, partition in keys.items():
                value = table.data.get(key)
                if value is not None:
                    taken.append((table, partition, key, codecs.dumps(table.value_serializer, value)))
        return taken

    def changelog_after() -> asyncio.Future:
        """The changed states serialised now, and sent to their changelogs once the writes in flight now (the
        points of every event they hold) are acknowledged: a state changelogged never holds an event whose points
        are not stored (a restart skips the events its state holds). Sent after any earlier such send, so a key's
        changelog records go out in the order its states were taken."""
        taken = snapshot()
        writes = list(rt.writes)
        previous = rt.changelogging

        async def send() -> None:
            for w in writes:
                await w
            if previous is not None:
                await previous
            for table, partition, key, blob in taken:
                table.send_changelog(partition, key, blob, value_serializer="raw")

        rt.changelogging = sent = asyncio.ensure_future(send())
        return sent

    async def begin_checkpoint() -> Awaitable[None]:
        """The changed states serialised now; returns what settles the checkpoint, after which the offsets noted
        may be committed: those states changelogged once every point written so far is acknowledged, and the
        producer flushed (changelogs, dead letters, alert events).

        The feed goes on handling batches while it settles: the points of later events, and states changed
        meanwhile, are the next checkpoint's (which waits for this one).
        """
        sent = changelog_after()

        async def settle() -> None:
            await sent
            await app.producer.flush()

        return settle()

    async def handle(topic_name: str, records: list[Record]) -> None:
        """One fetched batch of one source topic, to the handler its topic names."""
        if rt.first_batch_at is None:
            rt.first_batch_at = time.time()
        await handlers[topic_name](records, dlqs[topic_name])

    async def handle_source(source: str, records: list[Record], dlq: faust.TopicT) -> None:
        async with rt.locks[source]:
            out = pipeline(source).process(records, rt.clock())
            await deliver(source, out, dlq)

    async def handle_stock(records: list[Record], dlq: faust.TopicT) -> None:
        # Keyed by store like POS transactions, so a store's stock lives in its POS partition's state.
        out = Output()
        async with rt.locks["pos"]:
            demands = [o for o in pipeline("pos").observers if isinstance(o, Demand)] if "pos" in tables else []
            for rec in records:
                try:
                    ev = decode("stock", rec.value, rt.clock())
                except InvalidEvent as exc:
                    out.dead.append(DeadLetter(rec, exc.kind, str(exc)))
                    out.counts["dead_lettered"] += 1
                else:
                    key = apply_stock(demand_table.data, ev, rec.partition, rec.offset)
                    if key is not None:
                        out.aux_changed[key] = rec.partition
                        for demand in demands:
                            demand.on_stock(ev.store, ev.sku, ev.ts, out)
                    out.counts["events"] += 1
            await deliver("stock", out, dlq)

    # Each source topic's handler, declared once: a source's pipeline, or stock counts (a topic without a
    # pipeline of its own: they update the POS partitions' demand state).
    handlers: dict[str, Callable[[list[Record], faust.TopicT], Awaitable[None]]] = {
        name: functools.partial(handle_source, source) for source, name in source_topics(settings).items()}
    handlers[settings.topic_stock] = handle_stock
    dlqs = {name: topic(settings.dlq_topics[name]) for name in handlers}

    async def commit(offsets: dict) -> bool:
        # Through Faust's consumer: the group member, whose generation fences a worker that lost the partition.
        return await app.consumer._commit(offsets)

    for source in source_topics(settings):
        rt.locks[source] = asyncio.Lock()
    for name in handlers:
        # Subscribed through Faust (so the assignor co-partitions them with the tables), fetched by the feed.
        app.topics.add(topic(name))
    rt.feed = SourceFeed(set(handlers), settings.app_id, _aiokafka_options(settings), handle, begin_checkpoint,
                         commit, interval=settings.checkpoint_seconds, batch_max=BATCH_MAX)

    @app.agent(alerts_topic, name="opsmon.alerts", concurrency=1)
    @_crash_worker_on_error(app)
    async def route_alerts(stream: faust.StreamT) -> None:
        # Tables are written through their store plus an explicit changelog send to the event's partition
        # (as for entity state): Faust's table API checks partition counts against metadata that may not
        # list a just-created changelog topic yet, and that check would crash the agent.
        async for event in stream.events():
            try:
                ev = decode_alert(event.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("undecodable alert event skipped: %s", exc)
                continue
            part = event.message.partition
            tracker = incidents.data.get(ev.group) or IncidentTracker(window_s=settings.incident_window_seconds)
            if ev.status == "firing":
                inc = tracker.assign(ev.group, ev.id, f"{ev.metric} of {ev.entity} ({ev.kind})", ev.starts_at)
                tracker.forget_before(ev.starts_at - 7 * 86400)
                incidents.data[ev.group] = tracker
                incidents.send_changelog(part, ev.group, tracker)
                ev.incident, ev.first_cause = inc.id, inc.first_cause
            else:
                prev = alert_index.data.get(ev.id)
                if prev:
                    ev.incident, ev.first_cause = prev.get("incident", ""), prev.get("first_cause", "")
            record = msgspec.to_builtins(ev)
            alert_index.data[ev.id] = record
            alert_index.send_changelog(part, ev.id, record)
            # On the boards first: a receiver that is down delays delivery, not what people see.
            await rt.sink.write(alert_points(ev))
            await _deliver_alerts(rt, [ev])

    @app.agent(feedback_topic, name="opsmon.feedback", concurrency=1)
    @_crash_worker_on_error(app)
    async def apply_feedback(stream: faust.StreamT) -> None:
        async for raw in stream:
            try:
                fb = decode_feedback(raw)
            except InvalidEvent as exc:
                log.error("invalid feedback skipped: %s", exc)
                continue
            source, entity, metric, start = parse_alert_id(fb.alert_id)
            async with rt.locks[source]:
                p = pipeline(source)
                out = Output()
                applied = p.observers[0].feedback(entity, p.states.get(entity), metric, fb.kind, start, fb.at,
                                                  fb.user, out)
                if applied:
                    out.changed.add(entity)
                out.lines.append(line("feedback", {"entity": entity, "metric": metric, "kind": fb.kind},
                                      {"count": 1, "applied": int(applied)}, int(fb.at * 1000)))
                await deliver(source, out, None, changelog_now=True)
                rt.feedback_applied += 1
                rt.feedback_to_models += applied

    @app.timer(interval=TICK_S, name="opsmon.tick")
    async def tick() -> None:
        for source in list(rt.pipelines):
            async with rt.locks[source]:
                out = rt.pipelines[source].tick(rt.clock())
                await deliver(source, out, None)

    @app.timer(interval=TRIM_EVERY_S, name="opsmon.trim-heap")
    async def return_freed_memory() -> None:
        trim_heap()  # what the ticks' freezing freed between live blobs (see streams.heap)

    @app.timer(interval=settings.alert_resend_seconds, name="opsmon.alert-resend")
    async def resend_firing() -> None:
        # Alertmanager resolves an alert whose endsAt passed; firing ones are re-sent before that.
        firing = [msgspec.convert(v, AlertEvent) for v in list(alert_index.data.values())
                  if v and v.get("status") == "firing"]
        if firing:
            await _deliver_alerts(rt, firing)

    if limits_file is not None:
        @app.timer(interval=settings.limits_poll_seconds, name="opsmon.limits")
        async def reload_limits() -> None:
            failed = limits_file.error
            new = limits_file.poll()
            if new is None:
                if limits_file.error and limits_file.error != failed:
                    log.error("%s; the limits in force stay", limits_file.error)
                return
            scoring_cfg.limits = new  # shared by every source's scoring; each matches its series afresh
            for p in rt.pipelines.values():
                for observer in p.observers:
                    if isinstance(observer, Scoring):
                        observer.forget_limits()
            log.info("limits reloaded from %s: %d rules", limits_file.path, len(new.rules))

    @app.timer(interval=STATS_EVERY_S, name="opsmon.stats")
    async def write_stats() -> None:
        now_ms = int(time.time() * 1000)
        lag = rt.feed.lag() if rt.feed is not None else {}
        lines = [line("opsmon_pipeline", {"worker": settings.app_id, "topic": src},
                      {**{k: int(v) for k, v in p.totals.items()}, "lag": lag.get(source_topics(settings)[src], 0)},
                      now_ms)
                 for src, p in rt.pipelines.items()]
        await rt.sink.write(lines)

    @app.page("/opsmon/stats")
    async def stats(self, request: web.Request) -> web.Response:  # noqa: ARG001
        body: dict = {src: dict(p.totals) for src, p in rt.pipelines.items()}
        # when these counts were read, by this worker's clock: no batch is under way as this handler runs, so a
        # rate between two answers is exact however late a busy worker sends them
        body["at"] = time.time()
        body["first_batch_at"] = rt.first_batch_at
        body["delivered"] = dict(rt.delivered)
        body["sink"] = vars(rt.sink.stats)
        body["alerts"] = {"sent": rt.alerts_sent, "delivered": rt.alerts_delivered,
                          "feedback_applied": rt.feedback_applied, "feedback_to_models": rt.feedback_to_models}
        if limits_file is not None:
            body["limits"] = {"rules": len(limits_file.current.rules), "reloads": limits_file.reloads,
                              "error": limits_file.error}
        if rt.feed is not None:
            lag, held = rt.feed.lag(), rt.feed.held()
            body["feed"] = {name: {**vars(st), "partitions": held.get(name, []), "committed_lag": lag.get(name, 0)}
                            for name, st in rt.feed.stats.items()}
        return self.json(body)

    @app.page("/opsmon/feedback")
    class FeedbackView(faust.web.View):
        """POST feedback on an alert (bearer token); it goes to the feedback topic."""

        async def post(self, request: web.Request) -> web.Response:
            status, body = await _feedback_request(settings, request, alert_index, feedback_topic, rt.clock)
            return self.json(body, status=status)

    if links is not None:
        charts = AlertCharts(settings.influx_url, settings.influx_token.get_secret_value(), settings.influx_bucket,
                             settings.data_dir / "charts")
        add_feedback_pages(app, links, alert_index, feedback_topic, charts, rt.clock)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set, **_: object) -> None:  # noqa: ARG001
        assert rt.feed is not None
        ours = [tp for tp in assigned if tp.topic in handlers]
        # Faust's own client never fetches the source partitions (the feed does); its client is paused on them.
        app.consumer._thread._ensure_consumer().pause(*(TopicPartition(tp.topic, tp.partition) for tp in ours))
        rt.feed.assigned(assigned)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **_: object) -> None:  # noqa: ARG001
        assert rt.feed is not None
        gone = await rt.feed.revoked(revoked)  # checkpointed: the next owner starts where stored work ends
        # Another worker owns these partitions now; drop our copy of their state.
        for source, topic_name in source_topics(settings).items():
            parts = {tp.partition for tp in gone if tp.topic == topic_name}
            p = rt.pipelines.get(source)
            if parts and p is not None:
                for entity in [e for e, s in p.states.items() if s.partition in parts]:
                    p.states.pop(entity, None)
                for part in parts:
                    p.watermarks.pop(part, None)
                    p.last_arrival.pop(part, None)

    @app.task
    async def run_feed() -> None:
        assert rt.feed is not None
        rt.feed.start(lambda: app.rebalancing)
        while rt.feed.failed is None:
            await asyncio.sleep(1.0)
        log.error("source feed failed; stopping the worker so it restarts clean", exc_info=rt.feed.failed)
        await app.crash(rt.feed.failed)

    @app.on_before_shutdown.connect
    async def close_sinks(app: faust.App, **_: object) -> None:  # noqa: ARG001
        if rt.feed is not None:
            with contextlib.suppress(Exception):  # a broker that is gone leaves the last checkpoint in force
                await rt.feed.stop()
        await rt.sink.close()
        for s in rt.alert_sinks:
            await s.close()

    return app


def _crash_worker_on_error(app: faust.App) -> Callable:
    """Make an unexpected error in an agent stop the whole worker (exit code 1) instead of leaving a dead agent.

    Faust logs a crashed agent and carries on without it; a stalled pipeline is worse than a restart, which a
    supervisor (systemd, compose's restart policy) does, and Kafka redelivers what was not committed.
    """
    def wrap(fun: Callable) -> Callable:
        @functools.wraps(fun)
        async def agent(stream: faust.StreamT) -> None:
            try:
                await fun(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("agent %s failed; stopping the worker so it restarts clean", fun.__name__)
                await app.crash(exc)
                raise
        return agent
    return wrap


def _aiokafka_options(settings: WorkerSettings) -> dict:
    """aiokafka's connection settings (the feed's client) from settings."""
    cfg = settings.kafka_client_config()
    opts: dict = {"bootstrap_servers": cfg["bootstrap_servers"], "security_protocol": cfg["security_protocol"]}
    proto = settings.kafka_security_protocol
    if proto.startswith("SASL"):
        opts.update(sasl_mechanism=cfg["sasl_mechanism"], sasl_plain_username=cfg["sasl_plain_username"],
                    sasl_plain_password=cfg["sasl_plain_password"])
    if proto.endswith("SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        opts["ssl_context"] = ssl.create_default_context(cafile=cafile)
    return opts


def alert_points(ev: AlertEvent) -> list[str]:
    """The ``alert`` points of an alert event (``alert_states``)."""
    return [_alert_point(ev, severity, status, t_ms) for severity, status, t_ms in alert_states(ev)]


def alert_states(ev: AlertEvent) -> list[tuple[str, str, int]]:
    """(severity, status, time in ms) of each ``alert`` point of an alert event: its state at its time, and the close
    of its former severity.

    A close is written at least a millisecond after the opening it closes: the two are points of different series
    (``state`` is a tag), and at one timestamp the boards' ``last("open")`` could pick either, leaving an alert
    withdrawn in the minute it opened (late data corrected the window) open on the boards for good.
    """
    opened_ms = _ms(ev.starts_at)
    if ev.status == "firing":
        states = [(ev.severity, ev.status, opened_ms)]
    else:
        states = [(ev.severity, ev.status, max(_ms(ev.ends_at or ev.starts_at), opened_ms + 1))]
    if ev.escalated_from and ev.escalated_at is not None:  # the boards close it under its former severity
        states.append((ev.escalated_from, "resolved", max(_ms(ev.escalated_at), opened_ms + 1)))
    return states


def _ms(t: float) -> int:
    return int(t * 1000)


def _alert_point(ev: AlertEvent, severity: str, status: str, t_ms: int) -> str:
    """The ``alert`` measurement's point: open=1 as it fires, open=0 as it resolves."""
    return line("alert", {"source": ev.source, "entity": ev.entity, "metric": ev.metric, "severity": severity,
                          "state": status},
                {"score": ev.score, "observed": ev.observed, "expected": ev.expected,
                 "open": 1.0 if status == "firing" else 0.0}, t_ms)


async def _deliver_alerts(rt: Runtime, events: list[AlertEvent]) -> None:
    for s in rt.alert_sinks:
        try:
            await s.send(events, rt.clock())
        except DeliveryRefused as exc:
            log.error("alert delivery refused, alert kept in the alert index and the alert measurement: %s", exc)
    rt.alerts_delivered += len(events)


async def _feedback_request(settings: WorkerSettings, request: web.Request, alert_index: faust.Table,
                            feedback_topic: faust.TopicT, clock: Callable[[], float]) -> tuple[int, dict]:
    """Validate a feedback request and queue it on the feedback topic: (HTTP status, JSON body)."""
    if settings.feedback_token is None:
        return 503, {"error": "feedback is disabled: set OPSMON_FEEDBACK_TOKEN on the worker"}
    expected = f"Bearer {settings.feedback_token.get_secret_value()}"
    if not _same(request.headers.get("Authorization", ""), expected):
        return 401, {"error": "missing or wrong bearer token"}
    if (request.content_length or 0) > settings.feedback_max_bytes:
        return 413, {"error": f"body larger than {settings.feedback_max_bytes} bytes"}
    raw = await request.content.read(settings.feedback_max_bytes + 1)
    if len(raw) > settings.feedback_max_bytes:
        return 413, {"error": f"body larger than {settings.feedback_max_bytes} bytes"}
    try:
        req = msgspec.json.decode(raw, type=_FeedbackRequest)
        _, entity, _, _ = parse_alert_id(req.alert_id)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        return 400, {"error": f"bad request: {exc}"}
    if alert_index.data.get(req.alert_id) is None:
        return 404, {"error": f"unknown alert id {req.alert_id!r}"}
    fb = Feedback(alert_id=req.alert_id, kind=req.kind, at=clock(), user=req.user[:100], note=req.note[:500])
    await feedback_topic.send(key=entity.encode(), value=msgspec.json.encode(fb))
    return 202, {"accepted": msgspec.to_builtins(fb)}


class _FeedbackRequest(msgspec.Struct):
    alert_id: str
    kind: str
    user: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("ack", "false_positive"):
            raise ValueError("kind must be 'ack' or 'false_positive'")


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())
