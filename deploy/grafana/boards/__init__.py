"""The opsmon Grafana boards, one module each; ``all_boards()`` builds them all."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from deploy.grafana.boards import iot, overview, pipeline, sales, web
from deploy.grafana.influxql import register


def all_boards() -> list[dm.Dashboard]:
    """Every board, in menu order."""
    register()
    return [overview.build(), iot.build(), sales.build(), web.build(), pipeline.build()]
