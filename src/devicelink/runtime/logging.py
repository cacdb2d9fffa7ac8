"""Structured logs for ``devicelink serve``, and the one access-log line per request.

:func:`configure_logging` sends every standard-library logger (devicelink's own
``logging.getLogger(...)`` calls, uvicorn's, Alembic's) through one structlog formatter:
one JSON object per line (``DEVICELINK_LOG_FORMAT=json``, the default when standard
error is not a terminal) or a console rendering for a person.

The access log (:class:`devicelink.http.middleware.AccessLogMiddleware`) writes one line
per request: method, path, status, duration in milliseconds, request id and client
address (as uvicorn sees it through the trusted proxies). What is never logged: request
bodies, query strings (the query of ``verification_uri_complete`` carries the user code),
headers (``Authorization``, ``Cookie``), and local variables in tracebacks.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from starlette.types import Scope
from structlog.typing import EventDict, Processor, WrappedLogger

ACCESS_LOGGER = "devicelink.access"
_HANDLER_NAME = "devicelink-structlog"

# Loggers that could write request data (URLs, SQL parameters, form parts) when verbose:
# never below WARNING, whatever DEVICELINK_LOG_LEVEL says.
# Held at warning whatever the level: the database drivers log statement parameters at
# debug, and those include sign-in state, nonces and PKCE verifiers.
_QUIET = (
    "httpx",
    "httpcore",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "multipart",
    "python_multipart",
    "asyncio",
)


_pid = os.getpid()
# The access log's own writer when the format is JSON: one json.dumps and one write per
# request instead of the whole structlog and logging pipeline, a visible share of a hot
# request's time. Same keys as every other line.
_fast_access_stream: TextIO | None = None


def _add_pid(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Which worker wrote the line. Cached: a system call per line is measurable.
    event_dict["pid"] = _pid
    return event_dict


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_pid,
]


def resolve_format(value: str | None, stream: TextIO | None = None) -> str:
    """``json`` or ``console``: the setting, else json unless ``stream`` is a terminal."""
    if value:
        return value.lower()
    stream = stream if stream is not None else sys.stderr
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(log_format: str | None = None, level: str = "info") -> str:
    """Route all logging through structlog to standard error; the format chosen.

    Idempotent: calling it again (each uvicorn worker does, in its own process)
    replaces the handler it installed before."""
    global _pid, _fast_access_stream
    _pid = os.getpid()
    # The records' own process and thread fields are never shown: skip their lookups
    # (the logging documentation's advice for a fast path).
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    chosen = resolve_format(log_format)
    renderer: list[Processor]
    if chosen == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # plain_traceback: the default rich traceback would print local variables.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=resolve_format(None) == "console",  # colours on a terminal only
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    _fast_access_stream = sys.stderr if chosen == "json" else None
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Ours is the access log: uvicorn's would repeat each request, query string included.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    for name in _QUIET:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    return chosen


def _root_is_ours() -> bool:
    """The fast access-log writer only stands in for configure_logging's own handler
    (under pytest's log capture, say, the records must go through logging)."""
    handlers = logging.getLogger().handlers
    return len(handlers) == 1 and handlers[0].get_name() == _HANDLER_NAME


def get_logger(name: str) -> Any:
    """A structlog logger writing through the standard-library logger ``name``.

    It does not depend on :func:`configure_logging` having run: inside a test or a host
    application its records go to whatever handlers the standard library has."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


class AccessLog:
    """Writes the access log's line of one request (the middleware below, and the thin
    route of :mod:`devicelink.http.fast_path`, which answers outside the middleware)."""

    def __init__(self) -> None:
        self.log = get_logger(ACCESS_LOGGER)
        self._logger = logging.getLogger(ACCESS_LOGGER)

    def enabled(self) -> bool:
        # isEnabledFor is cached by the logging module: next to free when the level
        # (DEVICELINK_LOG_LEVEL=warning) turns the access log off.
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, scope: Scope, status: int, started: float, request_id: str | None) -> None:
        client = scope.get("client")
        request_id = request_id or scope.get("state", {}).get("request_id")
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        stream = _fast_access_stream
        if stream is not None and self._logger.handlers == [] and _root_is_ours():
            stream.write(
                json.dumps(
                    {
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status or 500,
                        "duration_ms": duration_ms,
                        "request_id": request_id,
                        "client_ip": client[0] if client else None,
                        "event": "request",
                        "level": "info",
                        "logger": ACCESS_LOGGER,
                        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                        "pid": _pid,
                    }
                )
                + "\n"
            )
            return
        self.log.info(
            "request",
            method=scope.get("method"),
            # The path only: a query string may hold a user code.
            path=scope.get("path"),
            status=status or 500,
            duration_ms=duration_ms,
            request_id=request_id,
            client_ip=client[0] if client else None,
        )
