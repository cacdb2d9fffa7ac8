"""The Credential value: the key never shown, times in UTC, the server normalised
(the rules are in tests/client/test_urls.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devicelink.client.credentials import Credential

from .conftest import make_credential


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
        make_credential(expires_at=datetime(2026, 12, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        Credential.from_dict({**credential.to_dict(), "created_at": "2026-11-29T12:00:00"})


def test_server_is_normalised_and_an_empty_key_refused() -> None:
    assert make_credential(server="HTTPS://Login.Example.com/").server == (
        "https://login.example.com"
    )
    with pytest.raises(ValueError, match="non-empty"):
        make_credential(access_token="")


def test_expiry() -> None:
    credential = make_credential()
    assert credential.expires_at is not None
    assert not credential.is_expired(credential.expires_at - timedelta(seconds=1))
    assert credential.is_expired(credential.expires_at)
    assert not make_credential(expires_at=None).is_expired()
