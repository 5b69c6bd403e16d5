"""Loguru set-up for both process types.

One JSON object per line when ``LOG_JSON`` is on, readable text otherwise. Standard-library
loggers (uvicorn, asyncio, ...) are routed into loguru. uvicorn gives its loggers their own
handlers with ``propagate=False``, so a root handler alone would miss them: their handlers
are replaced too.
"""

from __future__ import annotations

import inspect
import logging
import sys
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from loguru import logger

from observability.tracing import current_trace_id

_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "asyncio", "asyncpg", "redis")


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _json_line(
    ts: datetime, level: str, event: str, logger_name: str, fields: dict[str, Any]
) -> dict[str, Any]:
    # A flat object (not loguru's nested "record") is what log shippers index well.
    # UTC: one clock for every process and host, whatever their time zone.
    line = {"ts": ts.astimezone(UTC).isoformat(), "level": level, "event": event}
    line["logger"] = logger_name
    line.update(fields)
    return line


def _write(line: dict[str, Any]) -> None:
    sys.stderr.write(orjson.dumps(line, default=str).decode() + "\n")


def _json_sink(message: Any) -> None:
    record = message.record
    line = _json_line(
        record["time"], record["level"].name, record["message"], record["name"], record["extra"]
    )
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        line["exception"] = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    _write(line)


@dataclass(frozen=True, slots=True)
class _JsonLines:
    service: str
    info_enabled: bool


# Set by configure_logging when lines are JSON: what ``info`` needs to write them itself.
_json_lines: _JsonLines | None = None


def info(event: str, **fields: Any) -> None:
    """An INFO line, for the lines written once per request or per command.

    With JSON logs, the line is written straight to stderr in the JSON sink's shape: loguru
    builds a full record for every call (frame, thread, process, elapsed...), about 15 µs,
    where writing the line takes 2. Otherwise (text logs, or logging not configured, as in
    tests) it goes through loguru. Fields in the log context (``contextualize``) are not
    added here: pass them.
    """
    lines = _json_lines
    if lines is None:
        logger.opt(depth=1).info(event, **fields)
        return
    if not lines.info_enabled:
        return
    caller = sys._getframe(1).f_globals.get("__name__", "")
    line = _json_line(datetime.now(UTC), "INFO", event, caller, {"service": lines.service})
    line.update(fields)
    if "trace_id" not in fields and (trace_id := current_trace_id()):
        line["trace_id"] = trace_id
    _write(line)


def _add_trace_id(record: Any) -> None:
    # Lines written inside a span carry its trace id, so logs and traces join up.
    if "trace_id" not in record["extra"]:
        trace_id = current_trace_id()
        if trace_id:
            record["extra"]["trace_id"] = trace_id


def configure_logging(*, json: bool, level: str, service: str) -> None:
    global _json_lines
    logger.remove()
    _json_lines = (
        _JsonLines(service, logger.level(level.upper()).no <= logger.level("INFO").no)
        if json
        else None
    )
    logger.configure(extra={"service": service}, patcher=_add_trace_id)
    if json:
        logger.add(_json_sink, level=level, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            backtrace=False,
            diagnose=False,  # diagnose prints local variables: it could print a password
            format=(
                "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
                "<cyan>{message}</cyan> {extra}"
            ),
        )
    logging.basicConfig(handlers=[_InterceptHandler()], level=0, force=True)
    for name in _STDLIB_LOGGERS:
        std = logging.getLogger(name)
        std.handlers = [_InterceptHandler()]
        std.propagate = False
    # The web logs each request itself ("request.finished", with its ids). uvicorn writes
    # its own access line whenever this logger has a handler: give it none.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
