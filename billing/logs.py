"""Structured JSON logs on stdout, with secrets kept out of every line, ours and uvicorn's."""

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
REDACTED_KEYS = frozenset(
    {"api_key", "authorization", "client_secret", "password", "secret", "stripe_signature",
     "token", "captcha_token", "cookie"}
)  # fmt: skip
# Each pattern keeps what helps an operator (which route, which kind of key) and drops what
# would let a log reader act as someone: a manage token is 60 days of control over a pledge.
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # /manage/<token> and /monthly/<token>, in a path, a full link or a traceback;
    # /manage/link names no one.
    (re.compile(r"(/manage/|/monthly/)(?!link\b)[^/?#\s\"'<>]+"), r"\1[token]"),
    # Query parameters that carry a credential, whatever the route.
    (
        re.compile(
            r"([?&;][^=&#\s\"']*(?:token|key|secret|signature|password|auth|session|code)"
            r"[^=&#\s\"']*=)[^&#\s\"']*",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    # `Authorization: Bearer …` / `Basic …`, in a header dump or an error message.
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), rf"\1 {REDACTED}"),
    (
        re.compile(r"((?:authorization|stripe-signature)[\"']?\s*[:=]\s*[\"']?)[^\"'\n}]+", re.I),
        rf"\1{REDACTED}",
    ),
    # Stripe-Signature's HMACs, wherever the header's value shows up.
    (re.compile(r"\b(v[01]=)[0-9a-fA-F]{16,}"), rf"\1{REDACTED}"),
    # Keys and secrets recognisable by their shape: Stripe's, intents' client secrets, ours.
    (re.compile(r"\b((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]+"), rf"\1{REDACTED}"),
    # Stripe's webhook secrets and our outgoing endpoints' (base64, so + / = too).
    (re.compile(r"\bwhsec_[A-Za-z0-9_+/=]+"), f"whsec_{REDACTED}"),
    (re.compile(r"\b((?:seti|pi|src)_[A-Za-z0-9]+_secret_)[A-Za-z0-9]+"), rf"\1{REDACTED}"),
    (re.compile(r"\brp_[A-Za-z0-9_-]{20,}"), f"rp_{REDACTED}"),
)


# Every pattern at once, to tell in one search that a text holds none of them: most of what is
# logged (a path, a status, a template's name) does not, and nine substitutions on every value of
# every line were most of the cost of an access log line.
_ANY_SECRET = re.compile(
    "|".join(
        f"(?{'i' if pattern.flags & re.IGNORECASE else ''}:{pattern.pattern})"
        for pattern, _replacement in SECRET_PATTERNS
    )
)


def redact(text: str) -> str:
    """The text with every token, key and secret we can recognise replaced."""
    if not _ANY_SECRET.search(text):
        return text
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower() in REDACTED_KEYS else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    return value


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = REDACTED if key.lower() in REDACTED_KEYS else _redacted(value)
    return event


class RedactSecrets(logging.Filter):
    """The same redaction for standard-library records: uvicorn's access and error logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = _redacted(record.args)
        if record.exc_info and record.exc_info[0] is not None:
            # Formatters reuse exc_text when it is set, so the traceback is printed redacted.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        return True


STDLIB_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "celery", "")
# Libraries that log every HTTP request they make at INFO: three lines per Stripe call (two from
# stripe, one from httpx) that say nothing /metrics does not, and whose formatting and redaction
# cost more than our own work on a pledge. Their warnings and errors still show.
CHATTY_LOGGERS = ("stripe", "httpx", "httpcore")


def redact_stdlib_logs() -> None:
    """Attach the filter to uvicorn's and the root logger and handlers, once each."""
    for name in STDLIB_LOGGERS:
        logger = logging.getLogger(name)
        targets: list[logging.Filterer] = [logger, *logger.handlers]
        for target in targets:
            if not any(isinstance(f, RedactSecrets) for f in target.filters):
                target.addFilter(RedactSecrets())


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    redact_stdlib_logs()
