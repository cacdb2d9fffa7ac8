"""A host CLI built with ``make_auth_group(user_agent=...)`` signs in against a host
application served on loopback: the confirm page the user approves on names the host's
CLI (issue 17, item 6)."""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keyring
import pytest
import uvicorn
from click.testing import CliRunner
from pydantic import SecretStr

from devicelink.client import ClientHooks, make_auth_group
from devicelink.runtime.settings import Settings
from tests.client_credentials.keyrings import no_keyring
from tests.embedding.hosting import HOST_USER_COOKIE, host_app
from tests.support.app import TEST_SECRET
from tests.support.http import csrf_of, decision
from tests.support.processes import free_port

ACME = "acme-cli/2.1"


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[str]:
    """The host application, devicelink at /auth, served by uvicorn on loopback."""
    port = free_port()
    settings = Settings(
        public_url=f"http://127.0.0.1:{port}/auth",
        secret_key=SecretStr(TEST_SECRET),
        database_url=f"sqlite:///{tmp_path / 'devicelink.db'}",
        data_dir=tmp_path / "data",
    )
    config = uvicorn.Config(host_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the host stopped while starting"
        assert time.monotonic() < deadline, "the host did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


class RecordingTransport(httpx.HTTPTransport):
    """The real network, remembering the device authorization answer (the code a user
    would read off the terminal)."""

    flow: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/oauth/device/authorize"):
            response.read()
            self.flow = response.json()
        return response


def test_the_confirm_page_names_the_host_cli(
    origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    previous = keyring.get_keyring()
    keyring.set_keyring(no_keyring())  # the key goes to a file in config_dir
    network = RecordingTransport()
    confirm_pages: list[str] = []

    def user_approves_in_the_browser(seconds: float) -> None:
        if confirm_pages:
            return
        assert network.flow is not None
        with httpx.Client(base_url=origin) as browser:
            browser.cookies.set(HOST_USER_COOKIE, "alice")  # signed in to the host
            page = browser.get("/auth/oauth/device/verify")
            confirm = browser.post(
                "/auth/oauth/device/verify",
                data={"user_code": network.flow["user_code"], "csrf_token": csrf_of(page)},
            )
            confirm_pages.append(html.unescape(confirm.text))
            approved = browser.post(
                "/auth/oauth/device/decide",
                data=decision(confirm, "approve"),
            )
            assert "Device approved" in approved.text

    group = make_auth_group(
        server=f"{origin}/auth", user_agent=ACME, keyring_service="acme", env_prefix="ACME"
    )
    hooks = ClientHooks(
        transport=network,
        sleep=user_approves_in_the_browser,
        config_dir=tmp_path / "config",
        browser_env={},
    )
    try:
        result = CliRunner().invoke(
            group, ["login", "--no-browser", "--json"], obj=hooks, prog_name="acme auth"
        )
    finally:
        keyring.set_keyring(previous)
    assert result.exit_code == 0, result.output
    assert len(confirm_pages) == 1
    assert f"{ACME} devicelink/" in confirm_pages[0]  # under "Device reports itself as"
    assert json.loads(result.stdout.splitlines()[-1])["user"] == "alice"
