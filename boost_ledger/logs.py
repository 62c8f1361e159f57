"""structlog configured for one JSON object per line on stderr, each line one write."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import msgspec
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# msgspec instead of the json module (a tenth of a request's logging time); values it cannot
# encode are written as their repr, as structlog's own fallback does.
_encoder = msgspec.json.Encoder(enc_hook=repr)


def _dumps(value: Any, **_: Any) -> str:
    return _encoder.encode(value).decode()


_STANDARD_LEVELS = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)


class _StandardLibraryLines(logging.Handler):
    """The standard library's loggers (uvicorn's "Invalid HTTP request received.", which any
    client can have written, its tracebacks; asyncpg's, httpx's), rendered as structlog's JSON
    lines too. Without a handler, Python wrote their warnings and errors to stderr as bare text,
    among the JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        # structlog knows the standard levels only: a library's own (35, say) is the one below.
        known = (level for level in _STANDARD_LEVELS if record.levelno >= level)
        level = next(known, logging.DEBUG)
        try:
            structlog.get_logger(record.name).log(
                level,
                record.getMessage(),
                logger=record.name,
                exc_info=record.exc_info or False,
            )
        except Exception:
            self.handleError(record)


def configure(level: str = "info", file: TextIO | None = None) -> None:
    """Lines go to ``file`` (stderr by default), each with its newline in one write. (structlog's
    print logger writes the newline apart: on a stderr that writes through, as under
    ``PYTHONUNBUFFERED``, which containers and supervisors often set, that is two syscalls per
    line, one more per request than needed.)"""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            _LEVELS.get(level.lower(), logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr if file is None else file),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    if not any(isinstance(handler, _StandardLibraryLines) for handler in root.handlers):
        # Their warnings and errors, as before (the root logger's level is left as it is).
        root.addHandler(_StandardLibraryLines(logging.WARNING))
