"""What the streams room reads of the configuration, declared here so that ``streams/`` never imports ``opsmon/``.

``opsmon.settings.Settings`` provides all of it; the wiring in ``opsmon/`` passes its settings object (or
any object of this shape, as the bench and tests do) as a plain argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import SecretStr

from models.limits import Limits
from models.river_spec import ModelSpecs


class KafkaSettings(Protocol):
    """Kafka connection and the topics a worker, a publisher or a dead-letter tool uses."""

    kafka_partitions: int
    kafka_replication: int
    topic_iot: str
    topic_pos: str
    topic_web: str
    topic_stock: str
    topic_alerts: str
    topic_feedback: str

    @property
    def dlq_topics(self) -> dict[str, str]:
        """Dead-letter topic for each source topic."""
        ...

    def kafka_client_config(self) -> dict:
        """Connection settings in kafka-python's vocabulary (also accepted by aiokafka)."""
        ...


class WorkerSettings(KafkaSettings, Protocol):
    """Everything a worker reads (``streams.app.create_app``): the wiring passes its settings object."""

    app_id: str
    kafka_bootstrap: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str | None
    kafka_sasl_password: SecretStr | None
    kafka_ssl_cafile: Path | None
    checkpoint_seconds: float
    state_idle_seconds: float
    dlq_suffix: str
    window_seconds: int
    grace_seconds: int
    late_retention_seconds: int
    idle_close_seconds: float
    influx_url: str
    influx_token: SecretStr
    influx_org: str
    influx_bucket: str
    influx_batch_lines: int
    influx_gzip: Literal["auto", "on", "off"]
    score_threshold: float
    rate_min_trials: float
    calendars: dict[str, str]
    default_calendar: str
    timezone: str
    limits: dict[str, str]
    limits_file: Path | None
    limits_poll_seconds: float
    alertmanager_url: str | None
    alert_webhook_url: str | None
    alert_resend_seconds: float
    incident_window_seconds: float
    stock_lead_time_days: float
    grafana_url: str
    feedback_token: SecretStr | None
    feedback_max_bytes: int
    forecasters: dict[str, str]
    link_secret: SecretStr | None
    link_ttl_seconds: float
    public_url: str | None
    worker_web_port: int
    data_dir: Path

    @property
    def parsed_limits(self) -> Limits:
        """The limits the business set, with the limits file's."""
        ...

    @property
    def parsed_models(self) -> ModelSpecs:
        """The model of each series."""
        ...

    @property
    def parsed_forecasters(self) -> ModelSpecs:
        """The demand forecaster of each series."""
        ...

    @property
    def boards_only_severities(self) -> tuple[str, ...]:
        """Severities shown on the boards but paged to no one."""
        ...
