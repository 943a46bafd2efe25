"""Settings: environment variables, secret files, and handing settings to a child process."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsmon.settings import Settings


def test_environment_and_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "influx-token"
    secret.write_text("s3cret-from-file\n")
    monkeypatch.setenv("OPSMON_INFLUX_TOKEN_FILE", str(secret))
    monkeypatch.setenv("OPSMON_WINDOW_SECONDS", "30")
    monkeypatch.setenv("OPSMON_CALENDARS", '{"store-1": "mon-fri 08:00-18:00"}')
    s = Settings()
    assert s.influx_token.get_secret_value() == "s3cret-from-file"
    assert s.window_seconds == 30 and s.calendars == {"store-1": "mon-fri 08:00-18:00"}
    assert "s3cret" not in repr(s) and "s3cret" not in s.model_dump_json()


def test_to_env_round_trips_including_switched_off_options(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(alertmanager_url=None, feedback_token="tok", calendars={"a": "mon 24h"}, kafka_partitions=7)
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    child = Settings()
    assert not child.alertmanager_url, "None must not come back as the default URL"
    assert child.feedback_token is not None and child.feedback_token.get_secret_value() == "tok"
    assert child.calendars == {"a": "mon 24h"} and child.kafka_partitions == 7
    assert child.kafka_sasl_username is None


def test_a_ratio_needs_one_trial_at_least(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSMON_RATE_MIN_TRIALS", "25")
    assert Settings().rate_min_trials == 25.0
    monkeypatch.setenv("OPSMON_RATE_MIN_TRIALS", "0")
    with pytest.raises(ValueError, match="rate_min_trials"):
        Settings()
