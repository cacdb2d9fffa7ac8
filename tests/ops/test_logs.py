"""The logs of a real ``devicelink serve`` (DEVICELINK_LOG_FORMAT=json): one JSON object
per line, one access line per request, and never a code, key, password or cookie."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import add_user
from tests.support.http import PASSWORD, approve, csrf_of, poll, run, sign_in, start_flow
from tests.support.processes import clean_env, run_devicelink
from tests.support.servers import STRONG_SECRET, Launcher

pytestmark = pytest.mark.slow


def _numbered(sent: list[str], prefix: str) -> Callable[[httpx.Request], None]:
    """An httpx request hook giving every request an X-Request-ID of its own."""
    counter = itertools.count(1)

    def hook(request: httpx.Request) -> None:
        request_id = f"{prefix}-{next(counter)}"
        request.headers["X-Request-ID"] = request_id
        sent.append(request_id)

    return hook


def test_a_full_flow_logs_json_lines_without_any_secret(workdir: Path, launch: Launcher) -> None:
    env = clean_env(
        DEVICELINK_DATABASE_URL=f"sqlite:///{workdir / 'logs.db'}",
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_LOG_FORMAT="json",
        DEVICELINK_TRUSTED_PROXIES="127.0.0.1",
    )
    # As the guide orders it: the database first (admin commands never create one).
    assert run_devicelink("db", "upgrade", env=env, cwd=workdir).returncode == 0
    add_user(env, workdir, "alice")
    server = launch(env=env, cwd=workdir)
    sent: list[str] = []
    wrong_password = "not-the-password-" + "q" * 8

    with (
        httpx.Client(
            base_url=server.base_url,
            timeout=10,
            event_hooks={"request": [_numbered(sent, "device")]},
        ) as device,
        httpx.Client(
            base_url=server.base_url,
            timeout=10,
            event_hooks={"request": [_numbered(sent, "browser")]},
        ) as browser,
    ):
        flow = run(device, start_flow())
        assert run(device, poll(flow["device_code"])).json()["error"] == "authorization_pending"

        login = browser.get("/login")
        failed = browser.post(
            "/login",
            data={"username": "alice", "password": wrong_password, "csrf_token": csrf_of(login)},
        )
        assert failed.status_code == 400
        run(browser, sign_in("alice", PASSWORD))
        session_cookie = next(iter(browser.cookies.values()))
        # The link with the code in its query; the code typed lower-case without the dash.
        prefilled = browser.get(flow["verification_uri_complete"])
        assert flow["user_code"] in prefilled.text
        typed = flow["user_code"].replace("-", "").lower()
        run(browser, approve(typed))

        granted = run(device, poll(flow["device_code"]))
        assert granted.status_code == 200, granted.text
        key = granted.json()["access_token"]
        assert device.get("/api/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert browser.get("/devices").status_code == 200
        forwarded = device.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 200
        revoked = device.post("/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"})
        assert revoked.status_code == 200

    assert server.stop() == 0, server.logs()

    records = server.json_lines()  # every line of standard error is JSON
    access = server.access_lines()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in access:
        for field in ("method", "path", "status", "duration_ms", "request_id", "client_ip"):
            assert field in record, record
        assert "?" not in record["path"], record
        by_id.setdefault(record["request_id"], []).append(record)
    # One access line per request, under the request's own id.
    assert {i: len(by_id.get(i, [])) for i in sent} == dict.fromkeys(sent, 1)
    first = by_id["device-1"][0]
    assert (first["method"], first["path"], first["status"]) == (
        "POST",
        "/oauth/device/authorize",
        200,
    )
    pages = [by_id[i][0] for i in sent if i.startswith("browser")]
    assert ("GET", "/oauth/device/verify") in {(r["method"], r["path"]) for r in pages}
    assert any(r["path"] == "/login" and r["status"] == 400 for r in pages)
    # The client address as the trusted proxy (127.0.0.1) reported it.
    assert by_id[sent[-2]][0]["client_ip"] == "203.0.113.9"
    assert {r["client_ip"] for r in access if r["request_id"] != sent[-2]} == {"127.0.0.1"}
    assert all(r["level"] == "info" for r in access)
    assert any(r["logger"] == "uvicorn.error" for r in records)

    output = server.stderr() + server.stdout()
    user_code = flow["user_code"]
    secrets_seen = {
        "device code": flow["device_code"],
        "user code": user_code,
        "user code without dash": user_code.replace("-", ""),
        "user code typed": typed,
        "user code halves": user_code.split("-")[1] + user_code.split("-")[0],
        "API key": key,
        "key body": key.split("_")[1],
        "password": PASSWORD,
        "wrong password": wrong_password,
        "session cookie": session_cookie,
    }
    leaked = {name for name, value in secrets_seen.items() if value.lower() in output.lower()}
    assert leaked == set(), f"{leaked} found in the logs"


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    workdir: Path, launch: Launcher
) -> None:
    env = clean_env(
        DEVICELINK_DATABASE_URL=f"sqlite:///{workdir / 'proxies.db'}",
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_LOG_FORMAT="json",
    )
    server = launch(env=env, cwd=workdir)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        answer = http.post(
            "/oauth/device/authorize",
            data={"client_id": "devicelink-cli"},
            headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "spoofed"},
        )
        assert answer.status_code == 200
    assert server.stop() == 0
    (line,) = [r for r in server.access_lines() if r["request_id"] == "spoofed"]
    assert line["client_ip"] == "127.0.0.1"
