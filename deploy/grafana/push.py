"""Upsert opsmon's folder, datasource, boards and alert rules into a running Grafana over its HTTP API.

    api = GrafanaApi.from_url("https://grafana.example.com", credential="<service account token>")
    push(api, InfluxTarget(url=..., database=..., token=...))

The same objects the provisioning files hold, so a Grafana fed either way shows the same thing.
Alert rules pushed through the API are marked as provisioned: edit them here, not in the UI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaException

from deploy.grafana import datasource, rules
from deploy.grafana.boards import all_boards
from deploy.grafana.boards.common import FOLDER_TITLE, FOLDER_UID
from deploy.grafana.provision import dashboard_json

MESSAGE = "opsmon grafana push"


class GrafanaPushError(RuntimeError):
    """A Grafana API call of ``push`` failed; the message names the object and Grafana's answer."""


@dataclass
class PushReport:
    """What ``push`` did: one ``(kind, name, action)`` per object."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, kind: str, name: str, action: str) -> None:
        """Record one upsert."""
        self.actions.append((kind, name, action))


def push(api: GrafanaApi, target: datasource.InfluxTarget) -> PushReport:
    """Create or update the folder, datasource, dashboards and alert rules, in that order."""
    report = PushReport()
    _step(f"folder {FOLDER_UID}", lambda: _upsert_folder(api, report))
    _step("datasource", lambda: _upsert_datasource(api, datasource.definition(target), report))
    for board in all_boards():
        body = {"dashboard": json.loads(dashboard_json(board)), "folderUid": FOLDER_UID, "overwrite": True,
                "message": MESSAGE}
        _step(f"dashboard {board.uid}", lambda body=body: api.dashboard.update_dashboard(body))
        report.add("dashboard", str(board.uid), "upserted")
    for group in rules.api_groups():
        for rule in group["rules"]:  # type: ignore[union-attr]
            _step(f"alert rule {rule['uid']}", lambda rule=rule: _upsert_rule(api, rule, report))
        # The group PUT sets the evaluation interval and the rules' order once they all exist.
        _step(f"rule group {group['title']}", lambda group=group: api.alertingprovisioning.update_rule_group(
            FOLDER_UID, group["title"], group))
        report.add("rule group", str(group["title"]), "updated")
    return report


def _step(what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except GrafanaException as exc:
        raise GrafanaPushError(f"grafana push: {what} failed: {exc.message}") from exc


def _missing(call: Callable[[], Any]) -> bool:
    """True when the GET in ``call`` answers 404."""
    try:
        call()
    except GrafanaException as exc:
        if exc.status_code == 404:
            return True
        raise
    return False


def _upsert_folder(api: GrafanaApi, report: PushReport) -> None:
    if _missing(lambda: api.folder.get_folder(FOLDER_UID)):
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.add("folder", FOLDER_UID, "created")
    else:
        report.add("folder", FOLDER_UID, "exists")


def _upsert_datasource(api: GrafanaApi, definition: dict[str, object], report: PushReport) -> None:
    uid = str(definition["uid"])
    if _missing(lambda: api.datasource.get_datasource_by_uid(uid)):
        api.datasource.create_datasource(definition)
        report.add("datasource", uid, "created")
    else:
        api.datasource.update_datasource_by_uid(uid, definition)
        report.add("datasource", uid, "updated")


def _upsert_rule(api: GrafanaApi, rule: dict[str, Any], report: PushReport) -> None:
    uid = rule["uid"]
    if _missing(lambda: api.alertingprovisioning.get_alertrule(uid)):
        api.alertingprovisioning.create_alertrule(rule)
        report.add("alert rule", uid, "created")
    else:
        api.alertingprovisioning.update_alertrule(uid, rule)
        report.add("alert rule", uid, "updated")
