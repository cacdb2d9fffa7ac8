"""RFC 8414: where a server's endpoints are, read from its metadata and checked."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx

from devicelink.client.errors import BadServerURL, DiscoveryFailed, printable
from devicelink.client.messages import CodeGrant, Endpoints, Flow
from devicelink.client.pacing import Clock, exchange
from devicelink.client.urls import normalise_server
from devicelink.client.wire import get_request, json_body

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUTHORIZATION_CODE_GRANT = "authorization_code"
PKCE_METHOD = "S256"
METADATA_PATH = "/.well-known/oauth-authorization-server"


def discover(
    server: str,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> Flow[Endpoints]:
    """RFC 8414 section 3: fetch and check the metadata of the server at ``server``.

    For an issuer with a path, the RFC 8414 location (``/.well-known/...`` inserted before
    the path) is tried first, then ``{server}/.well-known/...`` (a router mounted under a
    prefix). Section 3.3: the ``issuer`` must be the server URL.
    """
    issuer = normalise_server(server)
    candidates = metadata_urls(issuer)
    for index, url in enumerate(candidates):
        response, _ = yield from exchange(
            partial(get_request, url), clock=clock, wall_clock=wall_clock
        )
        if response.status_code != 404 or index + 1 == len(candidates):
            break
    if response.status_code != 200:
        raise DiscoveryFailed(
            f"no OAuth metadata at {url} (HTTP {response.status_code}); check the server address"
        )
    metadata = json_body(response)
    if not isinstance(metadata, dict):
        raise DiscoveryFailed(f"the metadata at {url} is not a JSON object")
    return _endpoints(metadata, issuer, url)


def no_code_grant(issuer: str) -> DiscoveryFailed:
    """The error of a loopback sign-in asked of a server whose metadata does not offer it."""
    return DiscoveryFailed(
        f"{issuer} does not offer sign-in in a browser on this computer (authorization "
        "code with PKCE); use the device flow"
    )


def metadata_urls(issuer: str) -> list[str]:
    """Where RFC 8414 metadata may be, most standard first."""
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    if not path:
        return [issuer + METADATA_PATH]
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    return [origin + METADATA_PATH + path, issuer + METADATA_PATH]


def _endpoints(metadata: dict[str, Any], issuer: str, url: str) -> Endpoints:
    named = metadata.get("issuer")
    if not isinstance(named, str) or not _names_issuer(named, issuer):
        raise DiscoveryFailed(
            f"the metadata at {url} names issuer {printable(named, 100)!r}, not {issuer}; "
            "check the server address"
        )
    grants = metadata.get("grant_types_supported")
    if isinstance(grants, list) and DEVICE_CODE_GRANT not in grants:
        raise DiscoveryFailed(f"{issuer} does not offer the device authorization grant")
    return Endpoints(
        issuer=issuer,
        device_authorization_endpoint=_endpoint(metadata, "device_authorization_endpoint", issuer),
        token_endpoint=_endpoint(metadata, "token_endpoint", issuer),
        revocation_endpoint=_optional_endpoint(metadata, "revocation_endpoint", issuer),
        code_grant=_code_grant(metadata, named, issuer),
    )


def _code_grant(metadata: dict[str, Any], named: str, issuer: str) -> CodeGrant | None:
    """The authorization code grant, when the metadata offers it as a native app needs it
    (RFC 8414 section 2): an ``authorization_endpoint``, the ``code`` response type and
    the grant where they are listed, and PKCE with ``S256`` (RFC 7636 section 4.2; a
    server that names no method, or only ``plain``, is not used: the verifier would be
    sent in clear)."""
    if metadata.get("authorization_endpoint") is None:
        return None
    grants = metadata.get("grant_types_supported")
    responses = metadata.get("response_types_supported")
    methods = metadata.get("code_challenge_methods_supported")
    if isinstance(grants, list) and AUTHORIZATION_CODE_GRANT not in grants:
        return None
    if isinstance(responses, list) and "code" not in responses:
        return None
    if not isinstance(methods, list) or PKCE_METHOD not in methods:
        return None
    return CodeGrant(
        authorization_endpoint=_endpoint(metadata, "authorization_endpoint", issuer),
        issuer=named,
        iss_parameter=metadata.get("authorization_response_iss_parameter_supported") is True,
    )


def _names_issuer(named: object, issuer: str) -> bool:
    """Whether ``named`` is ``issuer`` written another way (case, default port, slash);
    it must be a whole URL, not a bare host."""
    if not isinstance(named, str) or "://" not in named:
        return False
    try:
        return normalise_server(named) == issuer
    except BadServerURL:
        return False


def _optional_endpoint(metadata: dict[str, Any], name: str, issuer: str) -> str | None:
    return None if metadata.get(name) is None else _endpoint(metadata, name, issuer)


def _endpoint(metadata: dict[str, Any], name: str, issuer: str) -> str:
    value = metadata.get(name)
    if not isinstance(value, str):
        raise DiscoveryFailed(f"{issuer} names no {name} in its metadata")
    try:
        url: httpx.URL | None = httpx.URL(value)
    except httpx.InvalidURL:
        url = None
    allowed = ("https",) if issuer.startswith("https://") else ("http", "https")
    if url is None or url.scheme not in allowed or not url.host:
        raise DiscoveryFailed(f"the {name} in {issuer}'s metadata is not a valid URL")
    return value


__all__ = [
    "AUTHORIZATION_CODE_GRANT",
    "DEVICE_CODE_GRANT",
    "METADATA_PATH",
    "PKCE_METHOD",
    "discover",
    "metadata_urls",
    "no_code_grant",
]
