"""Endpoint secrets and Standard Webhooks signatures (`webhook-id`, `-timestamp`, `-signature`)."""

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

from billing.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"  # noqa: S105  (the spec's prefix, not a secret)
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and during a rotation's overlap the previous one too."""
    current = [endpoint.secret]
    expires_at = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires_at is not None and now < expires_at:
        current.append(endpoint.previous_secret)
    return current


def signed_headers(
    endpoint: WebhookEndpoint, *, message_id: str, body: str, now: datetime
) -> dict[str, str]:
    """The spec's headers; several signatures are space-separated, and any one verifies."""
    signature = " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=now, data=body)
        for secret in signing_secrets(endpoint, now)
    )
    return {
        "Content-Type": "application/json",
        "User-Agent": "ReaderPledges-Webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
