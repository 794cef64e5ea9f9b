"""Counters in Redis (in memory without REDIS_URL): how often one IP, email or card tried."""

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, TypeVar

import structlog
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
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


# A limit check takes Redis about a millisecond; past this Redis is in trouble and the reader
# should not wait for it (redis-py waits forever by default, five checks per pledge).
REDIS_TIMEOUT_SECONDS = 0.05
# After Redis failed, how long this process counts in its own memory before trying Redis again.
REDIS_RETRY_AFTER_SECONDS = 10.0
Answer = TypeVar("Answer")


class Counters:
    """Counters in Redis that fall back to this process's memory while Redis is unreachable or
    hangs, so a Redis outage weakens the defences (each process counts alone) but never
    switches them off."""

    def __init__(self, redis_url: str | None, key_prefix: str) -> None:
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis = (
            SlidingWindowCounterRateLimiter(
                RedisStorage(
                    redis_url, key_prefix=key_prefix, wrap_exceptions=True,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                )
            )
            if redis_url
            else None
        )  # fmt: skip
        self._redis_retry_at = 0.0
        self._in_memory = False
        self._lock = threading.Lock()

    def run(self, check: Callable[[SlidingWindowCounterRateLimiter], Answer]) -> Answer:
        if self._redis is not None and time.monotonic() >= self._redis_retry_at:
            try:
                answer = check(self._redis)
            except StorageError as error:
                self._fall_back(error.storage_error)
            else:
                self._back_in_redis()
                return answer
        return check(self._memory)

    def _fall_back(self, error: Exception) -> None:
        with self._lock:
            self._redis_retry_at = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
            if self._in_memory:
                return
            self._in_memory = True
        # Once per outage, so a logger bound now (not the module's cached one) costs nothing and
        # follows the logging configuration in force.
        structlog.get_logger().warning(
            "rate_limits_in_memory", error=type(error).__name__,
            retry_redis_after_seconds=REDIS_RETRY_AFTER_SECONDS,
        )  # fmt: skip

    def _back_in_redis(self) -> None:
        if not self._in_memory:
            return
        with self._lock:
            self._in_memory = False
        log.info("rate_limits_in_redis")


@lru_cache
def _counters(redis_url: str | None, key_prefix: str) -> Counters:
    return Counters(redis_url, key_prefix)


def _hashed(value: str) -> str:
    # Emails and IPs never sit in Redis or in the logs in the clear.
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


class Limits:
    def __init__(self, settings: Settings) -> None:
        self._counters = _counters(settings.redis_url, settings.rate_limit_key_prefix)
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

        def check(limiter: SlidingWindowCounterRateLimiter) -> float | None:
            """When the window resets, if this key is over its limit; None otherwise."""
            allowed = limiter.hit(item, *key) if count else limiter.test(item, *key)
            if allowed or quiet:
                return None
            return limiter.get_window_stats(item, *key).reset_time

        reset_at = self._counters.run(check)
        if reset_at is None:
            return None
        log.warning(
            "abuse_refused", reason=reason, purpose=purpose, scope=scope, limit=str(item),
            key=key[3][:12],
        )  # fmt: skip
        return Exceeded(reason, scope, str(item), max(1, int(reset_at - time.time())))
