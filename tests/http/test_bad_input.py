"""Bad input never yields 500 or 422, nor a ``{"detail": ...}`` body, nor a stack trace:
every refusal is RFC 6749 section 5.2 JSON (DESIGN.md, "Protocol contract")."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Scope

from tests.http.contract import AUTHORIZE, FORM, TOKEN, RegisterClient, assert_oauth_error
from tests.support.app import Server
from tests.support.http import DEVICE_CODE_GRANT

pytestmark = pytest.mark.anyio

ENDPOINTS = [AUTHORIZE, TOKEN]
LIMIT = 64 * 1024


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


async def raw_request(
    app: ASGIApp, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call the ASGI app directly, with headers exactly as given (no client fixes them)."""
    sent: list[Message] = []
    chunks: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.7", 51000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), payload


# --- media type ------------------------------------------------------------------------------


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.rfc("8628", "3.4")
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_json_body_is_invalid_request(server: Server, path: str) -> None:
    flow = await server.start_flow()
    response = await server.http.post(
        path,
        json={
            "client_id": "devicelink-cli",
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": flow["device_code"],
        },
    )
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml", "*/*"]
)
async def test_other_media_types_are_invalid_request(
    web: Server, path: str, content_type: str
) -> None:
    response = await web.http.post(
        path, content=b"client_id=devicelink-cli", headers={"Content-Type": content_type}
    )
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.rfc("8628", "3.1")
async def test_form_media_type_with_a_charset_parameter_is_accepted(server: Server) -> None:
    response = await server.http.post(
        AUTHORIZE,
        content=b"client_id=devicelink-cli",
        headers={"Content-Type": "Application/X-WWW-Form-URLEncoded; charset=UTF-8"},
    )
    assert response.status_code == 200, response.text


# --- size --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_body_over_64_kib_is_413_with_error_json(web: Server, path: str) -> None:
    body = b"client_id=devicelink-cli&pad=" + b"a" * LIMIT
    response = await web.http.post(path, content=body, headers=FORM)
    assert_oauth_error(response, 413)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_streamed_body_over_64_kib_without_length_is_413(web: Server, path: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"client_id=devicelink-cli&pad="
        for _ in range(20):
            yield b"b" * 8192

    response = await web.http.post(path, content=chunks(), headers=FORM)
    assert "content-length" not in response.request.headers
    assert_oauth_error(response, 413)


async def test_a_body_of_exactly_64_kib_is_read(server: Server) -> None:
    head = b"client_id=devicelink-cli&pad="
    body = head + b"c" * (LIMIT - len(head))
    assert len(body) == LIMIT
    response = await server.http.post(AUTHORIZE, content=body, headers=FORM)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("length", [b"abc", b"-1x", b"1e3"])
async def test_a_malformed_content_length_is_invalid_request(web: Server, length: bytes) -> None:
    status, headers, payload = await raw_request(
        web.app,
        "POST",
        TOKEN,
        [(b"content-type", FORM["Content-Type"].encode()), (b"content-length", length)],
        b"device_code=x",
    )
    assert status == 400
    assert json.loads(payload)["error"] == "invalid_request"
    assert headers[b"cache-control"] == b"no-store"


async def test_a_lying_content_length_over_the_limit_is_413_before_reading(web: Server) -> None:
    status, _headers, payload = await raw_request(
        web.app,
        "POST",
        AUTHORIZE,
        [(b"content-type", FORM["Content-Type"].encode()), (b"content-length", b"999999999")],
        b"client_id=devicelink-cli",
    )
    assert status == 413
    assert isinstance(json.loads(payload)["error"], str)


# --- encoding ----------------------------------------------------------------------------


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b"client_id=\xff\xfe",
        b"device_code=\xc3\x28&client_id=devicelink-cli",
        b"\x80=1",
        b"client_id=devicelink-cli&scope=%ff",
        b"device_code=%c3%28&client_id=devicelink-cli",
        b"%ff=1&client_id=devicelink-cli",
        b"device_code=%ed%a0%80",  # an encoded UTF-16 surrogate
    ],
)
async def test_invalid_utf8_raw_or_percent_encoded_is_invalid_request(
    web: Server, path: str, body: bytes
) -> None:
    response = await web.http.post(path, content=body, headers=FORM)
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.rfc("8628", "3.4")
async def test_valid_non_ascii_text_is_read_not_refused(server: Server) -> None:
    response = await server.http.post(
        TOKEN,
        content="grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
        "&client_id=devicelink-cli&device_code=%C3%A9t%C3%A9",
        headers=FORM,
    )
    assert_oauth_error(response, 400, "invalid_grant")


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("body", [b"&&&", b"=", b"==&=x", b"a=b=c", b"%", b"%zz=%", b";;"])
async def test_odd_but_decodable_forms_never_fail_the_server(
    web: Server, path: str, body: bytes
) -> None:
    response = await web.http.post(path, content=body, headers=FORM)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert_oauth_error(response, 400)


@pytest.mark.rfc("6749", "3.2")
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_too_many_fields_is_invalid_request(web: Server, path: str) -> None:
    body = "&".join(f"f{i}=v" for i in range(200)) + "&client_id=devicelink-cli"
    response = await web.http.post(path, content=body, headers=FORM)
    assert_oauth_error(response, 400, "invalid_request")


# --- absurd values -----------------------------------------------------------------------


@pytest.mark.rfc("8628", "3.4")
async def test_a_60_kb_device_code_is_invalid_grant(server: Server) -> None:
    response = await server.poll("d" * 60_000)
    assert_oauth_error(response, 400, "invalid_grant")


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_a_60_kb_client_id_is_invalid_client(server: Server, path: str) -> None:
    response = await server.http.post(
        path, data={"client_id": "c" * 60_000, "grant_type": DEVICE_CODE_GRANT, "device_code": "x"}
    )
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("scope", ["s" * 60_000, " ".join(["api"] * 15_000), "api " * 15_000])
async def test_a_60_kb_scope_is_answered_without_failing(server: Server, scope: str) -> None:
    response = await server.http.post(
        AUTHORIZE, data={"client_id": "devicelink-cli", "scope": scope}
    )
    if response.status_code == 200:
        # Only the one allowed scope, repeated: it is what is granted.
        assert set(scope.split()) == {"api"}
    else:
        assert_oauth_error(response, 400, "invalid_scope")


@pytest.mark.rfc("6749", "2.3.1")
@pytest.mark.parametrize("client_id", ["\x00", "devicelink-cli\x00", "a\x00b", "\x01\x1f"])
async def test_control_characters_in_client_id_are_a_client_error(
    server: Server, client_id: str
) -> None:
    """RFC 6749 appendix A.1: client_id is *VSCHAR (%x20-7E). PostgreSQL text cannot
    hold NUL at all, so a NUL that reaches a query fails there: it must be refused first."""
    answers = [
        await server.http.post(AUTHORIZE, data={"client_id": client_id}),
        await server.http.post(
            TOKEN,
            data={"client_id": client_id, "grant_type": DEVICE_CODE_GRANT, "device_code": "d" * 43},
        ),
        await server.http.post(
            AUTHORIZE,
            content=b"",
            headers={**FORM, "Authorization": "Basic " + _b64(f"{quote(client_id)}:s3cret")},
        ),
    ]
    for response in answers:
        assert response.status_code in (400, 401), response.text
        assert_oauth_error(response, response.status_code)
        assert response.json()["error"] in ("invalid_request", "invalid_client")


async def test_a_60_kb_secret_and_user_agent_are_harmless(
    server: Server, register_client: RegisterClient
) -> None:
    await register_client(server, "build-bot", secret="s3cret")
    response = await server.http.post(
        AUTHORIZE,
        data={"client_id": "build-bot", "client_secret": "s" * 60_000},
        headers={"User-Agent": "u" * 8000},
    )
    assert_oauth_error(response, 401, "invalid_client")
    ok = await server.http.post(AUTHORIZE, data={}, headers={"User-Agent": "u" * 8000, **FORM})
    assert ok.status_code == 200, ok.text


# --- paths and methods -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/oauth/device", "/oauth", "/api/me/x", "/%ff", "/.env", "/api"]
)
async def test_unknown_paths_are_404_json(web: Server, path: str) -> None:
    for method in ("GET", "POST"):
        response = await web.http.request(method, path)
        assert_oauth_error(response, 404)


@pytest.mark.rfc("8628", "3.4")
@pytest.mark.parametrize("path", [TOKEN + "/", AUTHORIZE + "/", "/api/me/"])
async def test_a_trailing_slash_is_answered_not_redirected_to_the_host_header(
    web: Server, path: str
) -> None:
    """A 307 keeps the method and the body: a client that follows it re-sends its
    device_code (or client_secret) to wherever Location points. Location must never be
    built from the request's Host header or scheme (behind a TLS proxy: plain http)."""
    response = await web.http.post(
        path,
        data={"client_id": "devicelink-cli", "grant_type": DEVICE_CODE_GRANT, "device_code": "x"},
        headers={"Host": "evil.example"},
    )
    assert "evil.example" not in response.headers.get("location", "")
    assert not response.is_redirect, response.headers.get("location")
    assert_oauth_error(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", TOKEN),
        ("GET", AUTHORIZE),
        ("PUT", TOKEN),
        ("DELETE", AUTHORIZE),
        ("PATCH", TOKEN),
        ("POST", "/api/me"),
        ("POST", "/healthz"),
        ("POST", "/.well-known/oauth-authorization-server"),
    ],
)
async def test_wrong_methods_are_405_json_with_allow(web: Server, method: str, path: str) -> None:
    response = await web.http.request(method, path)
    assert_oauth_error(response, 405)
    assert response.headers.get("allow")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", TOKEN, 401),
        ("POST", AUTHORIZE, 401),
        ("GET", TOKEN, 405),
        ("GET", "/api/me", 401),
    ],
)
async def test_machine_endpoints_answer_json_even_to_a_browser_accept(
    server: Server, method: str, path: str, status: int
) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    response = await server.http.request(
        method, path, data={"client_id": "nobody", "device_code": "x"}, headers=browser
    )
    assert_oauth_error(response, status)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_missing_fields_never_give_422(server: Server, path: str) -> None:
    for data in ({}, {"x": "y"}, {"client_id": "devicelink-cli"}):
        response = await server.http.post(path, content=str(httpx.QueryParams(data)), headers=FORM)
        assert response.status_code not in (422, 500), response.text
        if response.status_code != 200:
            assert_oauth_error(response, response.status_code)


# --- property: any bytes at all ------------------------------------------------------------


CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/json",
        "text/plain",
        None,
    ]
)
FORMISH = st.lists(
    st.tuples(
        st.sampled_from(["client_id", "device_code", "grant_type", "scope", "client_secret", "x"]),
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(["devicelink-cli", DEVICE_CODE_GRANT, "api", "", "%ff", "%00"]),
        ),
    ),
    max_size=6,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass"))
BODIES = st.one_of(st.binary(max_size=2048), FORMISH)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(ENDPOINTS), body=BODIES, content_type=CONTENT_TYPES)
async def test_arbitrary_bytes_never_fail_the_server(
    sqlite_server: Server, path: str, body: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await sqlite_server.http.post(path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert response.status_code != 422, response.text
    assert "Traceback" not in response.text
    payload = response.json()
    if path == AUTHORIZE and response.status_code == 200:
        # A body that happens to be a valid form (say, empty or only unknown fields)
        # starts a flow for the default client.
        assert set(payload) >= {"device_code", "user_code", "verification_uri"}
        return
    assert isinstance(payload.get("error"), str), payload
    assert payload["error"], payload
    assert "detail" not in payload
    assert response.headers.get("cache-control") == "no-store"
