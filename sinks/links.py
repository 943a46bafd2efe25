"""Signed one-click links in alert notifications: HMAC-SHA256 tokens naming an alert, an action and an expiry.

A token is ``<payload>.<signature>``, both base64url without padding. The payload is
``action|expires|by|alert_id`` (``by``, optional, names the person the link was made for); the signature is
HMAC-SHA256 over the payload with the worker's link secret. Anyone holding a link can use it until it expires,
so links go only where alerts go; the worker records each (alert, action) it applied, so a link works once.

>>> signer = LinkSigner(b"a-secret-of-32-bytes-or-more...", "https://ops.example.com/", ttl_s=86400)
>>> token = signer.token("iot:s1/d1:temperature:1767225600", "false_positive", now=1767225660.0, by="alice")
>>> claim = signer.verify(token, now=1767225700.0)
>>> (claim.alert_id, claim.action, claim.by, claim.expires)
('iot:s1/d1:temperature:1767225600', 'false_positive', 'alice', 1767312060)
>>> signer.verify(token, now=1767312061.0)
Traceback (most recent call last):
...
sinks.links.LinkExpired: this link expired at 2026-01-02 00:01:00 UTC
>>> signer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "AB"), now=1767225700.0)
Traceback (most recent call last):
...
sinks.links.LinkInvalid: this link is not valid (it was altered, or made with another secret)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ACTIONS = ("ack", "false_positive", "view")  # "view" only shows the alert and its chart
PAGE_PATH = "/opsmon/link"
CHART_PATH = "/opsmon/chart.png"
_BY_MAX = 64


class LinkError(ValueError):
    """A link that must change nothing; its message is shown whole to the person who opened it."""


class LinkInvalid(LinkError):
    """Altered, truncated, or signed with another secret."""


class LinkExpired(LinkError):
    """Correctly signed, but past its expiry."""


@dataclass(frozen=True)
class Claim:
    """What a verified token says."""

    alert_id: str
    action: str
    expires: int
    by: str = ""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkSigner:
    """Makes and checks the tokens of one worker fleet (all workers share the secret)."""

    secret: bytes
    public_url: str  # where people reach the worker, e.g. through the business's TLS reverse proxy
    ttl_s: float = 86400.0

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes (e.g. `openssl rand -hex 32`)")
        if not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"the public URL must start with http:// or https://, not {self.public_url!r}")
        if self.ttl_s <= 0:
            raise ValueError("the link lifetime must be positive")

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, payload, hashlib.sha256).digest()

    def token(self, alert_id: str, action: str, now: float, by: str = "") -> str:
        """A token for ``action`` on ``alert_id``, valid for ``ttl_s`` from ``now``."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        if "|" in by or len(by) > _BY_MAX:
            raise ValueError(f"'by' must be at most {_BY_MAX} characters without '|'")
        payload = f"{action}|{int(now + self.ttl_s)}|{by}|{alert_id}".encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, token: str, now: float) -> Claim:
        """The claim of a genuine, unexpired token; :class:`LinkInvalid` or :class:`LinkExpired` otherwise."""
        invalid = LinkInvalid("this link is not valid (it was altered, or made with another secret)")
        head, dot, sig = token.partition(".")
        if not dot or len(token) > 2048:
            raise invalid
        try:
            payload, signature = _unb64(head), _unb64(sig)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise invalid
        # Signed by us, so well formed; parsed defensively all the same.
        try:
            action, expires, by, alert_id = payload.decode().split("|", 3)
            claim = Claim(alert_id=alert_id, action=action, expires=int(expires), by=by)
        except ValueError:
            raise invalid from None
        if claim.action not in ACTIONS:
            raise invalid
        if now > claim.expires:
            at = datetime.fromtimestamp(claim.expires, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise LinkExpired(f"this link expired at {at}")
        return claim

    def url(self, path: str, token: str) -> str:
        """The public URL of ``path`` carrying ``token``."""
        return f"{self.public_url.rstrip('/')}{path}?t={quote(token, safe='')}"

    def links(self, alert_id: str, now: float, by: str = "") -> dict[str, str]:
        """The notification's links: acknowledge, false positive, and the chart's image.

        >>> s = LinkSigner(b"0123456789abcdef", "https://ops.example.com")
        >>> sorted(s.links("pos:store-1:revenue:1767225600", now=0.0))
        ['ack_url', 'false_positive_url', 'image_url']
        >>> s.links("pos:store-1:revenue:1767225600", now=0.0)["ack_url"].startswith(
        ...     "https://ops.example.com/opsmon/link?t=")
        True
        """
        return {"ack_url": self.url(PAGE_PATH, self.token(alert_id, "ack", now, by)),
                "false_positive_url": self.url(PAGE_PATH, self.token(alert_id, "false_positive", now, by)),
                "image_url": self.url(CHART_PATH, self.token(alert_id, "view", now, by))}


def signer(secret: str, public_url: str | None, local_port: int, ttl_s: float = 86400.0) -> LinkSigner | None:
    """A worker's link signer from its settings' values; None (no links) while ``secret`` is empty.

    >>> signer("", None, 6066) is None
    True
    >>> signer("0123456789abcdef", None, 6066).public_url  # no public URL: the worker itself, for a local demo
    'http://127.0.0.1:6066'
    """
    if not secret:
        return None
    return LinkSigner(secret.encode(), public_url or f"http://127.0.0.1:{local_port}", ttl_s=ttl_s)
