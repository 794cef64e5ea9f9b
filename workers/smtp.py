"""Handing a message to the newsroom's SMTP server, telling passing errors from lasting ones."""

import smtplib
import ssl
from collections.abc import Iterator, Sequence
from email.message import EmailMessage

from billing.settings import Settings


class TransientSmtpError(Exception):
    """Worth another try later: the server is down, busy, or answered 4xx."""


class PermanentSmtpError(Exception):
    """The server refused this message for good (5xx); trying again would not change it."""


def _connect(settings: Settings) -> smtplib.SMTP:
    address = (settings.smtp_host, settings.smtp_port)
    timeout = settings.smtp_timeout_seconds
    if settings.smtp_security == "none":
        return smtplib.SMTP(*address, timeout=timeout)
    tls = ssl.create_default_context(cafile=settings.smtp_ca_file)
    if settings.smtp_security == "implicit":
        return smtplib.SMTP_SSL(*address, timeout=timeout, context=tls)
    smtp = smtplib.SMTP(*address, timeout=timeout)
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
    messages: Sequence[EmailMessage], settings: Settings
) -> Iterator[TransientSmtpError | PermanentSmtpError | None]:
    """Hand `messages` over one connection, yielding each one's outcome (None: accepted) as
    soon as the server answers it, so the caller can record it before the next is sent."""
    answered = 0
    try:
        with _connect(settings) as smtp:
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
