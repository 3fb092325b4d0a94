"""Structured JSON logs (orjson), one object a line on stderr, never carrying secrets.

Use the standard `logging` API everywhere; pass context as `extra={"event": ..., "x_trace_id": ...}`.
The formatter adds the OpenTelemetry trace and span ids of the current span and the fields of the current
`log_fields` block (a sync run's `run_id`), and redacts every field whose name is sensitive.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from traceback import walk_tb
from types import MappingProxyType, TracebackType
from typing import Any, Final

import orjson
from opentelemetry import trace

from service.core.redact import MASK, is_sensitive, redact_mapping, redact_text

# Attributes every LogRecord has; anything else came from `extra=` and is ours to emit.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# Fields every line carries while a `log_fields` block is open in the task that logs (or in the task that
# started it: a task copies the context it was created in).
_fields: ContextVar[Mapping[str, Any]] = ContextVar("wiseflow_sync_log_fields", default=MappingProxyType({}))


@contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line this task, and the tasks it starts, logs until the block ends."""
    token = _fields.set(MappingProxyType({**_fields.get(), **fields}))
    try:
        yield
    finally:
        _fields.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context, trace ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            **_fields.get(),  # fields a line's own `extra=` names again take the line's value
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if is_sensitive(key):
                entry[key] = MASK
            elif isinstance(value, dict):
                entry[key] = redact_mapping(value)
            else:
                entry[key] = value
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            entry["error"] = redact_text(str(record.exc_info[1]))
            entry["traceback"] = _frames(record.exc_info[2])
        return orjson.dumps(entry, default=str).decode()


def _frames(tb: TracebackType | None) -> list[str]:
    """Where an exception passed, innermost last, as `file:line in function`.

    Code locations only: no source line, no local variable and no message, so nothing of the data the code
    was handling (grades, names, tokens) leaves with it.
    """
    return [f"{frame.f_code.co_filename}:{line} in {frame.f_code.co_name}" for frame, line in walk_tb(tb)]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is emitted, not when logging was configured.

    A command run in-process (tests, an embedding) may swap stderr after configuring logs; a handler bound
    to the old stream would then write to a closed file.
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        """StreamHandler assigns a stream at construction: ignored, stderr is looked up at emit time."""


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route the root logger to one JSON handler at `level` (idempotent); stderr unless `stream` is given."""
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log repeats what our own request logs already say, with the query string; aiosqlite
    # logs every statement with its parameters at DEBUG, and those are grades and participant ids.
    for noisy in ("aiohttp.access", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
