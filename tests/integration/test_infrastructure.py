"""The test infrastructure itself: a real SMTP server answers and keeps what it receives."""

import smtplib
import time
from email.message import EmailMessage

from billing.settings import get_settings
from tests.conftest import CaughtMail


def test_smtp_server_fixture_receives_a_message(smtp_server: CaughtMail) -> None:
    settings = get_settings()
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "hi"
    message.set_content("hello")

    with smtplib.SMTP(settings.smtp_host, settings.smtp_port) as smtp:
        smtp.send_message(message)

    deadline = time.monotonic() + 5
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert smtp_server.messages[0]["Subject"] == "hi"
    assert smtp_server.envelopes[0] == ("a@example.org", ["b@example.org"])
