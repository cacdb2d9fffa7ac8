"""``login`` on the same machine: the loopback flow where a browser can open here and the
server offers it, the device flow with ``--device-code``, ``--no-browser``, over SSH, or
when the host CLI asks for it; what each prints, ``--json``'s ``method``, Deny, Ctrl-C.

The server is scripted (``httpx.MockTransport``); the listener is real (127.0.0.1), and
the "browser" sends it the redirect a server would after the user's decision.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import click
import httpx
import pytest

from devicelink.cli import main
from devicelink.client import CredentialStore, ExitCode, make_auth_group
from devicelink.client import login as library_login
from devicelink.client.api import open_in_browser

from .conftest import EXPIRES_AT, SERVER, USER_CODE, Browser, Cli, FakeServer, Sleeps, json_lines

AUTHORIZE = f"{SERVER}/oauth/authorize"


@dataclass
class LoopbackServer(FakeServer):
    """The scripted server, offering the authorization code grant with PKCE too; with
    ``unregistered``, the client has no loopback redirect URI there."""

    redemptions: list[dict[str, str]] = field(default_factory=list)
    unregistered: bool = False

    def metadata(self) -> dict[str, Any]:
        return super().metadata() | {
            "authorization_endpoint": AUTHORIZE,
            "token_endpoint": f"{self.issuer}/oauth/token",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": [
                "authorization_code",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "authorization_response_iss_parameter_supported": True,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/device/token":
            return httpx.Response(404)  # the metadata names /oauth/token for both grants
        if request.url.path == "/oauth/authorize":  # no session: to the sign-in page
            self.requests.append(request)
            if self.unregistered:
                return httpx.Response(400, text="<h1>Not registered</h1>")
            return httpx.Response(303, headers={"Location": "/login"})
        if request.url.path != "/oauth/token":
            return super().handle(request)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("grant_type") != "authorization_code":
            request.url = request.url.copy_with(path="/oauth/device/token")
            return super().handle(request)
        self.requests.append(request)
        self.redemptions.append(form)
        self.issued += 1
        key = f"dlk_issued{self.issued}_check"
        self.keys.add(key)
        return httpx.Response(
            200,
            json={"access_token": key, "token_type": "Bearer", "expires_in": 2_592_000},
        )


@dataclass
class RedirectingBrowser(Browser):
    """Records the URL, and for an authorization URL sends the listener the redirect of
    the user's ``decision`` (``"approve"``, ``"deny"``), or raises ``interrupt`` as a
    Ctrl-C while the browser is open."""

    decision: str = "approve"
    interrupt: bool = False
    answers: list[httpx.Response] = field(default_factory=list)

    def __call__(self, url: str) -> bool:
        opened = super().__call__(url)
        if not url.startswith(AUTHORIZE):
            return opened
        if self.interrupt:
            raise KeyboardInterrupt
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        answer = {"code": "the-code"} if self.decision == "approve" else {"error": "access_denied"}
        target = (
            params["redirect_uri"]
            + "?"
            + urlencode(answer | {"state": params["state"], "iss": SERVER})
        )
        self.answers.append(httpx.get(target, trust_env=False))
        return opened

    def redirect_port(self) -> int:
        (url,) = [u for u in self.opened if u.startswith(AUTHORIZE)]
        port = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port
        assert port is not None
        return port


@pytest.fixture
def browser() -> RedirectingBrowser:
    return RedirectingBrowser()


@pytest.fixture
def here(browser: RedirectingBrowser, tmp_path: Path) -> Cli:
    """A machine where a browser opens ($BROWSER set), talking to a server that offers
    the loopback flow."""
    return Cli(LoopbackServer(), Sleeps(), browser, tmp_path / "config", {"BROWSER": "firefox"})


def login(cli: Cli, *args: str) -> Any:
    return cli(main, "login", "--server", SERVER, *args)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- the loopback flow ----------------------------------------------------------------------


@pytest.mark.rfc("8252", "7.3")
def test_login_with_a_browser_here_uses_the_loopback_flow(
    here: Cli, browser: RedirectingBrowser
) -> None:
    result = login(here)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"To log in to {SERVER}, sign in with the browser on this computer."
    assert lines[1] == "If no browser opens, open this link in a browser on this computer:"
    assert lines[3].strip().startswith(AUTHORIZE + "?")
    assert "Opened the link in your browser." in lines
    assert USER_CODE not in result.stderr  # no device code at all
    assert result.stdout.splitlines()[0] == f"Logged in to {SERVER} as alice."

    (opened,) = browser.opened
    assert opened == lines[3].strip()  # the link shown is the one opened
    assert [answer.status_code for answer in browser.answers] == [200]
    assert not listening(browser.redirect_port())
    server = here.server
    assert isinstance(server, LoopbackServer)
    assert [form["code"] for form in server.redemptions] == ["the-code"]
    assert "/oauth/device/authorize" not in server.paths()

    # Stored exactly as the device flow stores a key.
    stored = here.store().get(SERVER)
    assert stored is not None
    assert stored.access_token == "dlk_issued1_check"
    assert stored.client_id == "devicelink-cli"
    assert stored.username == "alice"
    assert stored.expires_at == EXPIRES_AT


def test_login_json_says_which_method_ran(here: Cli, browser: RedirectingBrowser) -> None:
    result = login(here, "--json")
    assert result.exit_code == 0, result.output
    (document,) = json_lines(result.stdout)
    assert document["method"] == "loopback"
    assert document["user"] == "alice"
    events = json_lines(result.stderr)
    # The link first; then the notices held back until now (no keyring here); the browser.
    assert [event["event"] for event in events] == ["authorize", "warning", "browser"]
    authorize = events[0]
    assert authorize["server"] == SERVER
    assert authorize["url"] == browser.opened[0]
    assert authorize["redirect_uri"] == f"http://127.0.0.1:{browser.redirect_port()}/callback"
    assert authorize["expires_in"] == 600
    assert events[2] == {"event": "browser", "opened": True}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--device-code"], {"BROWSER": "firefox"}, id="--device-code"),
        pytest.param(["--no-browser"], {"BROWSER": "firefox"}, id="--no-browser"),
        pytest.param(
            [], {"BROWSER": "firefox", "SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}, id="over-ssh"
        ),
        pytest.param([], {}, id="no-browser-here"),
    ],
)
def test_the_device_flow_runs_otherwise(
    here: Cli, browser: RedirectingBrowser, args: list[str], env: dict[str, str]
) -> None:
    here.browser_env = env
    result = login(here, "--json", *args)
    assert result.exit_code == 0, result.output
    (document,) = json_lines(result.stdout)
    assert document["method"] == "device"
    events = json_lines(result.stderr)
    assert events[0]["event"] == "code"
    assert events[0]["user_code"] == USER_CODE
    assert not any(url.startswith(AUTHORIZE) for url in browser.opened)
    # --device-code on a desktop still opens the device flow's link; --no-browser never.
    opens_link = args == ["--device-code"]
    assert bool(browser.opened) is opens_link


def test_a_host_cli_can_ask_for_the_device_flow(here: Cli) -> None:
    @click.group()
    def mycli() -> None:
        pass

    mycli.add_command(make_auth_group(server=SERVER, method="device"))
    result = here(mycli, "auth", "login", "--json", prog_name="mycli")
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["method"] == "device"


def test_a_client_without_a_loopback_redirect_uri_signs_in_with_a_code(here: Cli) -> None:
    server = here.server
    assert isinstance(server, LoopbackServer)
    server.unregistered = True
    result = login(here, "--json")
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["method"] == "device"
    events = json_lines(result.stderr)
    assert events[0]["event"] == "code"  # the code and the link first, then why
    (note,) = [event for event in events if event["event"] == "note"]
    assert note["message"].startswith("The server does not accept a sign-in in the browser")
    assert note["message"].endswith(": signing in with a code instead.")


def test_a_host_cli_that_asks_for_loopback_gets_the_refusal(here: Cli) -> None:
    server = here.server
    assert isinstance(server, LoopbackServer)
    server.unregistered = True

    @click.group()
    def mycli() -> None:
        pass

    mycli.add_command(make_auth_group(server=SERVER, method="loopback"))
    result = here(mycli, "auth", "login", "--json", prog_name="mycli")
    assert result.exit_code == ExitCode.ERROR
    assert json_lines(result.stdout)[0]["error"] == "unauthorized_client"
    assert "/oauth/device/authorize" not in server.paths()


def test_already_logged_in_names_no_method(here: Cli) -> None:
    here.save()
    result = login(here, "--json")
    assert result.exit_code == 0, result.output
    (document,) = json_lines(result.stdout)
    assert document["already_logged_in"] is True
    assert document["method"] is None


# --- how it ends otherwise ------------------------------------------------------------------


@pytest.mark.rfc("6749", "4.1.2.1")
def test_deny_in_the_browser_exits_3(here: Cli, browser: RedirectingBrowser) -> None:
    browser.decision = "deny"
    result = login(here, "--json")
    assert result.exit_code == ExitCode.DENIED
    assert json_lines(result.stdout) == [
        {"error": "access_denied", "message": "the sign-in was denied in the browser"}
    ]
    assert "Sign-in denied" in browser.answers[0].text
    assert here.store().get(SERVER) is None


def test_ctrl_c_while_the_browser_is_open_exits_130_and_closes_the_port(
    here: Cli, browser: RedirectingBrowser
) -> None:
    browser.interrupt = True
    result = login(here)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert "Error: Interrupted (Ctrl-C)." in result.stderr
    assert "Traceback" not in result.output
    assert not listening(browser.redirect_port())
    assert here.store().get(SERVER) is None


# --- the library ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "expected"), [("loopback", "loopback"), ("device", "device")])
def test_the_library_login_takes_the_method(
    browser: RedirectingBrowser, tmp_path: Path, method: Any, expected: str
) -> None:
    server = LoopbackServer()
    store = CredentialStore(config_dir=tmp_path / "config", warn=lambda message: None)
    credential = library_login(
        SERVER,
        store=store,
        method=method,
        open_browser=True,
        browser=browser,
        on_code=lambda authorization: None,
        on_link=lambda request, lifetime: None,
        transport=server.transport(),
        sleep=lambda seconds: None,
    )
    assert credential.username == "alice"
    assert store.get(SERVER) == credential
    assert bool(server.redemptions) is (expected == "loopback")
    assert ("/oauth/device/authorize" in server.paths()) is (expected == "device")


# --- the browser ----------------------------------------------------------------------------


def test_browser_set_opens_the_link_with_webbrowser_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    seen = tmp_path / "seen"
    script = tmp_path / "my-browser"
    script.write_text(f'#!/bin/sh\necho "$1" > {seen}\necho noise; echo noise >&2\nsleep 5\n')
    script.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(script))
    url = f"{AUTHORIZE}?response_type=code&state=abc"
    started = time.monotonic()
    assert open_in_browser(url)
    assert time.monotonic() - started < 2  # a $BROWSER that runs on never holds up login
    deadline = time.monotonic() + 20
    while not (seen.exists() and seen.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.read_text() == url + "\n"
    assert capfd.readouterr() == ("", "")  # what the browser prints stays out of --json
