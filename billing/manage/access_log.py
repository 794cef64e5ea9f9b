"""Keeps readers' manage and make-it-monthly tokens out of the access log: the token in the
path is their key."""

import logging
import re

TOKEN_IN_PATH = re.compile(r"(/manage/|/monthly/)(?!link\b)[^/?\s]+")


class RedactManageTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_IN_PATH.sub(r"\1[token]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_PATH.sub(r"\1[token]", record.msg)
        return True


def redact_manage_tokens() -> None:
    """Attach the filter to uvicorn's access logger once."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactManageTokens) for f in access.filters):
        access.addFilter(RedactManageTokens())
