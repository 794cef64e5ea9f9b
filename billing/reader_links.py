"""Signed, expiring links that let a reader manage a pledge from any email, without an account."""

import uuid

from itsdangerous import BadSignature, URLSafeTimedSerializer

from billing.settings import get_settings

_SALT = "manage-pledge"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().reader_link_secret.get_secret_value(), _SALT)


def manage_link(pledge_id: uuid.UUID) -> str:
    settings = get_settings()
    token = _serializer().dumps(str(pledge_id))
    return f"{settings.public_url.rstrip('/')}/manage/{token}"


def pledge_id_from_token(token: str) -> uuid.UUID | None:
    """The pledge a token was signed for, or None if it is forged, garbled or too old."""
    max_age = get_settings().reader_link_max_age_days * 86_400
    try:
        value = _serializer().loads(token, max_age=max_age)
        return uuid.UUID(str(value))
    except (BadSignature, ValueError):
        return None
