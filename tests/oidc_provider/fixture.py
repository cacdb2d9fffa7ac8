"""Start the test OpenID Connect provider (``provider.mjs``) and sign in to it without a browser.

Plain helpers, not fixtures: wrap them in the fixtures a test module needs, e.g.::

    from tests.oidc_provider.fixture import TEST_PASSWORD, TEST_USERNAME, start_oidc_provider

    @pytest.fixture(scope="module")
    def issuer() -> Iterator[str]:
        with start_oidc_provider(0, "devicelink", "s3cret", CALLBACK) as url:
            yield url

The provider has one client (``client_id``/``client_secret``/``redirect_uri`` as given; an
empty secret registers a public client) and one user: account ``u-1001``, username
``oidc-alice`` (:data:`TEST_USERNAME`), password :data:`TEST_PASSWORD`, claims
``preferred_username`` ``oidc-alice`` and ``email`` ``alice@example.com``. Its login form has
the fields ``username`` and ``password`` (labels "Username", "Password", button "Sign in",
and a "Cancel" button that answers ``error=access_denied``); consent is automatic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from html.parser import HTMLParser
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

PROVIDER_DIR = Path(__file__).resolve().parent
TEST_ACCOUNT_ID = "u-1001"
TEST_USERNAME = "oidc-alice"
TEST_PASSWORD = "alice-password"
TEST_EMAIL = "alice@example.com"
READY_PREFIX = "listening on "


def ensure_node_modules() -> None:
    """``npm ci`` (from the committed package-lock.json) when node_modules is missing."""
    if (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install tests/oidc_provider (Node.js 20+)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci failed in {PROVIDER_DIR}:\n{result.stdout}{result.stderr}")


@contextmanager
def start_oidc_provider(
    port: int,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    *,
    id_token_claims: bool = False,
    accounts: Mapping[str, Mapping[str, object]] | None = None,
    backchannel_logout_uri: str = "",
    signing_jwk: Mapping[str, object] | None = None,
    timeout: float = 30.0,
) -> Iterator[str]:
    """Run ``node provider.mjs`` on 127.0.0.1:``port`` (0: a free port) and yield its issuer.

    ``id_token_claims`` puts ``preferred_username`` and ``email`` in the ID token too; by
    default they are only served by the userinfo endpoint. ``accounts`` adds users:
    ``{account id: {"username": ..., "password": ..., "claims": {...}}}``, with whatever
    claims a test needs (``sub`` is the account id). ``backchannel_logout_uri``: where
    the client gets its logout tokens when a session ends (:func:`sign_out_at_provider`).
    ``signing_jwk``: the private RSA JWK (with a ``kid``) that signs its tokens, for a
    test that signs tokens as the provider would. The process is stopped (and its log
    closed) when the block ends."""
    ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (Node.js 20+) is needed to run the test OpenID provider")
    env = {
        **os.environ,
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URIS": redirect_uri,
        "OIDC_TEST_PASSWORD": TEST_PASSWORD,
        "OIDC_ID_TOKEN_CLAIMS": "1" if id_token_claims else "0",
        "OIDC_EXTRA_ACCOUNTS": json.dumps(accounts or {}),
        "OIDC_BACKCHANNEL_LOGOUT_URI": backchannel_logout_uri,
        "OIDC_SIGNING_JWK": json.dumps(signing_jwk) if signing_jwk else "",
    }
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            [node, "provider.mjs", str(port)],
            cwd=PROVIDER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield _wait_until_listening(process, log, timeout)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_until_listening(process: subprocess.Popen[bytes], log: IO[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        log.seek(0)
        output = log.read()
        for line in output.splitlines():
            if line.startswith(READY_PREFIX):
                return line.removeprefix(READY_PREFIX).strip()
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {process.returncode}" if process.returncode is not None else ""
            raise RuntimeError(f"the test OpenID provider did not start {state}:\n{output}")
        time.sleep(0.05)


# --- signing in without a browser --------------------------------------------------------


class _Forms(HTMLParser):
    """Each ``<form>``'s id, action and the names and values of its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({**attributes, "fields": {}})
        elif tag == "input" and self.forms and "name" in attributes:
            fields = self.forms[-1]["fields"]
            assert isinstance(fields, dict)
            fields[attributes["name"]] = attributes.get("value", "")


def _drive(
    login_url: str,
    form_id: str,
    fill: Callable[[dict[str, str]], None],
    http: httpx.Client | None = None,
) -> str:
    redirect_uri = parse_qs(urlsplit(login_url).query)["redirect_uri"][0]
    target = urlsplit(redirect_uri)
    with httpx.Client(timeout=10.0) if http is None else nullcontext(http) as http:
        response = http.get(login_url)
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                parts = urlsplit(location)
                if (parts.scheme, parts.netloc, parts.path) == target[:3]:
                    return location
                response = http.get(location)
                continue
            if response.status_code != 200:
                raise AssertionError(f"provider answered {response.status_code}: {response.text}")
            parser = _Forms()
            parser.feed(response.text)
            form = next((f for f in parser.forms if f.get("id") == form_id), None)
            if form is None:
                raise AssertionError(f"no form {form_id!r} on the provider's page: {response.text}")
            fields = dict(form["fields"])  # type: ignore[call-overload]
            fill(fields)
            action = urljoin(str(response.url), str(form["action"]))
            response = http.post(action, data=fields)
        raise AssertionError("the provider never redirected back to the redirect_uri")


def sign_in_with_httpx(
    login_url: str, username: str, password: str, http: httpx.Client | None = None
) -> str:
    """Follow the authorization URL, fill the provider's login form and return the URL it
    redirects to at the client's redirect_uri (``?code=...&state=...&iss=...``), unrequested.
    ``http``: the browser, whose cookies keep the session at the provider (for
    :func:`sign_out_at_provider`); default: one for this sign-in alone."""

    def fill(fields: dict[str, str]) -> None:
        fields.update(username=username, password=password)

    return _drive(login_url, "login-form", fill, http)


def sign_out_at_provider(issuer: str, http: httpx.Client) -> None:
    """End the session ``http`` holds at the provider (RP-initiated logout: its page,
    then "Sign out"). Before this returns, the provider has posted a logout token to
    the ``backchannel_logout_uri`` of every client of the session."""
    page = http.get(f"{issuer}/session/end")
    if page.status_code != 200:
        raise AssertionError(f"provider answered {page.status_code}: {page.text}")
    parser = _Forms()
    parser.feed(page.text)
    form = next((f for f in parser.forms if f.get("id") == "logout-form"), None)
    if form is None:
        raise AssertionError(f"no sign-out form on the provider's page: {page.text}")
    fields = dict(form["fields"])  # type: ignore[call-overload]
    fields["logout"] = "yes"
    done = http.post(urljoin(str(page.url), str(form["action"])), data=fields)
    if done.status_code != 303:
        raise AssertionError(f"sign-out answered {done.status_code}: {done.text}")


def cancel_sign_in_with_httpx(login_url: str) -> str:
    """Like :func:`sign_in_with_httpx`, but press "Cancel": the redirect carries
    ``error=access_denied``."""
    return _drive(login_url, "cancel-form", lambda fields: None)
