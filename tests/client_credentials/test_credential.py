"""The Credential value and server URL normalisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devicelink.client.credentials import Credential, normalize_server

from .conftest import make_credential


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://login.example.com", "https://login.example.com"),
        ("https://login.example.com/", "https://login.example.com"),
        ("  HTTPS://Login.Example.COM:443//  ", "https://login.example.com"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://localhost:80", "http://localhost"),
        ("https://example.com/auth/", "https://example.com/auth"),
        ("login.example.com", "https://login.example.com"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
    ],
)
def test_server_urls_are_normalised_so_one_server_has_one_entry(given: str, expected: str) -> None:
    assert normalize_server(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ftp://example.com",
        "https://user:pw@example.com",
        "https://example.com/?next=1",
        "https://example.com/#x",
        "https://",
        "https://example.com:99999",
    ],
)
def test_unusable_server_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_server(bad)


def test_repr_never_shows_the_key() -> None:
    credential = make_credential(access_token="dlk_topsecret_abc")
    assert "dlk_topsecret_abc" not in repr(credential)
    assert "dlk_topsecret_abc" not in str(credential)
    assert "login.example.com" in repr(credential)


def test_json_dict_round_trip_keeps_every_field() -> None:
    credential = make_credential()
    data = credential.to_dict()
    assert data["expires_at"] == "2026-12-29T12:00:00+00:00"
    assert Credential.from_dict(data) == credential


def test_times_are_aware_utc_and_naive_times_refused() -> None:
    paris = timezone(timedelta(hours=1))
    credential = make_credential(created_at=datetime(2026, 11, 29, 13, 0, tzinfo=paris))
    assert credential.created_at == datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert credential.created_at.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        make_credential(expires_at=datetime(2026, 12, 1, 12, 0))  # noqa: DTZ001
    with pytest.raises(ValueError):
        Credential.from_dict({**credential.to_dict(), "created_at": "2026-11-29T12:00:00"})


def test_server_is_normalised_and_an_empty_key_refused() -> None:
    assert make_credential(server="HTTPS://Login.Example.com/").server == (
        "https://login.example.com"
    )
    with pytest.raises(ValueError):
        make_credential(access_token="")


def test_expiry() -> None:
    credential = make_credential()
    assert credential.expires_at is not None
    assert not credential.is_expired(credential.expires_at - timedelta(seconds=1))
    assert credential.is_expired(credential.expires_at)
    assert not make_credential(expires_at=None).is_expired()
