"""Tokens never reach the logs: uvicorn's access and connection lines print the request target, and a
browser sends its token in the query (``?access_token=``, RFC 6750 §2.3; the web link's ``?token=``)."""

from __future__ import annotations

import logging
import re

SECRET_QUERY = re.compile(r"(?<=[?&])((?:access_)?token=)[^&\s\"']*")
# uvicorn.access: one line per HTTP request; uvicorn.error: "WebSocket /path?query" [accepted], errors.
LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    return SECRET_QUERY.sub(r"\1<redacted>", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> None:
    for name in LOGGERS:
        logging.getLogger(name).addFilter(RedactTokens())
