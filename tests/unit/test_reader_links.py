"""Manage links: signed for one pledge, refused when tampered with, forged or expired."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from itsdangerous import URLSafeTimedSerializer

from billing.db import reset_caches
from billing.reader_links import MANAGE_SALT, manage_link, manage_token, pledge_id_from_token

READER_LINK_SECRET = "a-real-secret-of-at-least-32-characters"


@pytest.fixture(autouse=True)
def link_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("READER_LINK_SECRET", READER_LINK_SECRET)
    monkeypatch.setenv("READER_LINK_MAX_AGE_DAYS", "30")
    monkeypatch.setenv("PUBLIC_URL", "https://pledges.example/")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_real")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_" + "w" * 32)
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", "pk_test_real")
    reset_caches()
    yield
    monkeypatch.undo()
    reset_caches()


def test_link_leads_back_to_its_pledge() -> None:
    pledge_id = uuid.uuid4()

    link = manage_link(pledge_id)

    assert link.startswith("https://pledges.example/manage/")
    assert pledge_id_from_token(link.rsplit("/", 1)[1]) == pledge_id


@time_machine.travel(datetime(2026, 11, 29, 10, 0, tzinfo=UTC), tick=False)
def test_tokens_are_itsdangerous_own_so_links_already_mailed_keep_working() -> None:
    pledge_id = uuid.uuid4()
    theirs = URLSafeTimedSerializer(READER_LINK_SECRET, salt=MANAGE_SALT).dumps(str(pledge_id))

    assert manage_token(pledge_id) == theirs
    assert pledge_id_from_token(theirs) == pledge_id


@pytest.mark.parametrize("position", [0, 10, -1])
def test_tampered_token_is_refused(position: int) -> None:
    token = manage_token(uuid.uuid4())
    # Flip the character's top bit: the last one of a signature carries padding in its low bits,
    # so a neighbouring letter could decode to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    swapped = alphabet[(alphabet.index(token[position]) + 32) % 64]
    tampered = token[:position] + swapped + (token[position + 1 :] if position != -1 else "")

    assert pledge_id_from_token(tampered) is None


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 500])
def test_malformed_token_is_refused(token: str) -> None:
    assert pledge_id_from_token(token) is None


def test_token_signed_with_another_secret_is_refused() -> None:
    forged = URLSafeTimedSerializer("guessed-secret", salt=MANAGE_SALT).dumps(str(uuid.uuid4()))

    assert pledge_id_from_token(forged) is None


def test_signed_value_that_is_not_a_pledge_id_is_refused() -> None:
    signed = URLSafeTimedSerializer(READER_LINK_SECRET, salt=MANAGE_SALT).dumps("../admin")

    assert pledge_id_from_token(signed) is None


def test_token_expires_after_the_configured_days() -> None:
    pledge_id = uuid.uuid4()
    with time_machine.travel(datetime(2026, 1, 1, tzinfo=UTC), tick=False):
        token = manage_token(pledge_id)
    with time_machine.travel(datetime(2026, 1, 30, tzinfo=UTC), tick=False):
        assert pledge_id_from_token(token) == pledge_id
    with time_machine.travel(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=30, seconds=1)):
        assert pledge_id_from_token(token) is None


def test_placeholder_secret_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from billing.settings import Settings

    monkeypatch.setenv("READER_LINK_SECRET", "changeme")
    with pytest.raises(ValidationError, match="READER_LINK_SECRET"):
        Settings()
