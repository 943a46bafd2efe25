"""People's word on an alert: sent to the worker (``POST /opsmon/feedback``) from the CLI and scenario runs, or
given through the signed one-click links of alert notifications, whose signer is built here from settings."""

from __future__ import annotations

import time

import httpx

from opsmon.settings import Settings
from sinks.links import CHART_PATH, PAGE_PATH, LinkSigner, signer


def send_feedback(settings: Settings, alert_id: str, kind: str, user: str = "", note: str = "") -> httpx.Response:
    """Post ``ack`` or ``false_positive`` for ``alert_id``; the worker answers 202 once it queued it."""
    if settings.feedback_token is None:
        raise ValueError("set OPSMON_FEEDBACK_TOKEN (or OPSMON_FEEDBACK_TOKEN_FILE) to send feedback")
    return httpx.post(f"http://127.0.0.1:{settings.worker_web_port}/opsmon/feedback",
                      json={"alert_id": alert_id, "kind": kind, "user": user, "note": note},
                      headers={"Authorization": f"Bearer {settings.feedback_token.get_secret_value()}"},
                      timeout=10, trust_env=False)


def link_signer(settings: Settings) -> LinkSigner | None:
    """The signer of notification links; None (no links) until ``OPSMON_LINK_SECRET`` is set."""
    secret = settings.link_secret.get_secret_value() if settings.link_secret else ""
    try:
        return signer(secret, settings.public_url, settings.worker_web_port, settings.link_ttl_seconds)
    except ValueError as exc:  # the message names the setting's fault, never the secret
        raise ValueError(f"OPSMON_LINK_SECRET / OPSMON_PUBLIC_URL: {exc}") from None


def link(settings: Settings, alert_id: str, action: str, by: str = "", now: float | None = None) -> str:
    """A signed link to ``action`` on ``alert_id`` for ``by`` (e.g. to hand to a named person)."""
    signer = link_signer(settings)
    if signer is None:
        raise ValueError("set OPSMON_LINK_SECRET (or OPSMON_LINK_SECRET_FILE) to make links")
    path = CHART_PATH if action == "view" else PAGE_PATH
    return signer.url(path, signer.token(alert_id, action, time.time() if now is None else now, by))
