"""Oversized and malformed headers and cookies against a real ``devicelink serve``.

Every answer must be a 4xx or a normal answer, never a 5xx, and the server must stay up
without writing a traceback. The bytes go over a raw socket: httpx refuses to send most
of them.
"""

from __future__ import annotations

import pytest

from tests.abuse.attack import figure
from tests.support.http import CLIENT_ID
from tests.support.raw_http import RawAnswer, raw_request, request_bytes
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

FORM = (b"Content-Type", b"application/x-www-form-urlencoded")
COOKIE = b"devicelink_session"
PARSER_REFUSAL = b"Invalid HTTP request received."
SOURCE = "127.0.0.5"
"""This module's client address (see conftest.py)."""


def send(server: ServerProcess, data: bytes) -> RawAnswer:
    answer = server.alive() and raw_request(server.port, data, source=SOURCE)
    assert answer, f"devicelink serve died\n{server.logs()}"
    return answer


def assert_no_server_error(answer: RawAnswer, what: str) -> None:
    assert answer.status is not None, f"{what}: no HTTP answer at all ({answer.head[:200]!r})"
    assert answer.status < 500, f"{what}: {answer.head[:400]!r}"


# --- size -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8 * 1024, 100 * 1024, 1024 * 1024])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/oauth/device/verify"), ("POST", "/oauth/device/token")],
)
def test_a_huge_header_never_gets_a_server_error(
    server: ServerProcess, size: int, method: str, path: str
) -> None:
    body = b"device_code=x" if method == "POST" else b""
    headers = [(b"X-Padding", b"a" * size)] + ([FORM] if body else [])
    answer = send(server, request_bytes(method, path, headers, body))
    assert_no_server_error(answer, f"{size} byte header on {path}")
    if path == "/healthz":
        figure(f"{size // 1024} KB header on GET /healthz", f"HTTP {answer.status}")
    server.assert_healthy()


def test_a_100_kb_header_is_refused_with_a_4xx(server: ServerProcess) -> None:
    answer = send(server, request_bytes("GET", "/healthz", [(b"X-Padding", b"a" * 100 * 1024)]))
    assert answer.status is not None, answer.head[:200]
    assert 400 <= answer.status < 500, answer.head[:200]


def test_ten_thousand_headers_never_get_a_server_error(server: ServerProcess) -> None:
    headers = [(b"X-Many-%d" % i, b"v") for i in range(10_000)]
    answer = send(server, request_bytes("GET", "/oauth/device/verify", headers))
    assert_no_server_error(answer, "10,000 headers")
    figure("10,000 headers on GET /oauth/device/verify", f"HTTP {answer.status}")
    server.assert_healthy()


# --- invalid bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"X-Nul", b"a\x00b"),
        (b"X-Control", b"a\x01\x7fb"),
        (b"X-Bare-CR", b"a\rb"),
        (b"X Space In Name", b"v"),
        (b"X-\xff-Name", b"v"),
        (b"X-Latin-1", b"caf\xe9 \xff\xfe"),
        (b"User-Agent", b"\xff\xfe\x00" * 100),
        (b"X-Request-ID", b"\xc3(\xa0\xa1" * 64),
        (b"Authorization", b"Bearer \xff\xfe\xfd"),
        (b"Content-Type", b"application/x-www-form-urlencoded; charset=\xff"),
        (b"Origin", b"\xff://\x00"),
        (b"Sec-Fetch-Site", b"\xff" * 50),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/oauth/device/authorize"),
        ("POST", "/oauth/device/token"),
        ("POST", "/login"),
        ("GET", "/api/me"),
    ],
)
def test_a_header_with_invalid_bytes_is_a_4xx_or_answered(
    server: ServerProcess, name: bytes, value: bytes, method: str, path: str
) -> None:
    body = b"client_id=" + CLIENT_ID.encode() if method == "POST" else b""
    answer = send(server, request_bytes(method, path, [FORM, (name, value)], body))
    assert_no_server_error(answer, f"{name!r}: {value[:20]!r} on {path}")


def test_non_ascii_basic_credentials_are_invalid_client(server: ServerProcess) -> None:
    body = b"client_id=devicelink-cli&device_code=x&token=y"
    statuses = {}
    try:
        for path in (
            "/oauth/device/authorize",
            "/oauth/device/token",
            "/oauth/revoke",
            "/oauth/introspect",
        ):
            for credentials in (b"\xff\xfe\xfd==", "é:é".encode()):
                basic = (b"Authorization", b"Basic " + credentials)
                answer = send(server, request_bytes("POST", path, [FORM, basic], body))
                statuses[(path, credentials)] = answer.status
    finally:
        server.forget_output()  # the bug's tracebacks must not fail the next tests
    figure("non-ASCII Basic credentials (4 endpoints)", sorted(set(statuses.values()), key=str))
    assert set(statuses.values()) == {401}, statuses


def test_invalid_header_bytes_leave_the_server_up(server: ServerProcess) -> None:
    answers = {
        label: send(server, request_bytes("GET", "/healthz", [(name, value)])).status
        for label, name, value in [
            ("NUL in a value", b"X-Nul", b"a\x00b"),
            ("space in a name", b"X Bad", b"v"),
            ("0xFF in a name", b"X-\xff", b"v"),
            ("0xFF in a value", b"X-Latin-1", b"\xff\xfe"),
        ]
    }
    for label, status in answers.items():
        figure(f"header with {label}", f"HTTP {status}")
    assert all(status is not None and status < 500 for status in answers.values()), answers
    server.assert_healthy()


# --- cookies ------------------------------------------------------------------------------


GARBAGE_COOKIES = {
    "4 KB garbage session cookie": COOKIE + b"=" + b'%zz;"=,\\' * 512,
    "4 KB url-safe session cookie": COOKIE + b"=" + b"A" * 4096,
    "64 KB session cookie": COOKIE + b"=" + b"B" * 65536,
    "5,000 cookies": b"; ".join(b"c%d=v%d" % (i, i) for i in range(5000)),
    "500 session cookies": b"; ".join([COOKIE + b"=x%d" % i for i in range(500)]),
    "non-UTF-8 session cookie": COOKIE + b"=\xff\xfe\xc3(\x80",
    "NUL in the cookie": COOKIE + b"=a\x00b",
    "quoted, unterminated": COOKIE + b'="abc; other="',
    "no name": b"=value; ==; ;;; =",
    "Host-prefixed forgery": b"__Host-devicelink=" + b"C" * 43,
}


@pytest.mark.parametrize("label", list(GARBAGE_COOKIES))
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/login"),
        ("GET", "/oauth/device/verify"),
        ("POST", "/oauth/device/verify"),
        ("POST", "/oauth/device/decide"),
        ("POST", "/login"),
    ],
)
def test_a_garbage_cookie_is_a_new_visitor_never_a_server_error(
    server: ServerProcess, label: str, method: str, path: str
) -> None:
    body = b"csrf_token=x&user_code=BCDF-GHJK&action=approve" if method == "POST" else b""
    cookie = (b"Cookie", GARBAGE_COOKIES[label])
    answer = send(server, request_bytes(method, path, [FORM, cookie], body))
    assert_no_server_error(answer, f"{label} on {method} {path}")
    if answer.status == 400 and PARSER_REFUSAL in answer.head:
        return  # refused by the HTTP parser (a NUL byte) before devicelink saw it
    if len(GARBAGE_COOKIES[label]) > 32 * 1024:
        # Over devicelink's limit on header size: refused before anything reads them.
        assert answer.status == 431, answer.head[:300]
        return
    if method == "GET":
        # Sign-in pages: the login form (200) or a redirect to it (303), never signed in.
        assert answer.status in (200, 303), answer.head[:300]
        if path == "/oauth/device/verify":
            assert b"location: /login" in answer.head.lower()
    else:
        # Posts: the CSRF check fails (403) without a valid session; nothing is changed.
        assert answer.status == 403, answer.head[:300]


def test_garbage_cookies_leave_the_server_up(server: ServerProcess) -> None:
    statuses = {
        label: send(
            server, request_bytes("GET", "/oauth/device/verify", [(b"Cookie", value)])
        ).status
        for label, value in GARBAGE_COOKIES.items()
    }
    for label, status in statuses.items():
        figure(f"cookie: {label} on GET /oauth/device/verify", f"HTTP {status}")
    server.assert_healthy()


def test_a_100_kb_bearer_token_is_refused_as_too_large(server: ServerProcess) -> None:
    answer = send(
        server,
        request_bytes("GET", "/api/me", [(b"Authorization", b"Bearer dlk_" + b"x" * 100_000)]),
    )
    assert answer.status == 431, answer.head[:300]
    assert b'"error":"invalid_request"' in answer.head


def test_a_20_kb_bearer_token_is_401(server: ServerProcess) -> None:
    answer = send(
        server,
        request_bytes("GET", "/api/me", [(b"Authorization", b"Bearer dlk_" + b"x" * 20_000)]),
    )
    assert answer.status == 401, answer.head[:300]
    server.assert_healthy()
