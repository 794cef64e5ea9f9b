"""Checking Stripe's `Stripe-Signature` header on a raw webhook body."""

import hashlib
import hmac
import re
import time
from collections.abc import Sequence

# Stripe's own libraries refuse signatures older (or newer) than this, against replays.
TOLERANCE_SECONDS = 300
# Unix seconds in ASCII digits; more than 12 digits is past the year 33000 and only an attacker
# sends it (a 400-digit number overflowed the float comparison into a 500).
TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """The request is not provably from Stripe; the message says why, without secrets."""


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The header Stripe would send; tests and benchmarks sign their events with it."""
    digest = hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise SignatureError unless one `v1` signature matches one of `secrets` (rotation)."""
    if not header:
        raise SignatureError("Missing Stripe-Signature header.")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            if TIMESTAMP.fullmatch(value) is None:
                raise SignatureError("Malformed Stripe-Signature timestamp.")
            timestamp = int(value)
        elif key == "v1":
            try:
                signatures.append(bytes.fromhex(value))
            except ValueError:
                raise SignatureError("Malformed Stripe-Signature: v1 is not hex.") from None
    if timestamp is None or not signatures:
        raise SignatureError("Malformed Stripe-Signature header: needs t= and v1=.")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("Stripe-Signature timestamp is outside the tolerance.")
    signed = b"%d.%s" % (timestamp, payload)
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise SignatureError("No Stripe-Signature matches the configured webhook secrets.")
