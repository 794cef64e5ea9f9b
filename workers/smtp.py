"""Handing a message to the newsroom's SMTP server, telling passing errors from lasting ones."""

import smtplib
import ssl
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
    try:
        with _connect(settings) as smtp:
            if settings.smtp_username and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as refused:
        codes = [code for code, _text in refused.recipients.values()]
        raise _by_code(min(codes), f"recipient refused: {refused.recipients}") from refused
    except smtplib.SMTPAuthenticationError as error:
        # A configuration problem the operator fixes; mail waits for it rather than being dropped.
        raise TransientSmtpError(f"SMTP login refused ({error.smtp_code})") from error
    except smtplib.SMTPResponseException as error:
        raise _by_code(error.smtp_code, _text(error)) from error
    except (smtplib.SMTPException, OSError) as error:
        raise TransientSmtpError(f"{type(error).__name__}: {error}") from error


def _by_code(code: int, detail: str) -> Exception:
    if 400 <= code < 500:
        return TransientSmtpError(detail)
    return PermanentSmtpError(detail)


def _text(error: smtplib.SMTPResponseException) -> str:
    reply = error.smtp_error
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return f"{error.smtp_code} {text}"
