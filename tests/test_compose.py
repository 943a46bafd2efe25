"""deploy/compose.yaml validates with docker-compose and wires the services the way opsmon needs.

The normalised config that ``docker-compose config`` prints is read with the YAML library of
docker-compose's own Python (Debian's docker-compose depends on python3-yaml), so these tests need
nothing beyond the docker-compose that deploy/install-system-deps.sh installs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deploy.grafana import datasource
from deploy.grafana.provision import CONTAINER_DIR
from deploy.influxdb import version as influxdb_version

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SECRETS = {"OPSMON_INFLUX_WRITER_PASSWORD": "test-writer", "OPSMON_INFLUX_ADMIN_PASSWORD": "test-password",
           "GRAFANA_ADMIN_PASSWORD": "test-admin"}


def compose(*args: str, env: dict[str, str] | None = None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run docker-compose on deploy/compose.yaml with only ``env`` set (an empty env file, no deploy/.env)."""
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: run deploy/install-system-deps.sh"
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPSMON_", "GRAFANA_", "COMPOSE_"))}
    return subprocess.run([binary, "--env-file", str(env_file), "-f", str(COMPOSE), *args],
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def normalised(tmp_path: Path, *args: str) -> dict[str, Any]:
    """``docker-compose config`` output as a dict."""
    result = compose(*args, "config", env=SECRETS, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    python = Path(shutil.which("docker-compose") or "").read_text().splitlines()[0].removeprefix("#!").split()
    loaded = subprocess.run([*python, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
                            input=result.stdout, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(loaded.stdout)


def test_config_validates(tmp_path: Path) -> None:
    result = compose("config", "-q", env=SECRETS, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_secrets_are_required(tmp_path: Path, missing: str) -> None:
    result = compose("config", "-q", env={k: v for k, v in SECRETS.items() if k != missing}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_services(tmp_path: Path) -> None:
    services = compose("config", "--services", env=SECRETS, tmp_path=tmp_path).stdout.split()
    assert sorted(services) == ["alertmanager", "grafana", "influxdb", "kafka", "opsmon-topics", "opsmon-worker",
                                "simulator"]


def mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Container path -> (host path or volume, mode), from docker-compose 1.29's short volume syntax."""
    out = {}
    for volume in service["volumes"]:
        source, target, mode = volume.split(":")
        out[target] = (Path(source), mode)
    return out


def test_services_are_wired(tmp_path: Path) -> None:
    services = normalised(tmp_path)["services"]

    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"])
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper

    influx = services["influxdb"]
    # The same InfluxDB line and minor version as the local stack builds.
    assert influx["image"] == "influxdb:" + ".".join(influxdb_version().split(".")[:2])
    env = influx["environment"]
    assert env["INFLUXDB_HTTP_AUTH_ENABLED"] == "true" and env["INFLUXDB_HTTP_FLUX_ENABLED"] == "true"
    assert env["INFLUXDB_DB"] == "opsmon"
    token = f"{env['INFLUXDB_USER']}:{SECRETS['OPSMON_INFLUX_WRITER_PASSWORD']}"
    assert env["INFLUXDB_USER_PASSWORD"] == SECRETS["OPSMON_INFLUX_WRITER_PASSWORD"]

    grafana = services["grafana"]
    assert mounts(grafana)[CONTAINER_DIR] == (DEPLOY / "grafana" / "provisioning", "ro")
    # Every ${VAR} the datasource file uses is in Grafana's environment, with the right value.
    genv = grafana["environment"]
    for var in re.findall(r"\$\{(\w+)\}", json.dumps(datasource.provisioning())):
        assert var in genv, var
    assert genv["OPSMON_INFLUX_URL"] == "http://influxdb:8086"
    assert genv["OPSMON_INFLUX_TOKEN"] == token  # user:password, what InfluxDB 1.x takes as a token
    assert genv["OPSMON_INFLUX_BUCKET"] == env["INFLUXDB_DB"]

    am = services["alertmanager"]
    assert mounts(am)["/etc/alertmanager/alertmanager.yml"] == (DEPLOY / "compose" / "alertmanager.yml", "ro")

    worker = services["opsmon-worker"]
    assert Path(worker["build"]["context"]) == DEPLOY.parent and worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert worker["command"] == ["worker"] and int(worker["deploy"]["replicas"]) >= 2
    assert "container_name" not in worker and "ports" not in worker  # replicas must not collide
    wenv = worker["environment"]
    assert wenv["OPSMON_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert wenv["OPSMON_INFLUX_URL"] == "http://influxdb:8086"
    assert wenv["OPSMON_INFLUX_TOKEN"] == token
    assert wenv["OPSMON_ALERTMANAGER_URL"].startswith("http://alertmanager:")
    assert worker["depends_on"]["opsmon-topics"]["condition"] == "service_completed_successfully"

    simulator = services["simulator"]  # only with --profile demo
    assert simulator["profiles"] == ["demo"] and simulator["command"][0] == "simulate"
    assert simulator["image"] == worker["image"]


def test_alertmanager_example_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool (prometheus-alertmanager) is missing: run deploy/install-system-deps.sh"
    result = subprocess.run([amtool, "check-config", str(DEPLOY / "compose" / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 receivers" in result.stdout


def test_alertmanager_example_config_pages_on_call_for_critical_and_nobody_for_info() -> None:
    def receiver(*labels: str) -> str:
        result = subprocess.run(["amtool", "config", "routes", "test",
                                 f"--config.file={DEPLOY / 'compose' / 'alertmanager.yml'}", *labels],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert receiver("severity=critical", "source=iot") == "on-call"
    assert receiver("severity=warning", "source=pos") == "operations-chat"
    assert receiver("severity=info", "source=iot") == "boards-only"


def test_dockerfile_copies_what_exists_and_runs_opsmon() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    # (not COPY --from=<stage>: what it copies was built in the image)
    for sources in re.findall(r"^COPY (?!--from=)(.+) \S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            assert (DEPLOY.parent / source).exists(), source
    assert 'ENTRYPOINT ["opsmon"]' in text and "USER opsmon" in text
