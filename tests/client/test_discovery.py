"""Discovery (RFC 8414): the metadata is read and checked before any code is asked for."""

from __future__ import annotations

import httpx
import pytest

from devicelink.client import errors
from devicelink.client.discovery import discover, metadata_urls
from devicelink.client.messages import Token

from .scripted import (
    METADATA_PATH,
    SERVER,
    TOKEN_PATH,
    Answer,
    Clock,
    ScriptedServer,
    Transcript,
    drive,
    granted,
    html,
    login,
    metadata,
    ok,
)

# --- discovery: RFC 8414 -----------------------------------------------------------------


DISCOVERY_FAILURES = [
    pytest.param([httpx.Response(404, json={"error": "not_found"})], "HTTP 404", id="404"),
    pytest.param([ok(metadata(issuer="https://evil.example.com"))], "issuer", id="issuer-mismatch"),
    pytest.param(
        [ok(metadata(issuer="https://login.example.com/tenant"))], "issuer", id="issuer-other-path"
    ),
    pytest.param([ok(metadata() | {"issuer": None})], "issuer", id="issuer-missing"),
    pytest.param([html(200)], "JSON", id="not-json"),
    pytest.param([ok([metadata()])], "JSON object", id="json-not-an-object"),
    pytest.param(
        [ok(metadata(device_authorization_endpoint=None))],
        "device_authorization_endpoint",
        id="no-device-endpoint",
    ),
    pytest.param(
        [ok(metadata(token_endpoint=f"http://login.example.com{TOKEN_PATH}"))],
        "token_endpoint",
        id="https-issuer-http-endpoint",
    ),
    pytest.param(
        [ok(metadata(token_endpoint="javascript:alert(1)"))], "token_endpoint", id="not-a-url"
    ),
    pytest.param(
        [ok(metadata(grant_types_supported=["authorization_code"]))],
        "does not offer the device",
        id="device-grant-not-supported",
    ),
    pytest.param(
        [httpx.Response(301, headers={"Location": "https://elsewhere.example.com/"})],
        "HTTP 301",
        id="redirect-not-followed",
    ),
]


@pytest.mark.rfc("8414", "3")
@pytest.mark.parametrize(("answers", "message"), DISCOVERY_FAILURES)
def test_discovery_failures_are_discovery_failed(answers: list[Answer], message: str) -> None:
    seen = Transcript()
    with pytest.raises(errors.DiscoveryFailed, match=message):
        login(ScriptedServer(metadata=answers), transcript=seen)
    assert not seen.codes
    assert all(r.url.path == METADATA_PATH for r in seen.requests)


@pytest.mark.rfc("8414", "3.3")
@pytest.mark.parametrize(
    ("server_url", "issuer"),
    [
        pytest.param(SERVER + "/", SERVER, id="trailing-slash-typed"),
        pytest.param(SERVER, SERVER + "/", id="trailing-slash-in-metadata"),
        pytest.param("HTTPS://Login.Example.com:443", SERVER, id="case-and-default-port"),
        pytest.param(SERVER, SERVER + ":443", id="default-port-in-metadata"),
    ],
)
def test_the_issuer_check_normalises_the_url(server_url: str, issuer: str) -> None:
    server = ScriptedServer(metadata=[ok(metadata() | {"issuer": issuer})], token=[granted()])
    seen = login(server, server_url=server_url)
    assert seen.requests[0].url == SERVER + METADATA_PATH
    assert seen.result.server == SERVER


@pytest.mark.rfc("8414", "3.1")
def test_an_issuer_with_a_path_tries_the_rfc_location_then_the_prefix() -> None:
    issuer = "https://example.com/auth"
    assert metadata_urls(issuer) == [
        "https://example.com/.well-known/oauth-authorization-server/auth",
        "https://example.com/auth/.well-known/oauth-authorization-server",
    ]
    answers: dict[str, list[Answer]] = {
        "/.well-known/oauth-authorization-server/auth": [httpx.Response(404)],
        "/auth/.well-known/oauth-authorization-server": [ok(metadata(issuer=issuer))],
    }
    endpoints = drive(discover(issuer), ScriptedServer(**answers), Clock()).result
    assert endpoints.token_endpoint == f"{issuer}{TOKEN_PATH}"


@pytest.mark.parametrize(
    "server_url",
    [
        "ftp://login.example.com",
        "https://",
        "https://x.com/?a=1",
        "",
        "https://alice:pw@login.example.com",
        "https://login example.com",
    ],
)
def test_a_server_address_that_is_not_an_http_url_is_refused_before_any_request(
    server_url: str,
) -> None:
    with pytest.raises(errors.DiscoveryFailed, match="not a server URL"):
        login(ScriptedServer(), server_url=server_url)


def test_a_bare_host_means_https_as_it_does_for_server() -> None:
    """The flow reads a server address as ``--server`` and the credential store do."""
    seen = login(ScriptedServer(token=[granted()]), server_url="login.example.com")
    assert seen.requests[0].url == SERVER + METADATA_PATH
    assert isinstance(seen.result, Token)
    assert seen.result.server == SERVER
