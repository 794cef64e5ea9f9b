"""Rate limits when Redis is in trouble: answers within 100 ms, and never stop refusing."""

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import structlog.testing
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from billing.abuse.limiter import Limits
from billing.db import reset_caches
from billing.settings import get_settings
from tests.conftest import free_port

LIMIT_CHECK_BUDGET_SECONDS = 0.1


@pytest.fixture
def hanging_redis() -> Iterator[str]:
    """A server that accepts connections and never answers, as a wedged Redis does."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        server.close()


@pytest.fixture
def unreachable_redis() -> str:
    """A port nothing listens on: every connection is refused."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def settings_with(
    test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., None]]:
    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reset_caches()

    yield apply
    monkeypatch.undo()
    reset_caches()


def timed(check: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    answer = check()
    return answer, time.perf_counter() - started


@pytest.mark.parametrize("redis_fixture", ["unreachable_redis", "hanging_redis"])
def test_limits_answer_fast_and_keep_refusing_when_redis_is_in_trouble(
    request: pytest.FixtureRequest, settings_with: Callable[..., None], redis_fixture: str
) -> None:
    settings_with(REDIS_URL=request.getfixturevalue(redis_fixture), RATE_LIMIT_PER_IP="3/hour")
    limits = Limits(get_settings())

    with structlog.testing.capture_logs() as logged:
        answers = [timed(lambda: limits.attempt("ip", "203.0.113.7")) for _ in range(5)]
        declines = [timed(lambda: limits.declines_exhausted("ip", "203.0.113.7")) for _ in range(3)]

    assert [answer is None for answer, _ in answers] == [True, True, True, False, False]
    assert all(seconds < LIMIT_CHECK_BUDGET_SECONDS for _, seconds in answers + declines)
    assert limits.attempt("ip", "198.51.100.1") is None  # others still go through
    warnings = [entry for entry in logged if entry["event"] == "rate_limits_in_memory"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"


@pytest.mark.parametrize("redis_fixture", ["unreachable_redis", "hanging_redis"])
def test_pledge_form_refuses_past_the_limit_while_redis_is_in_trouble(
    request: pytest.FixtureRequest,
    db: Session,
    settings_with: Callable[..., None],
    redis_fixture: str,
) -> None:
    settings_with(REDIS_URL=request.getfixturevalue(redis_fixture), RATE_LIMIT_PER_IP="2/hour")
    from billing.app import create_app

    with TestClient(create_app()) as client:
        statuses = [
            client.post(
                "/v1/pledges",
                json={"email": f"reader{n}@example.org", "amount": 500, "currency": "eur"},
            ).status_code
            for n in range(4)
        ]

    assert statuses == [201, 201, 429, 429]


def test_a_healthy_redis_is_used_so_processes_share_their_counts(
    settings_with: Callable[..., None], test_environment: dict[str, str]
) -> None:
    # Two processes' counters on one Redis: what one counts, the other sees (memory would not).
    settings_with(RATE_LIMIT_PER_IP="2/hour")
    from billing.abuse.limiter import Counters

    first = Counters(test_environment["REDIS_URL"], get_settings().rate_limit_key_prefix)
    second = Counters(test_environment["REDIS_URL"], get_settings().rate_limit_key_prefix)
    limits = Limits(get_settings())
    limits._counters = first
    assert limits.attempt("ip", "192.0.2.9") is None
    assert limits.attempt("ip", "192.0.2.9") is None
    limits._counters = second

    assert limits.attempt("ip", "192.0.2.9") is not None
