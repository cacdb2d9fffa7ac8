"""One canonical server URL for the credential store, ``--server`` and discovery's issuer
check: two spellings of one server never make two entries or a failed discovery."""

from __future__ import annotations

import pytest

from devicelink.client.errors import BadServerURL, DiscoveryFailed
from devicelink.client.urls import normalise_server

SAME_SERVER = [
    ("https://login.example.com", "https://login.example.com"),
    ("https://login.example.com/", "https://login.example.com"),
    ("  HTTPS://Login.Example.COM:443//  ", "https://login.example.com"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ("http://localhost:80", "http://localhost"),
    ("https://example.com/auth/", "https://example.com/auth"),
    ("login.example.com", "https://login.example.com"),
    ("http://[::1]:8000/", "http://[::1]:8000"),
    ("https://Bücher.example/", "https://xn--bcher-kva.example"),
]

NOT_A_SERVER = [
    "",
    "ftp://example.com",
    "https://user:pw@example.com",
    "https://example.com/?next=1",
    "https://example.com/#x",
    "https://",
    "https://example.com:99999",
    "https://exa mple.com",
    "https://example.com/\x1b[2J",
]


@pytest.mark.parametrize(("given", "expected"), SAME_SERVER)
def test_server_urls_are_normalised_so_one_server_has_one_entry(given: str, expected: str) -> None:
    assert normalise_server(given) == expected


@pytest.mark.parametrize(("given", "expected"), SAME_SERVER)
def test_a_normalised_url_stays_as_it_is(given: str, expected: str) -> None:
    assert normalise_server(expected) == expected


@pytest.mark.parametrize("bad", NOT_A_SERVER)
def test_unusable_server_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a server URL"):
        normalise_server(bad)


def test_the_refusal_suits_both_callers() -> None:
    """``--server`` and the credential store catch a ValueError; the flows' callers a
    DiscoveryFailed (a server that cannot be discovered)."""
    with pytest.raises(BadServerURL) as refused:
        normalise_server("ftp://example.com")
    assert isinstance(refused.value, ValueError)
    assert isinstance(refused.value, DiscoveryFailed)
    assert "https:// or http://" in str(refused.value)
