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
    ("http://localhost:80", "http://127.0.0.1"),
    ("http://LOCALHOST:8000/", "http://127.0.0.1:8000"),
    # Issue 16: this computer's own server, typed bare, is devicelink serve's http://.
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("localhost:8000", "http://127.0.0.1:8000"),
    ("localhost", "http://127.0.0.1"),
    ("[::1]:8000", "http://[::1]:8000"),
    ("example.com:8443", "https://example.com:8443"),
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

MALFORMED = [  # issue 16: refused at once, saying what to fix, never tried on the network
    ("http:/localhost:8000", "write http:// (with two slashes)"),
    ("https:login.example.com", "write https:// (with two slashes)"),
    ("http//login.example.com", "write http:// (with two slashes)"),
    ("https://http//login.example.com", "its path has an empty part"),
    ("login..example.com", "two dots in a row"),
    ("300.1.1.1:8000", "not a valid IP address"),
    ("127.0.0.1.5", "not a valid IP address"),
    ("https://-login.example.com", "starts or ends with '-'"),
    ("https://login!.example.com", "characters a host name cannot have"),
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


@pytest.mark.parametrize(("bad", "why"), MALFORMED)
def test_a_malformed_url_is_refused_with_what_is_wrong(bad: str, why: str) -> None:
    with pytest.raises(BadServerURL, match="is not a server URL") as refused:
        normalise_server(bad)
    assert why in str(refused.value)


def test_localhost_and_127_0_0_1_are_one_server() -> None:
    assert normalise_server("localhost:8000") == normalise_server("http://127.0.0.1:8000/")
