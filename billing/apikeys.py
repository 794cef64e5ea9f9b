"""Finance API keys: random, shown once, stored as a SHA-256 digest."""

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import ApiKey

ROLES = ("finance", "admin")
KEY_PREFIX = "rp_"


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted hash is enough to make a leak useless.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, role: str, name: str | None = None) -> tuple[ApiKey, str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(key_hash=hash_key(key), prefix=key[:10], role=role, name=name)
    session.add(row)
    session.flush()
    return row, key


def find_active_key(session: Session, key: str) -> ApiKey | None:
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke_api_key(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
