"""MQTT → Kafka bridge for devices that speak MQTT: nothing acknowledged to a device is ever lost.

The bridge subscribes (QoS 1) to a topic tree such as ``sites/+/devices/+/readings`` with a fixed client
id and a persistent session (MQTT 5 session expiry, or ``clean_session=False`` on 3.1.1), so the broker
queues what devices publish while the bridge is down and delivers it on reconnect. Each message is
produced to the IoT topic, keyed ``site/device``, and the MQTT PUBACK goes out only after Kafka has
acknowledged the produce (paho's manual acks, released in the order the messages arrived), so a crash
at any point leaves every unacknowledged message with the broker, which delivers it again.

A message delivered again may already be in Kafka (produced, crash before the PUBACK): the IoT topic
can hold duplicates, which the pipeline absorbs because a reading overwrites its point by timestamp.

Payloads:

* valid readings go to the IoT topic as they are; when ``site`` or ``device`` is missing, the bridge takes
  them from the topic path (``sites/<site>/devices/<device>/...``) and re-encodes the JSON;
* invalid ones also go to the IoT topic, unchanged, so the worker dead-letters them with its standard
  reason headers: there is one judge of validity and one writer of dead letters;
* payloads over the schema's size limit (64 KiB) cannot be valid and may exceed Kafka's message limit:
  they go straight to the IoT dead-letter topic, cut to the limit, with ``opsmon-reason`` and
  ``opsmon-kind: size`` headers.

    bridge = MqttBridge(settings, BridgeConfig.from_url("mqtt://127.0.0.1:1883")).start()
    ...
    bridge.stop()
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streams.config import KafkaSettings
from streams.publisher import Publisher
from streams.schemas import MAX_EVENT_BYTES, InvalidEvent, decode

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "sites/+/devices/+/readings"
DEFAULT_CLIENT_ID = "opsmon-bridge"
WEEK_SECONDS = 7 * 86_400


class BridgeError(RuntimeError):
    """The bridge cannot run: a bad URL or topic pattern, or the broker refused it."""


@dataclass(frozen=True)
class BridgeConfig:
    """Where and how the bridge subscribes."""

    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = DEFAULT_TOPIC
    client_id: str = DEFAULT_CLIENT_ID
    protocol: Literal["5", "3.1.1"] = "5"
    session_expiry: int = WEEK_SECONDS  # MQTT 5: how long the broker keeps the session while we are away
    receive_maximum: int = 1000  # MQTT 5: unacknowledged messages the broker may have in flight to us
    keepalive: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str, **overrides: object) -> BridgeConfig:
        """From ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS, default port 8883).

        >>> c = BridgeConfig.from_url("mqtts://dev:s3cret@broker.example:8884")
        >>> c.host, c.port, c.tls, c.username
        ('broker.example', 8884, True, 'dev')
        """
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise BridgeError(f"bad MQTT URL {url!r}: expected mqtt://host:port or mqtts://host:port")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise BridgeError(f"bad MQTT URL {url!r}: {exc}") from None
        values: dict = {"host": parts.hostname, "port": port, "tls": tls,
                        "username": unquote(parts.username) if parts.username else None,
                        "password": unquote(parts.password) if parts.password else None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class TopicPattern:
    """A subscription pattern whose levels name the site and the device.

    ``{site}`` and ``{device}`` mark the levels (``sites/{site}/devices/{device}/readings``); in a plain
    filter the first ``+`` is the site and the second the device.

    >>> p = TopicPattern("sites/+/devices/+/readings")
    >>> p.filter, p.match("sites/s1/devices/d7/readings"), p.match("other/topic")
    ('sites/+/devices/+/readings', ('s1', 'd7'), None)
    """

    def __init__(self, pattern: str) -> None:
        levels = pattern.split("/")
        named = "{site}" in levels or "{device}" in levels
        self.site_at: int | None = None
        self.device_at: int | None = None
        plus = 0
        for i, level in enumerate(levels):
            if level == "{site}" or (not named and level == "+" and plus == 0):
                self.site_at = i
            elif level == "{device}" or (not named and level == "+" and plus == 1):
                self.device_at = i
            elif level == "#" and i != len(levels) - 1:
                raise BridgeError(f"bad topic pattern {pattern!r}: '#' must be the last level")
            elif ("+" in level or "#" in level or "{" in level) and level not in ("+", "#"):
                raise BridgeError(f"bad topic pattern {pattern!r}: level {level!r}")
            if level == "+":
                plus += 1
        self.levels = levels
        self.filter = "/".join("+" if lv in ("{site}", "{device}") else lv for lv in levels)

    def match(self, topic: str) -> tuple[str | None, str | None] | None:
        """(site, device) from a topic that matches the filter, else None."""
        parts = topic.split("/")
        for i, level in enumerate(self.levels):
            if level == "#":
                break
            if i >= len(parts) or (level not in ("+", "{site}", "{device}") and parts[i] != level):
                return None
        else:
            if len(parts) != len(self.levels):
                return None
        site = parts[self.site_at] if self.site_at is not None else None
        device = parts[self.device_at] if self.device_at is not None else None
        return site or None, device or None


@dataclass(frozen=True)
class Forward:
    """What to produce for one MQTT message."""

    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    reason: str | None = None  # why it is invalid (None: a valid reading)


def prepare(mqtt_topic: str, payload: bytes, pattern: TopicPattern, iot_topic: str, dlq_topic: str,
            now: float | None = None) -> Forward:
    """Validate (filling site/device from the topic path) and decide where a message goes.

    >>> p = TopicPattern(DEFAULT_TOPIC)
    >>> f = prepare("sites/s1/devices/d1/readings",
    ...             b'{"v":1,"time":"2026-01-01T00:00:00Z","measurements":{"t":1.5}}', p, "iot", "iot.dlq")
    >>> f.topic, f.key, orjson.loads(f.value)["site"], f.reason
    ('iot', b's1/d1', 's1', None)
    >>> prepare("sites/s1/devices/d1/readings", b"{oops", p, "iot", "iot.dlq").reason[:5]
    'json:'
    """
    site, device = pattern.match(mqtt_topic) or (None, None)
    headers = {"opsmon-mqtt-topic": mqtt_topic.encode()}
    topic_key = f"{site}/{device}".encode() if site and device else None
    if len(payload) > MAX_EVENT_BYTES:
        reason = f"size: {len(payload)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"
        return Forward(dlq_topic, topic_key, payload[:MAX_EVENT_BYTES],
                       {**headers, "opsmon-reason": reason.encode(), "opsmon-kind": b"size",
                        "opsmon-source": b"mqtt", "opsmon-truncated-from": str(len(payload)).encode()}, reason)
    value = payload
    if (site and b'"site"' not in payload) or (device and b'"device"' not in payload):
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            if site:
                obj.setdefault("site", site)
            if device:
                obj.setdefault("device", device)
            value = orjson.dumps(obj)
    try:
        ev = decode("iot", value, now)
    except InvalidEvent as exc:
        # The original bytes, so the dead letter shows what the device really sent.
        return Forward(iot_topic, topic_key, payload, headers, str(exc))
    return Forward(iot_topic, ev.entity.encode(), value, headers)


class _Pending:
    """One QoS 1 message between its arrival and its PUBACK."""

    __slots__ = ("mid", "qos", "gen", "fwd", "done", "attempts")

    def __init__(self, mid: int, qos: int, gen: int, fwd: Forward) -> None:
        self.mid, self.qos, self.gen, self.fwd = mid, qos, gen, fwd
        self.done = False
        self.attempts = 0


class MqttBridge:
    """Subscribe to MQTT, produce to Kafka, and acknowledge to MQTT only what Kafka acknowledged."""

    def __init__(self, settings: KafkaSettings, config: BridgeConfig = BridgeConfig(),
                 publisher: Publisher | None = None) -> None:
        self.settings = settings
        self.config = config
        self.pattern = TopicPattern(config.topic)
        self.iot_topic = settings.topic_iot
        self.dlq_topic = settings.dlq_topics[settings.topic_iot]
        self._own_publisher = publisher is None
        self.publisher = publisher or Publisher(settings, client_id="opsmon-mqtt-bridge", linger_ms=5,
                                                max_block_ms=10_000)
        self._lock = threading.Lock()
        self._intake = threading.Lock()  # held while a message is handed to the producer
        self._pending: deque[_Pending] = deque()  # in arrival order; acked from the front
        self._gen = 0  # connection generation: acks of an earlier connection are void
        self._retry: queue.Queue[_Pending] = queue.Queue()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._disconnected = threading.Event()
        self._barriers: dict[int, threading.Event] = {}  # UNSUBSCRIBE mid -> set on its UNSUBACK
        self.counts = {"received": 0, "forwarded": 0, "invalid": 0, "dead_lettered": 0, "acked": 0,
                       "retried": 0, "connects": 0, "ignored": 0}
        self.client = self._client()
        self._retrier = threading.Thread(target=self._retry_loop, name="mqtt-bridge-retry", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def _client(self) -> mqtt.Client:
        c = self.config
        v5 = c.protocol == "5"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=c.client_id,
                             clean_session=None if v5 else False,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True)
        if c.username:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            client.tls_set(ca_certs=c.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.suppress_exceptions = True  # log a failing callback, keep the network loop alive
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        return client

    def start(self, wait: float | None = 10.0) -> MqttBridge:
        """Connect and subscribe in the background; wait up to ``wait`` seconds for the subscription."""
        c = self.config
        props = None
        if c.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = c.session_expiry
            props.ReceiveMaximum = c.receive_maximum
        self.client.connect_async(c.host, c.port, keepalive=c.keepalive,
                                  clean_start=False if c.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=props)
        self.client.loop_start()
        self._retrier.start()
        log.info("mqtt bridge starting broker=%s:%d filter=%s client_id=%s protocol=%s to=%s",
                 c.host, c.port, self.pattern.filter, c.client_id, c.protocol, self.iot_topic)
        if wait and not self._subscribed.wait(wait):
            log.warning("mqtt bridge: not subscribed after %.0fs; still trying %s:%d", wait, c.host, c.port)
        return self

    @property
    def subscribed(self) -> bool:
        """True once the broker has confirmed the subscription (on the current connection)."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until subscribed; False on timeout."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Take no new messages, let Kafka acknowledge what is in flight, send those PUBACKs, disconnect.

        Messages that arrive meanwhile stay unacknowledged: the broker delivers them to the next session.
        """
        with self._intake:  # a message being handed to Kafka right now gets there first
            self._stopping.set()
        deadline = time.monotonic() + timeout
        self.publisher.flush(timeout=timeout)  # every callback has run: the PUBACKs are queued
        if not self._barrier(max(0.1, deadline - time.monotonic())):
            log.warning("mqtt bridge: the broker did not confirm the last acknowledgements; it may send "
                        "some messages again (duplicates, not losses)")
        self.client.disconnect()
        self._disconnected.wait(max(0.1, deadline - time.monotonic()))
        self.client.loop_stop()
        if self._own_publisher:
            self.publisher.close()
        log.info("mqtt bridge stopped %s", self.stats())

    def _barrier(self, timeout: float) -> bool:
        """Wait until the broker has processed everything sent so far, PUBACKs included.

        Closing the socket right after the last PUBACKs can lose them (a close with unread data sends a
        TCP reset), and the broker would deliver those messages again. The broker handles one connection's
        packets in order, so its UNSUBACK for a filter we never used proves the PUBACKs arrived.
        """
        done = threading.Event()
        with self._lock:
            rc, mid = self.client.unsubscribe(f"opsmon/bridge-barrier/{self.config.client_id}")
            if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
                return False
            self._barriers[mid] = done
        return done.wait(timeout)

    def run(self, stop: threading.Event, on_stats: Callable[[dict], None] | None = None,
            interval: float = 10.0) -> None:
        """Block until ``stop`` is set, reporting counters every ``interval`` seconds."""
        while not stop.wait(interval):
            if on_stats is not None:
                on_stats(self.stats())

    def stats(self) -> dict:
        """Counters, plus messages awaiting Kafka's acknowledgement."""
        with self._lock:
            return {**self.counts, "pending": len(self._pending), "failed_produces": self.publisher.failed}

    # ------------------------------------------------------------------ MQTT callbacks (paho's thread)
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.error("mqtt bridge: broker refused the connection: %s", reason)
            return
        self._disconnected.clear()
        with self._lock:
            self._gen += 1
            self._pending.clear()  # the broker delivers those again, on this connection
            self.counts["connects"] += 1
        log.info("mqtt bridge connected session_present=%s", flags.session_present)
        client.subscribe(self.pattern.filter, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: list,
                      properties: Properties | None) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("mqtt bridge: subscription to %s refused: %s", self.pattern.filter, failed)
            return
        self._subscribed.set()
        log.info("mqtt bridge subscribed filter=%s", self.pattern.filter)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: list,
                        properties: Properties | None) -> None:
        with self._lock:
            done = self._barriers.pop(mid, None)
        if done is not None:
            done.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        self._subscribed.clear()
        self._disconnected.set()
        if not self._stopping.is_set():
            log.warning("mqtt bridge disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._intake:
            if self._stopping.is_set():
                self.counts["ignored"] += 1  # not acknowledged: the next session gets it
                return
            self._take(msg)

    def _take(self, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode(errors="replace")  # not UTF-8: still dead-lettered, never lost
        try:
            fwd = prepare(topic, msg.payload, self.pattern, self.iot_topic, self.dlq_topic)
        except Exception as exc:  # noqa: BLE001  (a bug must not stop the flow: the message is kept)
            reason = f"bridge: {type(exc).__name__}: {exc}"
            fwd = Forward(self.dlq_topic, None, msg.payload[:MAX_EVENT_BYTES],
                          {"opsmon-reason": reason.encode(), "opsmon-kind": b"bridge", "opsmon-source": b"mqtt"},
                          reason)
        with self._lock:
            self.counts["received"] += 1
            if fwd.reason is not None:
                self.counts["dead_lettered" if fwd.topic == self.dlq_topic else "invalid"] += 1
            entry = _Pending(msg.mid, msg.qos, self._gen, fwd)
            if msg.qos > 0:
                self._pending.append(entry)
        if fwd.reason is not None:
            log.info("mqtt bridge: invalid payload topic=%s reason=%r to=%s", topic, fwd.reason, fwd.topic)
        self._produce(entry)

    # ------------------------------------------------------------------ Kafka side
    def _produce(self, entry: _Pending) -> None:
        entry.attempts += 1
        fwd = entry.fwd
        try:
            future = self.publisher.send_to(fwd.topic, fwd.key, fwd.value, fwd.headers)
        except Exception as exc:  # noqa: BLE001  (kafka-python raises several types; all mean "retry")
            self._failed(entry, exc)
            return
        future.add_callback(lambda _md: self._done(entry))
        future.add_errback(lambda exc: self._failed(entry, exc))

    def _done(self, entry: _Pending) -> None:
        """Kafka has the message: release PUBACKs from the front of the queue, in arrival order."""
        with self._lock:
            self.counts["forwarded"] += 1
            if entry.qos == 0 or entry.gen != self._gen:
                return
            entry.done = True
            while self._pending and self._pending[0].done:
                p = self._pending.popleft()
                self.client.ack(p.mid, p.qos)
                self.counts["acked"] += 1

    def _failed(self, entry: _Pending, exc: BaseException) -> None:
        """Kafka did not take it: try again later; the messages behind it wait for their PUBACK."""
        log.warning("mqtt bridge: produce failed (attempt %d): %s", entry.attempts, exc)
        self._retry.put(entry)

    def _retry_loop(self) -> None:
        while True:
            entry = self._retry.get()
            with self._lock:
                stale = entry.qos > 0 and entry.gen != self._gen
            if stale or self._stopping.is_set():
                continue  # the broker redelivers it (new connection) or the next session gets it
            time.sleep(min(30.0, 0.5 * 2 ** min(entry.attempts, 6)))
            with self._lock:
                self.counts["retried"] += 1
            self._produce(entry)
