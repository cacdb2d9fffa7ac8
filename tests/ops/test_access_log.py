"""The access-log middleware in this process: the path without its query, the status of
a request that failed, the request id of the response."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from devicelink.http.middleware import AccessLogMiddleware
from devicelink.runtime.logging import ACCESS_LOGGER

pytestmark = pytest.mark.anyio


def _scope(path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": [(b"cookie", b"devicelink_session=s3ss10n"), (b"authorization", b"Bearer k")],
        "client": ("198.51.100.4", 5000),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _discard(message: Message) -> None:
    return None


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if r.name == ACCESS_LOGGER]  # type: ignore[misc]


async def test_one_line_per_request_without_query_or_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"r-1")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    await AccessLogMiddleware(app)(
        _scope("/oauth/device/verify", b"user_code=WDJB-MJHT"), _receive, _discard
    )
    (line,) = _lines(caplog)
    assert line["path"] == "/oauth/device/verify"
    assert (line["method"], line["status"], line["request_id"]) == ("GET", 200, "r-1")
    assert line["client_ip"] == "198.51.100.4"
    assert isinstance(line["duration_ms"], float)
    text = repr(line)
    for secret in ("WDJB", "s3ss10n", "Bearer"):
        assert secret not in text


async def test_a_request_that_raises_is_logged_as_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    scope = _scope("/api/me", b"")
    scope["state"] = {"request_id": "from-state"}
    with pytest.raises(RuntimeError):
        await AccessLogMiddleware(app)(scope, _receive, _discard)
    (line,) = _lines(caplog)
    assert (line["status"], line["request_id"]) == (500, "from-state")


async def test_nothing_is_built_when_the_access_log_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.WARNING, logger=ACCESS_LOGGER)
    await AccessLogMiddleware(app)(_scope("/healthz", b""), _receive, _discard)
    assert _lines(caplog) == []
