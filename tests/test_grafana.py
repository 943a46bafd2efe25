"""Generated Grafana boards, datasource and rules: SDK round-trip, data-model contract, files up to date,
and ``push`` over real HTTP to a loopback server speaking the few Grafana API endpoints it uses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from grafana_client import GrafanaApi
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from typer.testing import CliRunner

from deploy.grafana import provision, rules
from deploy.grafana.boards import all_boards, sales
from deploy.grafana.boards import web as web_board
from deploy.grafana.boards.common import FOLDER_UID, all_panels
from deploy.grafana.datasource import InfluxTarget
from deploy.grafana.influxql import DATASOURCE_UID, InfluxQLQuery, dashboard_from_json
from deploy.grafana.push import GrafanaPushError, push
from opsmon.cli import app
from streams.sources import SKU_MEASUREMENT, SOURCES, MetricSpec

ROOT = Path(__file__).resolve().parents[1]
BOARD_UIDS = ["opsmon-overview", "opsmon-iot", "opsmon-sales", "opsmon-web", "opsmon-pipeline"]
RENDERED = provision.render()
BOARD_JSON = {json.loads(t)["uid"]: json.loads(t) for rel, t in RENDERED.items() if rel.endswith(".json")}


def data_model() -> dict[str, tuple[set[str], set[str]]]:
    """Measurement -> (tags, fields), read from the table in docs/data-model.md."""
    model = {}
    for row in (ROOT / "docs" / "data-model.md").read_text().splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            names = [re.findall(r"`([a-z0-9_]+)`", c) for c in cells[:3]]
            model[names[0][0]] = (set(names[1]), set(names[2]))
    return model


MODEL = data_model()


def all_queries() -> Iterator[tuple[str, str]]:
    """(where, InfluxQL) for every panel target, variable, annotation and alert rule."""
    for uid, board in BOARD_JSON.items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield f"{uid}/{panel['title']}/{target['refId']}", target["query"]
        for var in board.get("templating", {}).get("list", []):
            if var["type"] == "query":
                yield f"{uid}/${var['name']}", var["query"]
        for anno in board.get("annotations", {}).get("list", []):
            yield f"{uid}/annotation {anno['name']}", anno["target"]["query"]
    for group in rules.file_groups():
        for rule in group["rules"]:
            yield f"rule {rule['uid']}", rule["data"][0]["model"]["query"]


def test_data_model_is_parsed() -> None:
    assert len(MODEL) == 10
    assert MODEL["alert"] == ({"source", "entity", "metric", "severity", "state"},
                              {"score", "observed", "expected", "open"})


def test_boards_have_stable_unique_uids_and_round_trip_through_the_sdk() -> None:
    assert [b.uid for b in all_boards()] == BOARD_UIDS
    for uid, data in BOARD_JSON.items():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", uid)
        again = json.loads(json.dumps(dashboard_from_json(data), cls=JSONEncoder))
        assert again == data, uid
        # Typed, not an opaque bag: the SDK decoded our targets into InfluxQLQuery.
        board = dashboard_from_json(data)
        assert all(isinstance(t, InfluxQLQuery) for p in all_panels(board) for t in p.targets or [])


def test_every_panel_has_the_datasource_a_query_and_a_unique_id_and_title() -> None:
    for uid, data in BOARD_JSON.items():
        panels = [p for p in data["panels"] if p["type"] != "row"]
        assert len({p["id"] for p in data["panels"]}) == len(data["panels"]), uid
        assert len({p["title"] for p in panels}) == len(panels), uid
        for panel in panels:
            where = f"{uid}/{panel['title']}"
            assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}, where
            assert panel["targets"], where
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
            for target in panel["targets"]:
                assert target["rawQuery"] is True and target["query"].startswith("SELECT "), where
                assert target["datasource"]["uid"] == DATASOURCE_UID, where
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, where


def test_template_variables() -> None:
    names = {uid: [v["name"] for v in data.get("templating", {}).get("list", [])]
             for uid, data in BOARD_JSON.items()}
    assert names == {"opsmon-overview": [], "opsmon-iot": ["site", "device", "metric"],
                     "opsmon-sales": ["store", "sku", "bucket"], "opsmon-web": ["site"],
                     "opsmon-pipeline": ["topic"]}
    for uid, data in BOARD_JSON.items():
        for var in data.get("templating", {}).get("list", []):
            if var["type"] == "query":
                assert var["datasource"]["uid"] == DATASOURCE_UID
                key = re.search(r'WITH KEY = "(\w+)"', var["query"])
                measurement = re.search(r'FROM "(\w+)"', var["query"]).group(1)
                assert key is None or key.group(1) in MODEL[measurement][0], f"{uid} ${var['name']}: not a tag"


@pytest.mark.parametrize(("where", "query"), list(all_queries()), ids=[w for w, _ in all_queries()])
def test_queries_use_only_the_data_model(where: str, query: str) -> None:
    measurements = re.findall(r'FROM "(\w+)"', query)
    assert measurements, "no measurement"
    assert set(measurements) <= set(MODEL), f"unknown measurement in {query}"
    tags = set().union(*(MODEL[m][0] for m in measurements))
    fields = set().union(*(MODEL[m][1] for m in measurements))
    aliases = set(re.findall(r'AS "([^"]+)"', query))
    for name in re.findall(r'"([^"]+)"', query):
        if "$" in name:
            continue  # a template variable naming a field, e.g. "$metric"
        assert name in tags | fields | aliases | set(measurements), f'"{name}" is not in the data model: {query}'
    # Identities are tags: compared with strings or regexes, grouped by.
    for name in re.findall(r'"(\w+)" (?:=~|= \')', query):
        assert name in tags, f'"{name}" compared as a tag but is not one: {query}'
    for clause in re.findall(r"GROUP BY ([^)]*?(?:\)|$))", query):
        for name in re.findall(r'"(\w+)"', clause):
            assert name in tags, f'GROUP BY "{name}": not a tag of {measurements}'
    assert "$timeFilter" in query or query.startswith("SHOW "), "no time range"


# --- the boards read the sources' declarations (streams.sources) -----------------------------------

def _queries_from(board: dict, measurement: str) -> list[str]:
    return [t["query"] for p in board["panels"] for t in p.get("targets", []) if f'FROM "{measurement}"' in t["query"]]


def test_every_judged_metric_of_a_windowed_source_is_drawn_on_its_board_as_declared() -> None:
    for spec in SOURCES.values():
        assert spec.board in BOARD_JSON, spec.name
        if not spec.windowed:
            continue  # a reading source's board repeats over the readings' field keys: every reading is drawn
        queries = _queries_from(BOARD_JSON[spec.board], spec.measurement)
        for metric in spec.metrics:
            assert any(f"SELECT {metric.select} " in q or f"{metric.select} AS " in q for q in queries), \
                f"{spec.board}: no panel draws {spec.name}'s {metric.name} as {metric.select}"


def test_board_queries_read_only_fields_the_sources_write() -> None:
    written = {spec.measurement: (set(spec.entity_tags), set(spec.fields)) for spec in SOURCES.values()}
    read = set()
    for where, query in all_queries():
        measurements = set(re.findall(r'FROM "(\w+)"', query))
        read |= measurements
        if not measurements or not measurements <= written.keys():
            continue  # the scores, alerts and the pipeline's own points: test_queries_use_only_the_data_model
        tags = set().union(*(written[m][0] for m in measurements))
        fields = set().union(*(written[m][1] for m in measurements))
        aliases = set(re.findall(r'AS "([^"]+)"', query))
        for name in re.findall(r'"([^"]+)"', query):
            if "$" not in name and name not in aliases | measurements:
                assert name in tags | fields, f'{where}: "{name}" is not written to {measurements}: {query}'
    assert written.keys() | {SKU_MEASUREMENT} <= read


def test_a_metric_added_to_a_source_gets_a_panel_on_its_board(monkeypatch: pytest.MonkeyPatch) -> None:
    pos, site = SOURCES["pos"], SOURCES["web"]
    monkeypatch.setitem(SOURCES, "pos", dataclasses.replace(pos, metrics=(
        *pos.metrics, MetricSpec("items", title="Units", runbook="Count the shelf against the till."))))
    monkeypatch.setitem(SOURCES, "web", dataclasses.replace(site, measurement="shop_window", metrics=(
        *site.metrics, MetricSpec("page_views", rollup='max("page_views")'))))
    board = json.loads(provision.dashboard_json(sales.build()))
    panel = next(p for p in board["panels"] if p["title"] == "Units per store")
    assert panel["targets"][0]["query"].startswith('SELECT sum("items") FROM "pos_window" WHERE "store" =~ /^$store$/')
    assert panel["description"].endswith("Count the shelf against the till.")
    board = json.loads(provision.dashboard_json(web_board.build()))
    panel = next(p for p in board["panels"] if p["title"] == "Page views per site")
    assert panel["targets"][0]["query"].startswith('SELECT max("page_views") FROM "shop_window"')
    # A measurement renamed in the declaration is renamed on the whole board.
    queries = [t["query"] for p in board["panels"] for t in p.get("targets", [])]
    assert not any("web_window" in q for q in queries) and len(_queries_from(board, "shop_window")) > 8


def test_provisioning_files_on_disk_are_up_to_date() -> None:
    on_disk = {str(p.relative_to(provision.DEFAULT_DIR)): p.read_text(encoding="utf-8")
               for p in provision.DEFAULT_DIR.rglob("*") if p.is_file()}
    assert on_disk.keys() == RENDERED.keys(), "run `opsmon grafana provision`"
    stale = [rel for rel, text in RENDERED.items() if on_disk[rel] != text]
    assert not stale, f"stale (run `opsmon grafana provision`): {stale}"


def test_provision_command_writes_the_tree(tmp_path: Path) -> None:
    (tmp_path / "dashboards").mkdir()
    (tmp_path / "dashboards" / "opsmon-gone.json").write_text("{}")
    result = CliRunner().invoke(app, ["grafana", "provision", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == RENDERED  # and the board that is no longer generated is gone


def test_datasource_file_reads_everything_from_the_environment() -> None:
    text = RENDERED["datasources/influxdb.yaml"]
    for line in ('url: "${OPSMON_INFLUX_URL}"', 'database: "${OPSMON_INFLUX_BUCKET}"',
                 'dbName: "${OPSMON_INFLUX_BUCKET}"', 'httpHeaderName1: "Authorization"', 'httpMode: "POST"',
                 'httpHeaderValue1: "Token ${OPSMON_INFLUX_TOKEN}"', f'uid: "{DATASOURCE_UID}"',
                 'version: "InfluxQL"'):
        assert line in text
    assert RENDERED["alerting/rules.yaml"].splitlines()[1:3] == ["apiVersion: 1", "groups:"]


def test_rules_link_to_existing_panels_and_survive_env_interpolation() -> None:
    boards = {b.uid: b for b in all_boards()}
    api = rules.api_groups()[0]
    assert api["folderUid"] == FOLDER_UID and api["interval"] == 60
    uids = [r["uid"] for r in api["rules"]]
    assert len(set(uids)) == len(uids) == len(rules.specs())
    for rule in api["rules"]:
        am.Rule.from_json(rule)  # the SDK's type accepts it
        assert rule["condition"] == "C" and [q["refId"] for q in rule["data"]] == ["A", "B", "C"]
        assert rule["data"][0]["datasourceUid"] == DATASOURCE_UID
        assert rule["data"][0]["relativeTimeRange"]["from"] > 0
        board = boards[rule["annotations"]["__dashboardUid__"]]
        if "__panelId__" in rule["annotations"]:
            assert int(rule["annotations"]["__panelId__"]) in {p.id_val for p in all_panels(board)}
        # Grafana expands $VARS in provisioned labels and ${VARS} in annotations.
        assert not any("$" in v for v in rule["labels"].values())
        assert not any("${" in v for v in rule["annotations"].values())
        assert {"summary", "runbook", "dashboard"} <= rule["annotations"].keys()
    file_rules = rules.file_groups()[0]["rules"]
    assert [r["uid"] for r in file_rules] == uids
    assert all("__dashboardUid__" not in r["annotations"] and r["dashboardUid"] in boards for r in file_rules)


# --- push, against a loopback server with Grafana's HTTP API ---------------------------------------

class FakeGrafana:
    """The Grafana API endpoints ``push`` uses, with state, on 127.0.0.1 in a thread."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[tuple[str, str, Any]] = []
        self.folders: dict[str, dict] = {}
        self.datasources: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.groups: dict[tuple[str, str], dict] = {}
        self.fail_dashboards = False
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        m, path = request.method, request.path
        if match := re.fullmatch(r"/api/folders/([^/]+)", path):
            folder = self.folders.get(match[1])
            return web.json_response(folder) if folder else web.json_response({"message": "not found"}, status=404)
        if (m, path) == ("POST", "/api/folders"):
            self.folders[body["uid"]] = body
            return web.json_response({**body, "id": 1})
        if match := re.fullmatch(r"/api/datasources/uid/([^/]+)", path):
            if m == "GET":
                ds = self.datasources.get(match[1])
                return web.json_response(ds) if ds else web.json_response({"message": "not found"}, status=404)
            self.datasources[match[1]] = body
            return web.json_response({"message": "Datasource updated"})
        if (m, path) == ("POST", "/api/datasources"):
            self.datasources[body["uid"]] = body
            return web.json_response({"message": "Datasource added", "id": 1})
        if (m, path) == ("POST", "/api/dashboards/db"):
            if self.fail_dashboards:
                return web.json_response({"message": "Access denied to save dashboard"}, status=403)
            self.dashboards[body["dashboard"]["uid"]] = body
            return web.json_response({"status": "success", "uid": body["dashboard"]["uid"]})
        if match := re.fullmatch(r"/api/v1/provisioning/alert-rules/([^/]+)", path):
            if m == "GET":
                rule = self.rules.get(match[1])
                return web.json_response(rule) if rule else web.Response(status=404)
            self.rules[match[1]] = body
            return web.json_response(body)
        if (m, path) == ("POST", "/api/v1/provisioning/alert-rules"):
            self.rules[body["uid"]] = body
            return web.json_response(body, status=201)
        if m == "PUT" and (match := re.fullmatch(r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", path)):
            self.groups[(match[1], match[2])] = body
            return web.json_response(body)
        return web.json_response({"message": f"no route {m} {path}"}, status=404)

    def __enter__(self) -> FakeGrafana:
        started = threading.Event()

        async def start() -> None:
            application = web.Application()
            application.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(application)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(start(), self._loop)
        assert started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana(token="sa-token") as fake:
        yield fake


TARGET = InfluxTarget(url="http://influxdb:8086", database="opsmon", token="influx-secret")


def test_push_creates_then_updates_everything(grafana: FakeGrafana) -> None:
    api = GrafanaApi.from_url(grafana.url, credential="sa-token")
    first = push(api, TARGET)
    assert ("folder", FOLDER_UID, "created") in first.actions
    assert ("datasource", DATASOURCE_UID, "created") in first.actions
    assert {(k, a) for k, _, a in first.actions if k == "alert rule"} == {("alert rule", "created")}
    assert grafana.folders == {FOLDER_UID: {"title": "opsmon", "uid": FOLDER_UID}}
    ds = grafana.datasources[DATASOURCE_UID]
    assert (ds["url"], ds["database"], ds["secureJsonData"]) == (
        "http://influxdb:8086", "opsmon", {"httpHeaderValue1": "Token influx-secret"})
    assert {uid: (d["dashboard"], d["folderUid"], d["overwrite"]) for uid, d in grafana.dashboards.items()} == {
        uid: (BOARD_JSON[uid], FOLDER_UID, True) for uid in BOARD_UIDS}
    api_rules = {r["uid"]: r for r in rules.api_groups()[0]["rules"]}
    assert grafana.rules == api_rules
    assert grafana.groups == {(FOLDER_UID, rules.GROUP_TITLE): rules.api_groups()[0]}

    second = push(api, TARGET)
    assert ("folder", FOLDER_UID, "exists") in second.actions
    assert ("datasource", DATASOURCE_UID, "updated") in second.actions
    assert {a for k, _, a in second.actions if k == "alert rule"} == {"updated"}
    methods = [(m, p) for m, p, _ in grafana.requests]
    assert ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}") in methods
    assert ("PUT", "/api/v1/provisioning/alert-rules/opsmon-iot-anomaly") in methods


def test_push_reports_grafanas_refusal(grafana: FakeGrafana) -> None:
    grafana.fail_dashboards = True
    with pytest.raises(GrafanaPushError, match="dashboard opsmon-overview failed: .*Access denied"):
        push(GrafanaApi.from_url(grafana.url, credential="sa-token"), TARGET)


def test_push_command(grafana: FakeGrafana) -> None:
    result = CliRunner().invoke(app, ["grafana", "push", "--url", grafana.url, "--token", "wrong"])
    assert result.exit_code == 1 and "Unauthorized" in result.output
    result = CliRunner().invoke(app, ["grafana", "push", "--url", grafana.url, "--token", "sa-token",
                                      "--influx-url", "http://influx:8086", "--influx-token", "t"])
    assert result.exit_code == 0, result.output
    assert grafana.datasources[DATASOURCE_UID]["secureJsonData"] == {"httpHeaderValue1": "Token t"}
    assert set(grafana.dashboards) == set(BOARD_UIDS)
