"""Handing a message to the newsroom's SMTP server, telling passing errors from lasting ones."""

import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from typing import Any

from billing.settings import Settings


class TransientSmtpError(Exception):
    """Worth another try later: the server is down, busy, or answered 4xx."""


class PermanentSmtpError(Exception):
    """The server refused this message for good (5xx); trying again would not change it."""


class _Client(smtplib.SMTP):
    """smtplib's client, calling `before_data` first whenever it sends DATA: the command with
    which the server takes a message."""

    before_data: Callable[[], None] = staticmethod(lambda: None)

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.before_data()
        return super().data(msg)


class _TLSClient(_Client, smtplib.SMTP_SSL):
    pass


def _connect(settings: Settings) -> _Client:
    address = (settings.smtp_host, settings.smtp_port)
    timeout = settings.smtp_timeout_seconds
    if settings.smtp_security == "none":
        return _Client(*address, timeout=timeout)
    tls = ssl.create_default_context(cafile=settings.smtp_ca_file)
    if settings.smtp_security == "implicit":
        return _TLSClient(*address, timeout=timeout, context=tls)
    smtp = _Client(*address, timeout=timeout)
    try:
        # A relay that stops offering STARTTLS (or a network that strips it) raises here,
        # before the password is ever sent.
        smtp.starttls(context=tls)
    except BaseException:
        smtp.close()
        raise
    return smtp


def send_message(message: EmailMessage, settings: Settings) -> None:
    for error in send_messages([message], settings):
        if error is not None:
            raise error


def send_messages(
    messages: Sequence[EmailMessage],
    settings: Settings,
    before_data: Callable[[], None] = lambda: None,
) -> Iterator[TransientSmtpError | PermanentSmtpError | None]:
    """Hand `messages` over one connection, yielding each one's outcome (None: accepted) as
    soon as the server answers it. `before_data` runs before the server is handed each next
    message (after its envelope): where the caller waits until the last outcome is recorded."""
    answered = 0
    try:
        with _connect(settings) as smtp:
            smtp.before_data = before_data
            if settings.smtp_username and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            for message in messages:
                try:
                    smtp.send_message(message)
                    outcome = None
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as error:
                    # smtplib resets the transaction: the connection serves the next message.
                    outcome = _classify(error)
                answered += 1
                yield outcome
    except (smtplib.SMTPException, OSError) as error:
        # The connection is gone (or never came): every message not answered waits a retry.
        failure = _classify(error)
        for _ in range(len(messages) - answered):
            yield failure


def _classify(error: Exception) -> TransientSmtpError | PermanentSmtpError:
    outcome: TransientSmtpError | PermanentSmtpError
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _text in error.recipients.values()]
        outcome = _by_code(min(codes), f"recipient refused: {error.recipients}")
    elif isinstance(error, smtplib.SMTPAuthenticationError):
        # A configuration problem the operator fixes; mail waits for it rather than being dropped.
        outcome = TransientSmtpError(f"SMTP login refused ({error.smtp_code})")
    elif isinstance(error, smtplib.SMTPResponseException):
        outcome = _by_code(error.smtp_code, _text(error))
    else:
        outcome = TransientSmtpError(f"{type(error).__name__}: {error}")
    outcome.__cause__ = error
    return outcome


def _by_code(code: int, detail: str) -> TransientSmtpError | PermanentSmtpError:
    if 400 <= code < 500:
        return TransientSmtpError(detail)
    return PermanentSmtpError(detail)


def _text(error: smtplib.SMTPResponseException) -> str:
    reply = error.smtp_error
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return f"{error.smtp_code} {text}"
