"""``opsmon publish`` (JSON lines to a source topic) and ``opsmon bridge mqtt`` (MQTT devices to Kafka)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console

from opsmon.cli.output import print_error
from opsmon.settings import Settings

console = Console(stderr=True)
bridge_app = typer.Typer(help="Bridges from device protocols into opsmon's topics.", no_args_is_help=True)

SOURCES = ("iot", "pos", "web")


def publish(
    file: Annotated[str, typer.Argument(help="A JSON-lines file, one event per line; '-' reads standard input.")
                    ] = "-",
    source: Annotated[str, typer.Option("--source", "-s", help="The events' source: iot, pos or web.")] = "iot",
    send_invalid: Annotated[bool, typer.Option(help="Send invalid lines too (the worker dead-letters them "
                                               "with the reason).")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only validate; send nothing.")] = False,
    show: Annotated[int, typer.Option(help="Invalid lines to list (all are counted).")] = 20,
) -> None:
    """Validate events from a JSON-lines file (or stdin) and publish them, batched and compressed, to a source topic.

    Lines are checked with the worker's own schema; invalid ones are listed (line number, reason) and left out.
    Exits 1 if a line was left out or Kafka did not take every message.
    """
    from kafka.errors import KafkaError

    from streams.publisher import Publisher
    from streams.schemas import InvalidEvent, decode

    if source not in SOURCES:
        raise typer.BadParameter(f"use one of {', '.join(SOURCES)}", param_hint="--source")
    settings = Settings()
    topic = settings.topic_iot if source == "iot" else settings.topic_pos if source == "pos" else settings.topic_web
    try:
        stream: BinaryIO = sys.stdin.buffer if file == "-" else Path(file).open("rb")  # noqa: SIM115
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint="FILE") from None
    lines = valid = invalid = sent_invalid = 0
    started = time.monotonic()
    try:
        pub = None if dry_run else Publisher(settings, client_id="opsmon-publish")
    except KafkaError as exc:
        print_error(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}")
        raise typer.Exit(1) from None
    try:
        with stream, console.status(f"publishing to {topic}") as status:
            for number, line in enumerate(stream, start=1):
                raw = line.strip()
                if not raw:
                    continue
                lines += 1
                try:
                    ev = decode(source, raw)
                except InvalidEvent as exc:
                    invalid += 1
                    if invalid <= show:
                        console.print(f"line {number}: {exc}", markup=False, highlight=False)
                    if send_invalid and pub is not None:
                        pub.send_raw(source, None, raw)
                        sent_invalid += 1
                    continue
                valid += 1
                if pub is not None:
                    pub.send_raw(source, ev.entity, raw)  # the original bytes: unknown fields stay
                if lines % 20_000 == 0:
                    status.update(f"publishing to {topic}: {lines:,} lines")
            if pub is not None:
                status.update(f"waiting for Kafka to acknowledge {pub.sent:,} messages")
                pub.flush(timeout=120)
    except KafkaError as exc:
        print_error(f"Kafka error: {exc}")
        raise typer.Exit(1) from None
    finally:
        if pub is not None:
            pub.close()
    failed = pub.failed if pub is not None else 0
    elapsed = time.monotonic() - started
    if invalid > show:
        console.print(f"... and {invalid - show} more invalid lines")
    sent = 0 if pub is None else pub.sent
    console.print(f"{lines:,} lines: {valid:,} valid, {invalid:,} invalid"
                  + (f" ({sent_invalid:,} sent anyway)" if sent_invalid else " (not sent)" if invalid else "")
                  + ("; dry run, nothing sent" if dry_run else
                     f"; {sent - failed:,} published to {topic}" + (f", [red]{failed:,} failed[/]" if failed else ""))
                  + f" in {elapsed:.1f}s ({lines / elapsed if elapsed > 0 else 0:,.0f} lines/s)")
    if failed or (invalid and not send_invalid):
        raise typer.Exit(1)


@bridge_app.command("mqtt")
def bridge_mqtt(
    url: Annotated[str | None, typer.Option(envvar="OPSMON_MQTT_URL", help="Broker: mqtt://[user[:password]@]host"
                                            "[:port], mqtts:// for TLS. Default: the local stack's Mosquitto.")] = None,
    topic: Annotated[str, typer.Option(envvar="OPSMON_MQTT_TOPIC", help="Topic filter; the first + is the site, the "
                                       "second the device (or name them: sites/{site}/devices/{device}/readings).")
                     ] = "sites/+/devices/+/readings",
    client_id: Annotated[str, typer.Option(envvar="OPSMON_MQTT_CLIENT_ID", help="Fixed client id: the broker keeps "
                                           "its session (and queues messages) under it.")] = "opsmon-bridge",
    protocol: Annotated[str, typer.Option(envvar="OPSMON_MQTT_PROTOCOL", help="MQTT version: 5 or 3.1.1.")] = "5",
    session_expiry: Annotated[int, typer.Option(envvar="OPSMON_MQTT_SESSION_EXPIRY", help="MQTT 5: seconds the broker "
                                                "keeps the session while the bridge is away.")] = 7 * 86_400,
    username: Annotated[str | None, typer.Option(envvar="OPSMON_MQTT_USERNAME")] = None,
    password_file: Annotated[Path | None, typer.Option(envvar="OPSMON_MQTT_PASSWORD_FILE", help="File holding the "
                                                       "password (or set OPSMON_MQTT_PASSWORD).")] = None,
    ca_file: Annotated[Path | None, typer.Option(envvar="OPSMON_MQTT_CA_FILE", help="CA bundle for mqtts://.")] = None,
    stats_every: Annotated[float, typer.Option(help="Seconds between counter lines in the log.")] = 30.0,
) -> None:
    """Forward device readings from an MQTT broker (QoS 1, persistent session) to the IoT topic.

    A message is acknowledged to the broker only after Kafka has it; what arrives while the bridge is down waits.
    """
    import os

    from streams.mqtt_bridge import BridgeConfig, BridgeError, MqttBridge

    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    password = (password_file.read_text().strip() if password_file else os.environ.get("OPSMON_MQTT_PASSWORD"))
    try:
        config = BridgeConfig.from_url(url or f"mqtt://127.0.0.1:{settings.stack_mosquitto_port}", topic=topic,
                                       client_id=client_id, protocol=protocol, session_expiry=session_expiry,
                                       username=username, password=password,
                                       ca_file=str(ca_file) if ca_file else None)
        if config.protocol not in ("5", "3.1.1"):
            raise BridgeError(f"unknown MQTT protocol {protocol!r}: use 5 or 3.1.1")
        bridge = MqttBridge(settings, config)
    except BridgeError as exc:
        raise typer.BadParameter(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bridge.start(wait=10.0)
    try:
        bridge.run(stop, on_stats=lambda s: logging.getLogger("opsmon.bridge").info("stats %s", s),
                   interval=stats_every)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
