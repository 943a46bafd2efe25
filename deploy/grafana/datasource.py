"""The InfluxDB datasource opsmon's boards and rules query, in InfluxQL mode.

Locally, in the tests and in deploy/compose.yaml it points at InfluxDB 1.13 (auth on): ``database`` is the
database and the ``Token`` Authorization header carries ``user:password``. For InfluxDB 2.x (and 3.x)
InfluxQL goes through the v1 compatibility API: ``database`` names the bucket (through its DBRP mapping)
and the header carries the API token. The dashboards' JSON is generated with grafana-foundation-sdk
11.6.0 and runs on Grafana 11.6 (deploy/compose.yaml's image).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.grafana.influxql import DATASOURCE_NAME, DATASOURCE_TYPE, DATASOURCE_UID

# Grafana expands ${VAR} from its own environment when it reads provisioning files.
ENV_URL = "${OPSMON_INFLUX_URL}"
ENV_BUCKET = "${OPSMON_INFLUX_BUCKET}"
ENV_TOKEN = "${OPSMON_INFLUX_TOKEN}"
# Window aggregates are 60 s apart: a shorter $__interval only draws gaps.
MIN_INTERVAL = "1m"


@dataclass(frozen=True)
class InfluxTarget:
    """Where the datasource points: URL, database (bucket) and token."""

    url: str
    database: str
    token: str


def definition(target: InfluxTarget) -> dict[str, object]:
    """The datasource as Grafana's provisioning files and its HTTP API both describe it."""
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": target.url,
        "database": target.database,
        "isDefault": True,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": target.database,
            "httpMode": "POST",
            "httpHeaderName1": "Authorization",
            "timeInterval": MIN_INTERVAL,
        },
        "secureJsonData": {"httpHeaderValue1": f"Token {target.token}"},
    }


def provisioning() -> dict[str, object]:
    """The ``datasources/influxdb.yaml`` document: values come from Grafana's environment."""
    ds = definition(InfluxTarget(url=ENV_URL, database=ENV_BUCKET, token=ENV_TOKEN))
    ds["editable"] = False
    return {"apiVersion": 1, "datasources": [ds]}
