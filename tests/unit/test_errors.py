"""Protocol errors (devicelink.core.errors): RFC 6749 section 5.2, RFC 8628 section 3.5.

DESIGN.md defect 4: errors came as 422 or ``{"detail": ...}``. Every error here has the
RFC code and status, and its body holds ``error``, ``error_description`` and, for
``slow_down`` only, ``interval``: nothing else ever reaches the wire.
"""

from __future__ import annotations

import json
import re

import pytest

from devicelink.core import errors
from devicelink.core.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    KeyIssueFailed,
    MethodNotAllowed,
    NotAResourceServer,
    NotFound,
    OAuthError,
    RateLimited,
    RequestTooLarge,
    ServerError,
    SlowDown,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedMediaType,
)

RFC_6749_5_2 = pytest.mark.rfc("6749", "5.2")
RFC_8628_3_5 = pytest.mark.rfc("8628", "3.5")
RFC_6750_3_1 = pytest.mark.rfc("6750", "3.1")

# RFC 6749 section 5.2: error and error_description are %x20-21 / %x23-5B / %x5D-7E
# (printable ASCII without '"' and '\').
RFC_6749_CHARSET = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")


def make(cls: type[OAuthError], *args: object, **kwargs: object) -> OAuthError:
    """An instance of any error class; slow_down needs its interval."""
    if cls is SlowDown:
        return SlowDown(10, *args, **kwargs)  # type: ignore[arg-type]
    if cls is InsufficientScope:
        return InsufficientScope(("api",), *args, **kwargs)  # type: ignore[arg-type]
    return cls(*args, **kwargs)  # type: ignore[arg-type]


def error(
    cls: type[OAuthError], code: str, status: int, mark: pytest.MarkDecorator | None = None
) -> pytest.ParameterSet:
    """A row of the table below, named after its RFC error code."""
    return pytest.param(cls, code, status, marks=mark or (), id=code)


ERROR_TABLE = [
    error(InvalidRequest, "invalid_request", 400, RFC_6749_5_2),
    error(InvalidClient, "invalid_client", 401, RFC_6749_5_2),
    error(InvalidGrant, "invalid_grant", 400, RFC_6749_5_2),
    error(UnauthorizedClient, "unauthorized_client", 400, RFC_6749_5_2),
    # authenticated, but not marked a resource server: may not introspect (403, no challenge)
    pytest.param(NotAResourceServer, "unauthorized_client", 403, id="not a resource server"),
    error(UnsupportedGrantType, "unsupported_grant_type", 400, RFC_6749_5_2),
    error(InvalidScope, "invalid_scope", 400, RFC_6749_5_2),
    error(AuthorizationPending, "authorization_pending", 400, RFC_8628_3_5),
    error(SlowDown, "slow_down", 400, RFC_8628_3_5),
    error(AccessDenied, "access_denied", 400, RFC_8628_3_5),
    error(ExpiredToken, "expired_token", 400, RFC_8628_3_5),
    error(InvalidToken, "invalid_token", 401, RFC_6750_3_1),
    error(InsufficientScope, "insufficient_scope", 403, RFC_6750_3_1),
    # malformed requests stay invalid_request, with a more precise status where HTTP has one
    pytest.param(UnsupportedMediaType, "invalid_request", 400, id="unsupported media type"),
    pytest.param(RequestTooLarge, "invalid_request", 413, id="request too large"),
    pytest.param(MethodNotAllowed, "invalid_request", 405, id="method not allowed"),
    # service conditions, in the same format
    error(TemporarilyUnavailable, "temporarily_unavailable", 503),
    pytest.param(RateLimited, "temporarily_unavailable", 429, id="rate limited"),
    error(ServerError, "server_error", 500),
    pytest.param(KeyIssueFailed, "server_error", 500, id="key issue failed"),
    error(NotFound, "not_found", 404),
]
ALL_ERROR_CLASSES = [p.values[0] for p in ERROR_TABLE]


def _subclasses(cls: type[Exception]) -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_the_table_covers_every_error_class() -> None:
    defined = {cls for cls in _subclasses(OAuthError) if cls.__module__ == errors.__name__}
    assert defined == set(ALL_ERROR_CLASSES)


@pytest.mark.defect(4)
@pytest.mark.parametrize(("cls", "code", "status"), ERROR_TABLE)
def test_error_code_and_status(cls: type[OAuthError], code: str, status: int) -> None:
    error = make(cls)
    assert error.error == code
    assert error.status_code == status
    assert error.status_code != 422
    assert error.body()["error"] == code


@pytest.mark.defect(4)
@pytest.mark.parametrize(("cls", "code", "status"), ERROR_TABLE)
def test_body_holds_only_error_and_error_description(
    cls: type[OAuthError], code: str, status: int
) -> None:
    body = make(cls).body()
    expected_keys = {"error", "error_description"} | ({"interval"} if cls is SlowDown else set())
    assert set(body) == expected_keys
    assert "detail" not in body
    assert json.loads(json.dumps(body)) == body


@RFC_6749_5_2
@pytest.mark.parametrize(("cls", "code", "status"), ERROR_TABLE)
def test_error_and_description_use_the_rfc_6749_character_set(
    cls: type[OAuthError], code: str, status: int
) -> None:
    body = make(cls).body()
    assert RFC_6749_CHARSET.match(str(body["error"]))
    assert body["error_description"]
    assert RFC_6749_CHARSET.match(str(body["error_description"])), body["error_description"]


@pytest.mark.parametrize(("cls", "code", "status"), ERROR_TABLE)
def test_a_given_description_replaces_the_default(
    cls: type[OAuthError], code: str, status: int
) -> None:
    body = make(cls, "the device code is malformed").body()
    assert body["error_description"] == "the device code is malformed"


@pytest.mark.parametrize(("cls", "code", "status"), ERROR_TABLE)
def test_an_empty_description_is_left_out(cls: type[OAuthError], code: str, status: int) -> None:
    assert "error_description" not in make(cls, "").body()


@RFC_6749_5_2
@pytest.mark.parametrize(
    "error",
    [
        pytest.param(InvalidClient(), id="default"),
        pytest.param(InvalidClient("unknown client"), id="with a description"),
    ],
)
def test_invalid_client_is_401_with_www_authenticate(error: InvalidClient) -> None:
    assert error.status_code == 401
    assert error.headers["WWW-Authenticate"].startswith("Basic ")
    assert "realm=" in error.headers["WWW-Authenticate"]
    assert "WWW-Authenticate" not in error.body()


def test_invalid_client_keeps_extra_headers() -> None:
    error = InvalidClient(headers={"X-Extra": "1"})
    assert error.headers == {"WWW-Authenticate": 'Basic realm="devicelink"', "X-Extra": "1"}


@pytest.mark.parametrize(("cls", "code", "status"), ERROR_TABLE)
def test_only_challenges_and_throttling_errors_send_headers(
    cls: type[OAuthError], code: str, status: int
) -> None:
    headers = make(cls).headers
    if status == 401 or cls is InsufficientScope:  # RFC 6750 section 3.1's 403 challenge
        assert set(headers) == {"WWW-Authenticate"}
    elif status in (429, 503):
        assert set(headers) == {"Retry-After"}
    else:
        assert headers == {}


def test_headers_are_copied_not_shared() -> None:
    given = {"X-Extra": "1"}
    error = InvalidRequest(headers=given)
    given["X-Extra"] = "2"
    assert error.headers == {"X-Extra": "1"}
    assert InvalidRequest().headers == {}


@RFC_8628_3_5
@pytest.mark.parametrize("interval", [10, 15, 60])
def test_slow_down_body_carries_the_new_interval(interval: int) -> None:
    error = SlowDown(interval)
    assert error.status_code == 400
    assert error.body() == {
        "error": "slow_down",
        "error_description": SlowDown.default_description,
        "interval": interval,
    }
    assert isinstance(error.body()["interval"], int)


@RFC_6750_3_1
def test_invalid_token_challenge_names_the_error() -> None:
    challenge = InvalidToken().headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        pytest.param(TemporarilyUnavailable(), "5", id="unavailable, default"),
        pytest.param(TemporarilyUnavailable(retry_after=30), "30", id="unavailable, 30 s"),
        pytest.param(RateLimited(retry_after=60), "60", id="rate limited, 60 s"),
    ],
)
def test_throttling_errors_say_when_to_retry(error: OAuthError, retry_after: str) -> None:
    assert error.headers["Retry-After"] == retry_after
    assert "Retry-After" not in error.body()


def test_errors_are_exceptions_with_a_readable_message() -> None:
    with pytest.raises(OAuthError) as caught:
        raise InvalidGrant("device code already used")
    assert str(caught.value) == "invalid_grant: device code already used"
