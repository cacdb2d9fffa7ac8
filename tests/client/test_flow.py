"""The sans-IO flows, stepped through scripted server answers: what ends the polling
(RFC 8628 section 3.5), the requests and the answers read (sections 3.1-3.4, RFC 6749
section 5.1), revocation (RFC 7009) and the key check (RFC 6750)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devicelink.client import errors
from devicelink.client.discovery import DEVICE_CODE_GRANT
from devicelink.client.flow import device_flow, revoke_flow, whoami_flow
from devicelink.client.messages import Endpoints, Send

from .scripted import (
    AUTHORIZE_PATH,
    DEVICE_CODE,
    KEY,
    LOST,
    PENDING,
    REVOKE_PATH,
    SERVER,
    TOKEN_PATH,
    Answer,
    Clock,
    M,
    ScriptedServer,
    Transcript,
    authorization,
    busy,
    drive,
    form,
    granted,
    html,
    login,
    metadata,
    oauth,
    ok,
)

# --- what ends the polling: RFC 8628 section 3.5 ------------------------------------------


REFUSALS = [
    pytest.param(oauth("access_denied"), errors.LoginDenied, id="denied"),
    pytest.param(oauth("expired_token"), errors.LoginExpired, id="server-expired_token"),
    pytest.param(oauth("invalid_grant"), errors.DeviceCodeRefused, id="invalid_grant"),
    pytest.param(
        oauth("invalid_client", 401, error_description="unknown client"),
        errors.ClientIdRefused,
        id="invalid_client",
    ),
    pytest.param(oauth("unsupported_grant_type"), errors.ServerRejected, id="other-oauth-error"),
    pytest.param(oauth("invalid_request", 400), errors.ServerRejected, id="invalid_request"),
    pytest.param(httpx.Response(404, text="nope"), errors.ServerRejected, id="404-not-json"),
    pytest.param(httpx.Response(400, json=["x"]), errors.ServerRejected, id="400-json-not-oauth"),
    pytest.param(granted(token_type="mac"), errors.ServerRejected, id="200-not-bearer"),
    pytest.param(granted(access_token=None), errors.ServerRejected, id="200-without-token"),
    pytest.param(granted(access_token=""), errors.ServerRejected, id="200-empty-token"),
    pytest.param(granted(expires_in="never"), errors.ServerRejected, id="200-bad-expires_in"),
    pytest.param(httpx.Response(200, text="ok"), errors.ServerRejected, id="200-not-json"),
]


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(("answer", "kind"), REFUSALS)
def test_any_other_answer_stops_the_polling(
    answer: httpx.Response, kind: type[errors.DeviceFlowError]
) -> None:
    seen = Transcript()
    with pytest.raises(kind) as raised:
        login(ScriptedServer(token=[PENDING, answer]), transcript=seen)

    assert len(seen.polls) == 2  # no further poll after the refusal
    assert isinstance(raised.value, errors.DeviceFlowError)
    assert str(raised.value)  # a message for the user


def test_errors_carry_the_oauth_code_and_a_cleaned_description() -> None:
    answer = oauth("invalid_scope", error_description="no \x1b[31mway\x1b[0m")
    with pytest.raises(errors.ServerRejected) as raised:
        login(ScriptedServer(token=[answer]))
    assert raised.value.error == "invalid_scope"
    assert raised.value.status_code == 400
    assert "\x1b" not in str(raised.value)
    assert "invalid_scope" in str(raised.value)


@pytest.mark.rfc("6749", "5.1")
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            granted(token_type="bearer"), ("Bearer", 2_592_000, "api"), id="bearer-any-case"
        ),
        pytest.param(
            granted(expires_in=None, scope=None), ("Bearer", None, None), id="key-never-expires"
        ),
    ],
)
def test_the_token_response_is_read(
    answer: httpx.Response, expected: tuple[str, int | None, str | None]
) -> None:
    seen = login(ScriptedServer(token=[answer]))
    token = seen.result
    assert (token.token_type, token.expires_in, token.scope) == expected
    assert token.server == SERVER
    assert token.endpoints.token_endpoint == f"{SERVER}{TOKEN_PATH}"
    assert KEY not in repr(token)  # a token in a log line or traceback stays secret


@pytest.mark.rfc("8628", "3.4")
def test_the_token_request_is_the_device_grant() -> None:
    seen = login(ScriptedServer(token=[granted()]))
    (poll,) = [r for r in seen.requests if r.url.path == TOKEN_PATH]
    assert poll.method == "POST"
    assert poll.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(poll) == {
        "grant_type": [DEVICE_CODE_GRANT],
        "device_code": [DEVICE_CODE],
        "client_id": ["devicelink-cli"],
    }


# --- the device authorization request: RFC 8628 sections 3.1 and 3.2 ------------------------


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, {"client_id": ["devicelink-cli"]}, id="no-scope"),
        pytest.param({"scope": ""}, {"client_id": ["devicelink-cli"]}, id="empty-scope-absent"),
        pytest.param(
            {"scope": ["api", "read"]},
            {"client_id": ["devicelink-cli"], "scope": ["api read"]},
            id="scope-list",
        ),
        pytest.param({"client_id": None, "scope": "api"}, {"scope": ["api"]}, id="default-client"),
    ],
)
def test_the_device_authorization_request(
    options: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    seen = login(ScriptedServer(token=[granted()]), **options)
    (request,) = [r for r in seen.requests if r.url.path == AUTHORIZE_PATH]
    assert request.method == "POST"
    assert request.url == SERVER + AUTHORIZE_PATH
    assert form(request) == expected


@pytest.mark.rfc("8628", "3.2")
def test_the_code_is_handed_to_the_ui_before_the_first_poll() -> None:
    seen = login(ScriptedServer(authorize=[ok(authorization(interval=None))], token=[granted()]))
    (code,) = seen.codes
    assert code.user_code == "WDJB-MJHT"
    assert code.verification_uri == f"{SERVER}/oauth/device/verify"
    assert (code.verification_uri_complete or "").endswith("?user_code=WDJB-MJHT")
    assert code.interval == 5  # the default when the server names none
    assert DEVICE_CODE not in repr(code)
    assert seen.sleeps[0].seconds == 5 + M


@pytest.mark.rfc("8628", "3.2")
@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        pytest.param(oauth("invalid_client", 401), errors.ClientIdRefused, id="invalid_client"),
        pytest.param(oauth("invalid_scope"), errors.ServerRejected, id="invalid_scope"),
        pytest.param(ok(authorization(device_code=None)), errors.ServerRejected, id="no-device"),
        pytest.param(ok(authorization(expires_in=None)), errors.ServerRejected, id="no-expiry"),
        pytest.param(ok(authorization(expires_in=0)), errors.ServerRejected, id="zero-expiry"),
        pytest.param(
            ok(authorization(user_code="AB\x1b[2JCD")),
            errors.ServerRejected,
            id="user-code-with-terminal-escape",
        ),
        pytest.param(
            ok(authorization(verification_uri="javascript:alert(1)")),
            errors.ServerRejected,
            id="verification-uri-not-http",
        ),
        pytest.param(html(200), errors.ServerRejected, id="not-json"),
    ],
)
def test_a_refused_or_malformed_authorization_shows_no_code(
    answer: httpx.Response, kind: type[errors.DeviceFlowError]
) -> None:
    seen = Transcript()
    with pytest.raises(kind):
        login(ScriptedServer(authorize=[answer]), transcript=seen)
    assert not seen.codes
    assert not seen.polls


# --- revocation (RFC 7009) and the key check ----------------------------------------------


ENDPOINTS = Endpoints(
    issuer=SERVER,
    device_authorization_endpoint=SERVER + AUTHORIZE_PATH,
    token_endpoint=SERVER + TOKEN_PATH,
    revocation_endpoint=SERVER + REVOKE_PATH,
)


@pytest.mark.rfc("7009", "2.1")
@pytest.mark.parametrize(
    ("target", "answers", "requests"),
    [
        pytest.param(ENDPOINTS, [ok({})], 1, id="known-endpoints"),
        pytest.param(SERVER, [ok({})], 2, id="discovers-first"),
        pytest.param(ENDPOINTS, [busy(503, "2"), httpx.Response(200)], 2, id="retries-503"),
        # A server that refuses instead of answering 200 for an invalid key: gone as well.
        pytest.param(ENDPOINTS, [oauth("invalid_token", 401)], 1, id="already-invalid-401"),
        pytest.param(ENDPOINTS, [oauth("invalid_token")], 1, id="already-invalid-400"),
    ],
)
def test_revocation_posts_the_token(
    target: Endpoints | str, answers: list[Answer], requests: int
) -> None:
    seen = drive(
        revoke_flow(target, KEY, "devicelink-cli", clock=Clock()),
        ScriptedServer(revoke=answers),
        Clock(),
    )
    assert seen.result is True
    assert len(seen.requests) == requests
    revoke = seen.requests[-1]
    assert revoke.url == SERVER + REVOKE_PATH
    assert form(revoke) == {
        "token": [KEY],
        "token_type_hint": ["access_token"],
        "client_id": ["devicelink-cli"],
    }


@pytest.mark.rfc("7009", "2.2")
@pytest.mark.parametrize(
    ("script", "kind"),
    [
        pytest.param(
            {"metadata": [ok(metadata(revocation_endpoint=None))]},
            errors.DiscoveryFailed,
            id="no-revocation-endpoint",
        ),
        pytest.param(
            {"revoke": [oauth("unsupported_token_type")]},
            errors.ServerRejected,
            id="unsupported_token_type",
        ),
        pytest.param(
            {"revoke": [oauth("invalid_client", 401)]}, errors.ClientIdRefused, id="invalid_client"
        ),
        pytest.param({"revoke": [LOST]}, errors.ServerUnreachable, id="unreachable"),
        pytest.param(
            {"revoke": [oauth("unauthorized_client")]},
            errors.ServerRejected,
            id="unauthorized_client",
        ),
        pytest.param({"revoke": [html(502)] * 4}, errors.ServerUnreachable, id="502"),
    ],
)
def test_revocation_failures_are_typed(
    script: dict[str, list[Answer]], kind: type[errors.DeviceFlowError]
) -> None:
    with pytest.raises(kind):
        drive(revoke_flow(SERVER, KEY, "devicelink-cli"), ScriptedServer(**script), Clock())


@pytest.mark.rfc("6750", "3.1")
@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(ok({"username": "alice"}), {"username": "alice"}, id="owner"),
        pytest.param(oauth("invalid_token", 401), errors.KeyRefused, id="401"),
        pytest.param(html(200), errors.ServerRejected, id="not-json"),
        pytest.param(httpx.Response(403), errors.ServerRejected, id="403"),
    ],
)
def test_whoami_sends_the_key_as_a_bearer_token(
    answer: httpx.Response, outcome: dict[str, str] | type[errors.DeviceFlowError]
) -> None:
    flow = whoami_flow(SERVER + "/", KEY)
    seen = Transcript()
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            drive(flow, ScriptedServer(me=[answer]), Clock(), seen)
    else:
        assert drive(flow, ScriptedServer(me=[answer]), Clock(), seen).result == outcome
    (request,) = seen.requests
    assert request.url == SERVER + "/api/me"
    assert request.headers["authorization"] == f"Bearer {KEY}"


# --- the generator protocol itself ------------------------------------------------------------


def test_answering_send_with_nothing_is_a_driver_bug() -> None:
    flow = device_flow(SERVER, "devicelink-cli")
    assert isinstance(next(flow), Send)
    with pytest.raises(TypeError, match="ConnectionLost"):
        flow.send(None)
