"""Signed links in every email: the pledge they name, and nothing for a forged or stale one."""

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine

from billing.db import utcnow
from billing.reader_links import manage_link, pledge_id_from_token
from billing.settings import get_settings


@pytest.fixture(autouse=True)
def link_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("READER_LINK_SECRET", "a-real-secret-for-these-tests")
    monkeypatch.setenv("READER_LINK_MAX_AGE_DAYS", "30")
    monkeypatch.setenv("PUBLIC_URL", "https://pledges.news.example/")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def token_of(link: str) -> str:
    prefix = "https://pledges.news.example/manage/"
    assert link.startswith(prefix)
    return link.removeprefix(prefix)


def test_a_manage_link_names_its_pledge() -> None:
    pledge_id = uuid.uuid4()
    assert pledge_id_from_token(token_of(manage_link(pledge_id))) == pledge_id


def test_a_tampered_token_names_no_pledge() -> None:
    token = token_of(manage_link(uuid.uuid4()))
    assert pledge_id_from_token(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert pledge_id_from_token("not-a-token") is None


def test_a_token_signed_with_another_secret_names_no_pledge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = token_of(manage_link(uuid.uuid4()))
    monkeypatch.setenv("READER_LINK_SECRET", "the-rotated-secret")
    get_settings.cache_clear()
    assert pledge_id_from_token(token) is None


def test_a_token_older_than_the_max_age_names_no_pledge() -> None:
    pledge_id = uuid.uuid4()
    token = token_of(manage_link(pledge_id))
    with time_machine.travel(utcnow() + timedelta(days=29), tick=False):
        assert pledge_id_from_token(token) == pledge_id
    with time_machine.travel(utcnow() + timedelta(days=31), tick=False):
        assert pledge_id_from_token(token) is None
