"""Counters in Redis (in memory without REDIS_URL): how often one IP, email or card tried."""

import hashlib
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import structlog
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter

from billing.settings import Settings

# A card tester needs many cards; a reader whose card is declined needs one or two more.
MAX_CARDS_PER_PLEDGE = 3

log = structlog.get_logger()

Scope = Literal["ip", "email", "card", "pledge"]


@dataclass(frozen=True)
class Exceeded:
    reason: Literal["rate_limit", "declines"]
    scope: Scope
    limit: str
    retry_after_seconds: int


@lru_cache
def _limiter(redis_url: str | None, key_prefix: str) -> SlidingWindowCounterRateLimiter:
    store: Storage = (
        RedisStorage(redis_url, key_prefix=key_prefix) if redis_url else MemoryStorage()
    )
    return SlidingWindowCounterRateLimiter(store)


def _hashed(value: str) -> str:
    # Emails and IPs never sit in Redis or in the logs in the clear.
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


class Limits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = _limiter(settings.redis_url, settings.rate_limit_key_prefix)
        self._attempts: dict[Scope, RateLimitItem] = {
            "ip": parse(settings.rate_limit_per_ip),
            "email": parse(settings.rate_limit_per_email),
            "card": parse(settings.rate_limit_per_card),
            # Card updates of one pledge (the pledge form counts its cards in the ledger).
            "pledge": parse(f"{MAX_CARDS_PER_PLEDGE}/day"),
        }
        self._declines = parse(settings.decline_limit)

    def attempt(self, scope: Scope, value: str, purpose: str = "pledge") -> Exceeded | None:
        """Count one attempt by this IP, email or card; Exceeded once it is over its limit.

        Each purpose ("pledge", "manage_link") counts apart, so asking for links never blocks
        pledging.
        """
        item = self._attempts[scope]
        return self._check("rate_limit", item, scope, value, count=True, purpose=purpose)

    def declines_exhausted(self, scope: Scope, value: str) -> Exceeded | None:
        """Exceeded while this source has had too many declines recently (counts nothing)."""
        return self._check("declines", self._declines, scope, value, count=False)

    def declined(self, scope: Scope, value: str) -> None:
        self._check("declines", self._declines, scope, value, count=True, quiet=True)

    def _check(
        self,
        reason: Literal["rate_limit", "declines"],
        item: RateLimitItem,
        scope: Scope,
        value: str,
        *,
        count: bool,
        quiet: bool = False,
        purpose: str = "pledge",
    ) -> Exceeded | None:
        key = (reason, purpose, scope, _hashed(value))
        try:
            allowed = self._limiter.hit(item, *key) if count else self._limiter.test(item, *key)
            if allowed or quiet:
                return None
            reset_at = self._limiter.get_window_stats(item, *key).reset_time
        except Exception as error:  # Redis is down: let readers through rather than lose pledges
            log.warning("rate_limit_unavailable", error=type(error).__name__)
            return None
        log.warning(
            "abuse_refused", reason=reason, purpose=purpose, scope=scope, limit=str(item),
            key=key[3][:12],
        )  # fmt: skip
        return Exceeded(reason, scope, str(item), max(1, int(reset_at - time.time())))
