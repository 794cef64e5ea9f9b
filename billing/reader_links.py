"""Signed, expiring links that let a reader manage a pledge from any email, without an account."""

import uuid
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.url_safe import URLSafeSerializerMixin

from billing.settings import get_settings

# A separate salt per purpose, so a token signed for one use is never accepted for another.
MANAGE_SALT = "reader-pledges/manage"
UPGRADE_SALT = "reader-pledges/upgrade"


class _LinkSerializer(URLSafeTimedSerializer):
    """itsdangerous' own tokens, byte for byte. It tries zlib on every payload and keeps the
    result only when it is shorter, which a quoted id never is; the try cost a worker more
    than the signature, once per mail."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))


def _serializer(salt: str = MANAGE_SALT) -> URLSafeTimedSerializer:
    secret = get_settings().reader_link_secret.get_secret_value()
    return _LinkSerializer(secret, salt=salt)


def manage_token(pledge_id: uuid.UUID | str) -> str:
    return str(_serializer().dumps(str(pledge_id)))


def manage_link(pledge_id: uuid.UUID | str) -> str:
    """`{PUBLIC_URL}/manage/{token}`, valid for READER_LINK_MAX_AGE_DAYS."""
    return f"{get_settings().public_url.rstrip('/')}/manage/{manage_token(pledge_id)}"


def pledge_id_from_token(token: str, salt: str = MANAGE_SALT) -> uuid.UUID | None:
    """The pledge a token was signed for; None when tampered with, malformed or expired."""
    max_age = get_settings().reader_link_max_age_days * 24 * 60 * 60
    try:
        return uuid.UUID(str(_serializer(salt).loads(token, max_age=max_age)))
    except (BadSignature, ValueError, TypeError):
        return None


def upgrade_token(gift_pledge_id: uuid.UUID | str) -> str:
    return str(_serializer(UPGRADE_SALT).dumps(str(gift_pledge_id)))


def upgrade_link(gift_pledge_id: uuid.UUID | str) -> str:
    """`{PUBLIC_URL}/monthly/{token}`: the page that turns a one-time gift into a monthly pledge."""
    return f"{get_settings().public_url.rstrip('/')}/monthly/{upgrade_token(gift_pledge_id)}"
