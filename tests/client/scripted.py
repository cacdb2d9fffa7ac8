"""A scripted server, a fake clock and a driver that steps a sans-IO flow: no network,
every answer an ``httpx.Response`` built here. Shared by the flow, pacing and discovery
tests."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias
from urllib.parse import parse_qs

import httpx

from devicelink.client.discovery import DEVICE_CODE_GRANT
from devicelink.client.flow import device_flow
from devicelink.client.messages import CodeIssued, ConnectionLost, DeviceAuthorization, Send, Sleep
from devicelink.client.pacing import POLL_MARGIN

SERVER = "https://login.example.com"
METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/oauth/device/authorize"
TOKEN_PATH = "/oauth/device/token"
REVOKE_PATH = "/oauth/revoke"
DEVICE_CODE = "d" * 43
KEY = "dlk_secret_abc123"
M = POLL_MARGIN  # what the client adds to every wait between polls


def metadata(issuer: str = SERVER, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "issuer": issuer,
        "device_authorization_endpoint": f"{issuer}{AUTHORIZE_PATH}",
        "token_endpoint": f"{issuer}{TOKEN_PATH}",
        "revocation_endpoint": f"{issuer}{REVOKE_PATH}",
        "grant_types_supported": [DEVICE_CODE_GRANT],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def authorization(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_code": DEVICE_CODE,
        "user_code": "WDJB-MJHT",
        "verification_uri": f"{SERVER}/oauth/device/verify",
        "verification_uri_complete": f"{SERVER}/oauth/device/verify?user_code=WDJB-MJHT",
        "expires_in": 600,
        "interval": 5,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# --- answers -----------------------------------------------------------------------------


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"Cache-Control": "no-store"})


def oauth(error: str, status: int = 400, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": error, **extra})


def granted(**changes: Any) -> httpx.Response:
    body = {"access_token": KEY, "token_type": "Bearer", "expires_in": 2_592_000, "scope": "api"}
    body.update(changes)
    return ok({k: v for k, v in body.items() if v is not None})


def busy(status: int, retry_after: str | None = None, **headers: str) -> httpx.Response:
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return httpx.Response(status, json={"error": "temporarily_unavailable"}, headers=headers)


def html(status: int) -> httpx.Response:
    return httpx.Response(
        status, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}
    )


PENDING = oauth("authorization_pending")
SLOW_DOWN = oauth("slow_down")
LOST = ConnectionLost("ConnectError: connection refused")

Answer: TypeAlias = httpx.Response | ConnectionLost | Callable[[httpx.Request], httpx.Response]


# --- a fake clock, a scripted server and a stepping driver ----------------------------------


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.now += seconds


WALL = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


class ScriptedServer:
    """Answers by path, in order; the last answer of a path repeats."""

    def __init__(self, **script: list[Answer]) -> None:
        self.script: dict[str, list[Answer]] = {
            METADATA_PATH: [ok(metadata())],
            AUTHORIZE_PATH: [ok(authorization())],
        }
        paths = {"metadata": METADATA_PATH, "authorize": AUTHORIZE_PATH, "token": TOKEN_PATH}
        paths |= {"revoke": REVOKE_PATH, "me": "/api/me"}
        for name, answers in script.items():
            self.script[paths.get(name, name)] = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response | ConnectionLost:
        answers = self.script.get(request.url.path)
        assert answers, f"unexpected {request.method} {request.url}"
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request) if callable(answer) else answer


@dataclass
class Transcript:
    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[Sleep] = field(default_factory=list)
    codes: list[DeviceAuthorization] = field(default_factory=list)
    result: Any = None

    @property
    def polls(self) -> list[dict[str, list[str]]]:
        return [form(r) for r in self.requests if r.url.path == TOKEN_PATH]

    def waits(self, *, after_code: bool = True) -> list[tuple[float, str]]:
        chosen = [s for s in self.sleeps if (s.remaining is not None) == after_code]
        return [(round(s.seconds, 3), s.reason) for s in chosen]


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def drive(
    flow: Generator[Any, Any, Any],
    answer: Callable[[httpx.Request], httpx.Response | ConnectionLost],
    clock: Clock,
    transcript: Transcript | None = None,
) -> Transcript:
    """Step ``flow`` like a driver would: Sleep moves the clock, Send asks ``answer``."""
    seen = transcript if transcript is not None else Transcript()
    try:
        command = next(flow)
        while True:
            reply: Any = None
            if isinstance(command, Send):
                seen.requests.append(command.request)
                reply = answer(command.request)
            elif isinstance(command, Sleep):
                seen.sleeps.append(command)
                clock.advance(command.seconds)
            elif isinstance(command, CodeIssued):
                seen.codes.append(command.authorization)
            command = flow.send(reply)
    except StopIteration as done:
        seen.result = done.value
    return seen


def login(
    server: Callable[[httpx.Request], httpx.Response | ConnectionLost],
    clock: Clock | None = None,
    transcript: Transcript | None = None,
    **options: Any,
) -> Transcript:
    clock = clock or Clock()
    flow = device_flow(
        options.pop("server_url", SERVER),
        options.pop("client_id", "devicelink-cli"),
        clock=clock,
        wall_clock=lambda: WALL.timestamp(),
        **options,
    )
    return drive(flow, server, clock, transcript)
