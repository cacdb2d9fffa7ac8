"""The settings of devicelink inside a host application, checked: who signs users in
(the host, through ``resolve_user`` and ``LOGIN_URL``; or devicelink's own local
accounts and upstream OpenID Connect), and the schema devicelink's tables keep to in a
database it shares with the host.

Each function returns the problems it finds, in the words ``Settings.check`` prints.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from devicelink.runtime.settings import Settings

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A PostgreSQL schema name devicelink accepts: lower case, as unquoted names are."""


def sign_in_problems(settings: Settings, *, resolves_users: bool) -> list[str]:
    """Someone must be able to sign in: local accounts, an upstream provider, or (only
    when embedded with ``resolve_user``) the host application itself."""
    problems: list[str] = []
    if settings.oidc_issuer and not settings.oidc_client_id:
        problems.append("DEVICELINK_OIDC_CLIENT_ID is required with DEVICELINK_OIDC_ISSUER")
    if not settings.oidc_issuer and not settings.local_accounts and not resolves_users:
        problems.append(
            "no way to sign in: set DEVICELINK_OIDC_ISSUER or DEVICELINK_LOCAL_ACCOUNTS=true "
            "(or, embedded, pass resolve_user to DeviceLink)"
        )
    for name, url in (("LOGIN_URL", settings.login_url), ("LOGOUT_URL", settings.logout_url)):
        if url is None:
            continue
        if not resolves_users:
            problems.append(
                f"DEVICELINK_{name} is the host application's: it needs a resolve_user "
                "passed to DeviceLink (unset it for a standalone server)"
            )
        elif not _is_page_address(url):
            problems.append(
                f"DEVICELINK_{name} must be a path (/login) or an http(s) URL of the host"
            )
    return problems


def _is_page_address(url: str) -> bool:
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url) or "\\" in url:
        return False
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    return url.startswith("/") and not url.startswith("//")


def database_problems(settings: Settings) -> list[str]:
    schema = settings.database_schema
    if schema is None:
        return []
    if settings.effective_database_url().startswith("sqlite"):
        return [
            "DEVICELINK_DATABASE_SCHEMA applies to PostgreSQL only (on SQLite devicelink "
            "has a database file of its own): unset it, or set DEVICELINK_DATABASE_URL to "
            "a PostgreSQL database"
        ]
    if not SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
        return [
            "DEVICELINK_DATABASE_SCHEMA must be a lower-case PostgreSQL name: letters, "
            "digits and _, at most 63, not starting with a digit or pg_ (such as devicelink)"
        ]
    return []


def host_login_redirect(login_url: str, return_to: str) -> str:
    """The host's sign-in page, told where to send the user back: ``next``, a path of
    devicelink's (the host must send the user only to a path on itself)."""
    separator = "&" if "?" in login_url else "?"
    return f"{login_url}{separator}next={quote(return_to, safe='')}"
