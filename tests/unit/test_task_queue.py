"""Tasks are sent after each commit that queued them, however often one session commits."""

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from billing import task_queue


def test_every_commit_of_a_long_lived_session_sends_what_it_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(task_queue, "send_task", lambda name, *args: sent.append((name, args)))
    session = Session(create_engine("sqlite://"))

    for number in (1, 2, 3):
        session.execute(text("SELECT 1"))  # a transaction, as a write would begin
        task_queue.enqueue_after_commit(session, "deliver", number)
        assert sent[-1:] != [("deliver", (number,))]  # nothing before the commit
        session.commit()
    session.execute(text("SELECT 1"))
    task_queue.enqueue_after_commit(session, "deliver", 4)
    session.rollback()
    session.commit()

    assert sent == [("deliver", (1,)), ("deliver", (2,)), ("deliver", (3,))]
