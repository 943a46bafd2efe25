"""People's word on an alert, sent to the worker (``POST /opsmon/feedback``): from the CLI and scenario runs."""

from __future__ import annotations

import httpx

from opsmon.settings import Settings


def send_feedback(settings: Settings, alert_id: str, kind: str, user: str = "", note: str = "") -> httpx.Response:
    """Post ``ack`` or ``false_positive`` for ``alert_id``; the worker answers 202 once it queued it."""
    if settings.feedback_token is None:
        raise ValueError("set OPSMON_FEEDBACK_TOKEN (or OPSMON_FEEDBACK_TOKEN_FILE) to send feedback")
    return httpx.post(f"http://127.0.0.1:{settings.worker_web_port}/opsmon/feedback",
                      json={"alert_id": alert_id, "kind": kind, "user": user, "note": note},
                      headers={"Authorization": f"Bearer {settings.feedback_token.get_secret_value()}"},
                      timeout=10, trust_env=False)
