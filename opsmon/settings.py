"""All of opsmon's settings in one place: environment variables with the ``OPSMON_`` prefix."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.alerting import SEVERITY_ORDER, severity_rank
from models.limits import Limits
from streams.limits_file import limits_with_file, read_limits_file

if TYPE_CHECKING:
    from models.river_spec import ModelSpecs


class Settings(BaseSettings):
    """opsmon configuration; every field can be set as ``OPSMON_<FIELD>`` (case-insensitive).

    Secrets (``*_password``, ``*_token``, ``link_secret``) can also be read from a file named by
    ``OPSMON_<FIELD>_FILE``, so they never need to sit in the environment.
    """

    model_config = SettingsConfigDict(env_prefix="OPSMON_", env_file=".env", extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_partitions: int = 4
    kafka_replication: int = 1
    # Changed state is changelogged, and source offsets committed, at most this often (a checkpoint); a
    # crashed worker replays from the last one.
    checkpoint_seconds: float = 5.0
    # A device silent this long, or one that usually reports less often, keeps its models as one compressed
    # pickle until its next reading: memory for fleets that report every few minutes, at the cost of decoding
    # once per reading after such a gap.
    state_idle_seconds: float = 60.0

    # --- topics -------------------------------------------------------------------------------
    topic_iot: str = "iot.readings"
    topic_pos: str = "pos.transactions"
    topic_web: str = "web.events"
    topic_stock: str = "pos.stock"  # optional stock counts and deliveries
    topic_alerts: str = "alerts"
    topic_feedback: str = "feedback"
    dlq_suffix: str = ".dlq"

    # --- windows ------------------------------------------------------------------------------
    window_seconds: int = 60
    # Events may arrive this late and still land in their window before it is first written.
    grace_seconds: int = 10
    # After that, a late event still corrects its window (rewritten in place) for this long.
    late_retention_seconds: int = 3600
    # With no events at all, windows close after this much wall-clock idleness.
    idle_close_seconds: float = 5.0

    # --- InfluxDB (v2 write API: the local stack's InfluxDB 1.x; InfluxDB 2.x/3.x in production) ----
    influx_url: str = "http://127.0.0.1:18086"
    influx_token: SecretStr = SecretStr("opsmon-dev-token")
    influx_org: str = "opsmon"
    influx_bucket: str = "opsmon"
    influx_batch_lines: int = 5000
    influx_flush_seconds: float = 0.5
    influx_max_retry_seconds: float = 300.0
    # gzip the write requests: "auto" compresses unless the server's host is loopback (there it only costs CPU).
    influx_gzip: Literal["auto", "on", "off"] = "auto"

    # --- models and alerts ---------------------------------------------------------------------
    # Score at which a value is flagged: 0.5 is a one-in-a-hundred surprise for that series.
    score_threshold: float = 0.5
    # A ratio (error rate, conversion, refund rate, average basket) is judged once it rests on this many trials
    # (requests, sessions, sales); quieter minutes are pooled until it does.
    rate_min_trials: float = Field(10.0, ge=1.0)
    # Opening hours per store or web site, e.g. {"store-1": "mon-sat 08:00-20:00"}; others use the default.
    calendars: dict[str, str] = {}
    default_calendar: str = ""  # empty: always open
    timezone: str = "UTC"  # of the calendars
    # Bounds the business sets, alerting whenever crossed, whatever the series' history (models/limits.py), e.g.
    # {"web:*:latency_p95": "> 1500 for 3m", "iot:*/freezer-*:temperature": "> -15 for 10m critical"}.
    limits: dict[str, str] = {}
    # A JSON file of more limits in the same form, re-read while the worker runs (checked every
    # ``limits_poll_seconds``), so a bound can change without a restart; for the same key its rule wins.
    limits_file: Path | None = None
    limits_poll_seconds: float = Field(10.0, gt=0.0)
    # The model that judges each series, by pattern (first match wins; unmatched: opsmon's own), e.g.
    # {"iot:*:vibration": "preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)", "pos:*:revenue": "opsmon"}:
    # a River expression (allow-listed classes, literal arguments) or a preset (models/river_spec.py).
    models: dict[str, str] = {}
    # The same for demand forecasters: time_series.HoltWinters(...), time_series.SNARIMAX(...) or "opsmon".
    forecasters: dict[str, str] = {}
    alertmanager_url: str | None = "http://127.0.0.1:19193"  # empty: no Alertmanager
    # Where the local stack's Alertmanager sends the alerts that page (production routes differ).
    alertmanager_webhook_url: str = "http://127.0.0.1:19999/alerts"
    alert_webhook_url: str | None = None
    # Alerts below this severity are for the boards: the local Alertmanager routes them to no receiver and
    # the plain webhook skips them. An open alert that grows into it is announced again, and then pages.
    page_min_severity: Literal["info", "warning", "critical"] = "warning"
    alert_resend_seconds: float = 60.0
    incident_window_seconds: float = 600.0
    stock_lead_time_days: float = 2.0  # an item is at risk when it runs out before a new order could arrive
    grafana_url: str = "http://127.0.0.1:3000"
    # Bearer token for POST /opsmon/feedback on the worker; the endpoint is off until it is set.
    feedback_token: SecretStr | None = None
    feedback_max_bytes: int = 4096
    # One-click feedback links in alert notifications (docs/alerts.md): on once a link secret is set (at least
    # 16 bytes, shared by all workers). The links point at the public URL, the business's TLS reverse proxy in
    # front of the worker's web port (unset: http://127.0.0.1:<worker_web_port>, for a local demo only).
    link_secret: SecretStr | None = None
    public_url: str | None = None
    link_ttl_seconds: float = Field(86400.0, gt=0.0)

    # --- worker -------------------------------------------------------------------------------
    app_id: str = "opsmon"
    worker_web_port: int = 6066
    data_dir: Path = Path(".opsmon")
    log_level: str = "info"

    # --- local stack ports --------------------------------------------------------------------
    stack_kafka_port: int = 19092
    stack_kafka_controller_port: int = 19093
    # The local broker's SCRAM-SHA-512 listeners: plain and over TLS (CA generated by the stack).
    # Unset: the Kafka port + 2 and + 3; 0: off.
    stack_kafka_sasl_port: int | None = None
    stack_kafka_ssl_port: int | None = None
    stack_influxdb_port: int = 18086
    stack_alertmanager_port: int = 19193
    stack_mosquitto_port: int = 11883

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, values: dict) -> dict:
        """Fill ``*_password`` / ``*_token`` from ``OPSMON_<FIELD>_FILE`` when set."""
        import os

        for name in ("kafka_sasl_password", "influx_token", "feedback_token", "link_secret"):
            path = os.environ.get(f"OPSMON_{name.upper()}_FILE")
            if path and not values.get(name):
                values[name] = Path(path).read_text().strip()
        return values

    @field_validator("link_secret")
    @classmethod
    def _link_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < 16:  # empty: links off
            raise ValueError("must be at least 16 bytes (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("limits")
    @classmethod
    def _readable_limits(cls, value: dict[str, str]) -> dict[str, str]:
        Limits.parse(value)  # a rule that cannot be read stops the worker at start, with the rule named
        return value

    @field_validator("models", "forecasters")
    @classmethod
    def _readable_models(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        from models.river_spec import ModelSpecs  # imports river: only when models are configured

        if value:  # a bad expression stops the worker at start, with its pattern named
            ModelSpecs.parse(value, forecasters=info.field_name == "forecasters")
        return value

    @field_validator("limits_file")
    @classmethod
    def _readable_limits_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_limits_file(value)  # a file that cannot be read stops the worker at start, with its fault named
        return value

    @property
    def parsed_limits(self) -> Limits:
        """``limits`` (and ``limits_file``'s) as rules, matched by series."""
        return limits_with_file(self.limits, self.limits_file)

    @property
    def parsed_models(self) -> ModelSpecs:
        """``models`` read: the model of each series (opsmon's own where no pattern matches)."""
        from models.river_spec import ModelSpecs

        return ModelSpecs.parse(self.models)

    @property
    def parsed_forecasters(self) -> ModelSpecs:
        """``forecasters`` read: ``models.river_spec.forecaster_for`` gives a fresh forecaster per series."""
        from models.river_spec import ModelSpecs

        return ModelSpecs.parse(self.forecasters, forecasters=True)

    @cached_property
    def dlq_topics(self) -> dict[str, str]:
        """Dead-letter topic for each source topic."""
        return {t: t + self.dlq_suffix for t in (self.topic_iot, self.topic_pos, self.topic_web, self.topic_stock)}

    @property
    def boards_only_severities(self) -> tuple[str, ...]:
        """Severities below ``page_min_severity``: shown on the boards, paged to no one."""
        return SEVERITY_ORDER[:severity_rank(self.page_min_severity)]

    def to_env(self) -> dict[str, str]:
        """These settings as ``OPSMON_*`` environment variables, for a child process."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                if type(self).model_fields[name].default is not None:
                    env[f"OPSMON_{name.upper()}"] = ""  # switched off: an empty value reads as "none"
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict):
                value = json.dumps(value)
            env[f"OPSMON_{name.upper()}"] = str(value)
        return env

    def kafka_client_config(self) -> dict:
        """Connection settings in kafka-python's vocabulary (also accepted by aiokafka)."""
        cfg: dict = {"bootstrap_servers": self.kafka_bootstrap.split(","),
                     "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            cfg.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value()
                if self.kafka_sasl_password else None,
            )
        if self.kafka_ssl_cafile:
            cfg["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return cfg
