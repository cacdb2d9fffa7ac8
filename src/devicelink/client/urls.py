"""The one canonical form of a server URL: the key of its credential, the issuer that
discovery compares with the server's metadata (RFC 8414 section 3.3), and where requests go;
and the pages of the server a message may send the user to.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

from devicelink.client.errors import BadServerURL, printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Final

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

DEVICES_PATH: Final = "/devices"
"""The server's page where a signed-in user sees every key issued to them and revokes any."""


def normalise_server(server: str) -> str:
    """``scheme://host[:port][/path]``: scheme and host in lower case (an international
    host in its ASCII form), no default port, no trailing slash. A bare host means
    ``https://host``.

    Raises :class:`BadServerURL` (a ``ValueError``) for anything else: another scheme, a
    user name or password, a query or fragment, no host, a bad port, spaces.
    """
    text = server.strip()
    if "://" not in text and text:
        text = "https://" + text
    parts = urlsplit(text)
    problem = _problem(text, parts)
    if problem is None:
        try:
            return urlunsplit(
                (parts.scheme.lower(), _netloc(parts), parts.path.rstrip("/"), "", "")
            )
        except (ValueError, UnicodeError):  # a port out of range, a host IDNA cannot encode
            problem = "its host or port is not valid"
    raise BadServerURL(f"{printable(server, 100)!r} is not a server URL: {problem}")


def devices_page(server: str) -> str:
    """The URL of ``server``'s devices page, where a key can be revoked by hand."""
    return normalise_server(server) + DEVICES_PATH


def _problem(text: str, parts: SplitResult) -> str | None:
    if not text:
        return "it is empty"
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        return "it has spaces or control characters"
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        return "it must start with https:// or http://"
    if parts.username is not None or parts.password is not None:
        return "it must not carry a user name or password"
    if parts.query or parts.fragment:
        return "it must not have a query or fragment"
    if not parts.hostname:
        return "it has no host"
    return None


def _netloc(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    elif not host.isascii():
        host = host.encode("idna").decode("ascii")
    port = parts.port  # ValueError when not a number in range
    if port is None or port == _DEFAULT_PORTS[parts.scheme.lower()]:
        return host
    return f"{host}:{port}"


__all__ = ["DEVICES_PATH", "devices_page", "normalise_server"]
