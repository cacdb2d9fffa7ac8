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


LOOPBACK_HOST: Final = "127.0.0.1"
"""The one spelling of this computer's own server: ``localhost`` is written so, for one
entry per server in the credential store (issue 16)."""

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})


def normalise_server(server: str) -> str:
    """``scheme://host[:port][/path]``: scheme and host in lower case (an international
    host in its ASCII form), ``localhost`` written ``127.0.0.1``, no default port, no
    trailing slash. A bare host means ``https://host``, except this computer's own
    (``127.0.0.1:8000``, ``localhost:8000``, ``[::1]:8000``): ``http://``, as
    ``devicelink serve`` answers there.

    Raises :class:`BadServerURL` (a ``ValueError``) for anything else: another scheme, a
    user name or password, a query or fragment, no host or one that cannot be, a bad port,
    spaces.
    """
    text = server.strip()
    if "://" not in text and text:
        scheme = _misspelt_scheme(text)
        if scheme is not None:
            raise BadServerURL(
                f"{printable(server, 100)!r} is not a server URL: write {scheme}:// (with two "
                "slashes) before the host"
            )
        bare = urlsplit("//" + text)
        text = ("http://" if _is_loopback(bare.hostname) else "https://") + text
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


def other_spellings(server: str) -> list[str]:
    """The names a store written before ``localhost`` became ``127.0.0.1`` may keep the
    normalised ``server`` under (empty for any other host)."""
    parts = urlsplit(server)
    if parts.hostname != LOOPBACK_HOST:
        return []
    netloc = "localhost" + (f":{parts.port}" if parts.port is not None else "")
    return [urlunsplit((parts.scheme, netloc, parts.path, "", ""))]


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
    return _host_problem(parts.hostname) or _path_problem(parts.path)


def _misspelt_scheme(text: str) -> str | None:
    """``http`` in ``http:/host``, ``http//host`` or ``https:host``: a scheme that lost a
    character, which would otherwise become a host named ``http``."""
    lowered = text.lower()
    for scheme in ("https", "http"):
        rest = lowered[len(scheme) :]
        misspelt = rest.startswith((":/", "//")) or rest[:1] == ":"
        # ... but not host:port (a host named http, on a port)
        if lowered.startswith(scheme) and misspelt and not rest[1:].split("/")[0].isdigit():
            return scheme
    return None


def _host_problem(host: str) -> str | None:
    """Why ``host`` (lower case, IPv6 without brackets) cannot be a server's: a name with
    an empty or badly formed label, or a number that is not an IPv4 address."""
    if ":" in host:  # IPv6: urlsplit has checked the brackets
        return None
    labels = host.rstrip(".").split(".")
    if any(not label for label in labels):
        return "its host has an empty part (two dots in a row?)"
    if all(label.isdigit() for label in labels):
        if len(labels) != 4 or any(int(label) > 255 for label in labels):
            return "its host is not a valid IP address"
        return None
    for label in labels:
        if label.startswith("-") or label.endswith("-"):
            return "its host is not valid (a part starts or ends with '-')"
        if not all(ch.isalnum() or ch in "-_" for ch in label):
            return f"its host {printable(host, 60)!r} has characters a host name cannot have"
    return None


def _path_problem(path: str) -> str | None:
    if "//" in path.rstrip("/"):
        return "its path has an empty part ('//'): check the slashes"
    return None


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    return host in _LOOPBACK_NAMES or host == "::1" or host.startswith("127.")


def _netloc(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if host in _LOOPBACK_NAMES:
        host = LOOPBACK_HOST
    if ":" in host:
        host = f"[{host}]"  # IPv6
    elif not host.isascii():
        host = host.encode("idna").decode("ascii")
    port = parts.port  # ValueError when not a number in range
    if port is None or port == _DEFAULT_PORTS[parts.scheme.lower()]:
        return host
    return f"{host}:{port}"


__all__ = ["DEVICES_PATH", "LOOPBACK_HOST", "devices_page", "normalise_server", "other_spellings"]
