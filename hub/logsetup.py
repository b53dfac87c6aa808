"""Logging for the CLI and the daemon: human lines or JSON lines, with every secret redacted.

Redaction happens in three places, so that no one of them is a single point of failure:

- :func:`install_record_redaction` wraps the log record factory, so every record is masked as it is created
  and *any* handler (journald, a log shipper, a test's capture) only ever sees masked text;
- the :class:`RedactingFilter` sits on the hub's handler, not on a logger, because a handler filter also sees
  records propagated from child loggers (``hub.*``, ``connectors.*``, ``httpx``); a logger filter would not;
- the formatters redact the finished line once more (JSON extras bypass the other two).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from hub.errors import ConfigError
from hub.redact import redact, redact_data

LogFormat = Literal["human", "json"]
HUMAN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra=` and goes into JSON output.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_HANDLER_MARK = "_audience_hub_handler"
_FACTORY_MARK = "_audience_hub_redacting_factory"
# Libraries whose INFO lines are noise next to the hub's own (httpx repeats the client's request line; alembic
# announces its plugins on every start); they log at WARNING and above unless the level is DEBUG.
CHATTY_LOGGERS = ("alembic", "httpx", "httpcore")


def redact_record(record: logging.LogRecord) -> None:
    """Mask secrets in ``record`` in place: the message (formatted with its args), traceback and stack info.

    A message whose args do not fit its format string is kept as text (masked) instead of raising, so a bad
    log call never takes a sync down and never prints its raw arguments in a "Logging error" report.
    """
    try:
        message = record.getMessage()
    except Exception:
        message = f"{record.msg!s} (log arguments not matching the format: {record.args!r})"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install_record_redaction() -> None:
    """Redact every log record as it is created, whichever handler later receives it (idempotent)."""
    current = logging.getLogRecordFactory()
    if getattr(current, _FACTORY_MARK, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        redact_record(record)
        return record

    setattr(factory, _FACTORY_MARK, True)
    logging.setLogRecordFactory(factory)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record before any handler formats it.

    The message is formatted with its args first, so a secret passed as a ``%s`` argument is masked too;
    the exception traceback and stack info are formatted and masked here, and formatters reuse that text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        redact_record(record)
        return True


class HumanFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO    hub.sync: message``, redacted once more as a whole."""

    def __init__(self) -> None:
        super().__init__(HUMAN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one (or, with a traceback, several) redacted lines."""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, ``exc`` and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one redacted JSON line."""
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in data:
                data[key] = value
        # Extras bypass the filter (it only sees msg/args/exc), so every value is redacted again, before
        # serialising: masking the serialised line could break its JSON.
        return json.dumps(redact_data(data), ensure_ascii=False)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ConfigError(f"invalid log level {level!r} (use DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    return value


def setup_logging(
    level: str | int = "INFO", fmt: LogFormat | str = "human", stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (default: stderr) in the chosen format, redacted.

    Also installs :func:`install_record_redaction`, so other handlers receive masked records too, and keeps
    :data:`CHATTY_LOGGERS` at WARNING unless ``level`` is DEBUG.

    Idempotent: a second call replaces the handler the first one installed, so nothing is logged twice.

    Args:
        level: minimum level, a name (``"info"`` works) or a number.
        fmt: ``human`` or ``json``.
        stream: where to write.

    Returns:
        The installed handler.

    Raises:
        ConfigError: unknown level or format (e.g. from ``HUB_LOG_LEVEL``).
    """
    if fmt not in ("human", "json"):
        raise ConfigError(f"invalid log format {fmt!r} (use human or json)")
    threshold = _level(level)
    install_record_redaction()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if threshold > logging.DEBUG else logging.NOTSET)
    return handler
