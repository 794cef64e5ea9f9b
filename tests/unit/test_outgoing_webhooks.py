"""Outgoing webhooks without a database: which addresses are refused, signatures, the schedule."""

import ipaddress
import socket
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from billing.endpoints import network
from billing.endpoints.service import EndpointError, parse_event_types, retry_delay
from billing.endpoints.signing import new_secret, signed_headers
from billing.models import WebhookEndpoint
from billing.settings import Settings

REFUSED = [
    "169.254.169.254", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd00::1",
    "fe80::1", "::1", "127.0.0.1", "::", "224.0.0.1", "ff02::1", "::ffff:10.0.0.1",
    "2002:7f00:1::", "64:ff9b::a00:1", "fd00:ec2::254", "240.0.0.1", "255.255.255.255",
    "0.0.0.0",  # noqa: S104  (an address refused here, never one bound to)
]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_link_local_cgnat_multicast_and_metadata_addresses_are_refused(
    address: str,
) -> None:
    assert not network.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert network.is_public(ipaddress.ip_address(address))


def test_a_name_that_resolves_to_a_private_address_is_refused_after_resolving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The resolver answers; nothing is connected to, no packet leaves the machine.
    def fake_getaddrinfo(host: str, port: int, **_kwargs: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    target = network.parse_target("https://crm.example.org/hook")
    with pytest.raises(network.RefusedAddress, match=r"169\.254\.169\.254"):
        network.resolve(target, allow_private=False)
    assert len(network.resolve(target, allow_private=True)) == 2


@pytest.mark.parametrize(
    "url", ["ftp://crm.example.org/", "https:///nohost", "https://user:pw@crm.example.org/"]
)
def test_urls_that_are_not_plain_http_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        network.parse_target(url)


def test_event_patterns_must_name_known_events() -> None:
    assert parse_event_types("pledge.*, payment.failed") == ["pledge.*", "payment.failed"]
    with pytest.raises(EndpointError, match="matches no event"):
        parse_event_types("pledge.create")


def test_default_retries_span_more_than_three_days() -> None:
    settings = Settings()
    attempts = settings.outgoing_webhook_max_attempts
    # The jitter only adds: the shortest possible total is the sum of the ceilings.
    total = sum(
        min(
            settings.outgoing_webhook_retry_max_seconds,
            settings.outgoing_webhook_retry_base_seconds * 2 ** (n - 1),
        )
        for n in range(1, attempts)
    )
    assert total >= 3 * 24 * 3600
    assert retry_delay(3, settings) >= settings.outgoing_webhook_retry_base_seconds * 4


def _endpoint(secret: str, previous: str | None, until: datetime | None) -> WebhookEndpoint:
    return WebhookEndpoint(
        url="https://crm.example.org/hook", event_types=["*"], secret=secret,
        previous_secret=previous, previous_secret_expires_at=until,
    )  # fmt: skip


def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() -> None:
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    body = '{"id": "evt_1"}'
    during = signed_headers(
        _endpoint(new, old, now + timedelta(hours=1)), message_id="evt_1", body=body, now=now
    )
    assert len(during["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, during)
    Webhook(new).verify(body, during)

    after = signed_headers(
        _endpoint(new, old, now - timedelta(seconds=1)), message_id="evt_1", body=body, now=now
    )
    Webhook(new).verify(body, after)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, after)
