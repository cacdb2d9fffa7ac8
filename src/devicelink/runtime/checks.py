"""The checks of :meth:`devicelink.runtime.settings.Settings.check`, by theme: the
public URL and what must be secret outside development, well-known default passwords,
the device flow's timings, and operations. Each function returns the problems it finds,
in the words the refusal prints.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from devicelink.runtime.settings import Settings

FIRST_PASSWORD_MARKER = "admin-password-unchanged"  # noqa: S105 - a file name
"""Next to the embedded database while the first account keeps its printed password."""
_DEFAULT_PASSWORDS = {  # a deny list, not credentials
    "postgres",
    "password",
    "changeme",
    "change-me",
    "secret",
    "admin",
    "devicelink",
    "redis",
    "keycloak",
    "root",
    "test",
    "example",
    "123456",
    "12345678",
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_WEAK_SECRETS = {  # a deny list, not credentials
    "changeme",
    "change-me",
    "secret",
    "password",
    "devicelink",
    "development",
}


def public_url_problems(settings: Settings) -> list[str]:
    """The URL users open; outside development, also what must be secret there."""
    if not settings.public_url:
        return ["DEVICELINK_PUBLIC_URL is not set (the URL users open)"]
    parts = urlsplit(settings.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ["DEVICELINK_PUBLIC_URL must be an absolute http(s) URL"]
    if parts.query or parts.fragment:
        return ["DEVICELINK_PUBLIC_URL must not carry a query or fragment"]
    if settings.is_development():
        return []
    problems: list[str] = []
    if parts.scheme != "https":
        problems.append(
            "DEVICELINK_PUBLIC_URL must be https:// outside development (codes and keys cross it)"
        )
    if settings.oidc_issuer and urlsplit(settings.oidc_issuer).scheme != "https":
        problems.append(
            "DEVICELINK_OIDC_ISSUER must be https:// outside development (its keys "
            "sign the identities devicelink trusts)"
        )
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    if not secret:
        problems.append(
            "DEVICELINK_SECRET_KEY is not set; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    elif is_weak_secret(secret):
        problems.append(
            "DEVICELINK_SECRET_KEY is too weak: use 32 or more random characters "
            "(`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if token and is_weak_secret(token):
        problems.append(
            "DEVICELINK_METRICS_TOKEN is too weak: use 32 or more random characters "
            "(`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    problems.extend(default_password_problems(settings))
    return problems


def fallback_problems(settings: Settings) -> list[str]:
    """The other secrets of a rotation: each as strong as DEVICELINK_SECRET_KEY must
    be (32 bytes at least everywhere, since the keyed hashes need them; not weak outside
    development), none the current secret itself. The messages never quote one."""
    problems: list[str] = []
    current = settings.secret_key.get_secret_value() if settings.secret_key else ""
    for place, fallback in enumerate(settings.fallback_secrets(), start=1):
        text = fallback.decode("utf-8")
        if len(fallback) < 32 or (not settings.is_development() and is_weak_secret(text)):
            problems.append(
                f"DEVICELINK_SECRET_KEY_FALLBACKS: secret {place} is too weak: use 32 or "
                "more random characters, as for DEVICELINK_SECRET_KEY (`devicelink secret "
                "new`)"
            )
        elif text == current:
            problems.append(
                f"DEVICELINK_SECRET_KEY_FALLBACKS: secret {place} is DEVICELINK_SECRET_KEY "
                "itself; list only previous secrets"
            )
    return problems


def flow_problems(settings: Settings) -> list[str]:
    """Timings and retentions of the device flow and the purge."""
    problems: list[str] = []
    if not 1 <= settings.interval <= settings.max_interval:
        problems.append("DEVICELINK_INTERVAL must be between 1 and DEVICELINK_MAX_INTERVAL")
    if not 60 <= settings.code_lifetime <= 86_400:
        problems.append("DEVICELINK_CODE_LIFETIME must be between 60 and 86400 seconds")
    if settings.key_lifetime < 0:
        problems.append("DEVICELINK_KEY_LIFETIME must be 0 (never expire) or positive")
    if settings.purge_interval < 0:
        problems.append("DEVICELINK_PURGE_INTERVAL must be 0 (no periodic purge) or positive")
    problems.extend(
        f"DEVICELINK_{name.upper()} must not be negative"
        for name in ("code_retention", "key_retention", "audit_retention")
        if getattr(settings, name) < 0
    )
    if not 1 <= settings.purge_batch_size <= 10_000:
        problems.append("DEVICELINK_PURGE_BATCH_SIZE must be between 1 and 10000")
    return problems


UPSTREAM_LOGOUT_ACTIONS = ("off", "end-sessions", "revoke-keys")
"""The values of ``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT`` (see
:class:`devicelink.service.upstream_logout.LogoutAction`)."""


def upstream_logout_problems(settings: Settings) -> list[str]:
    """The back-channel logout of the upstream: a known choice, and an upstream."""
    choice = settings.oidc_backchannel_logout
    if choice not in UPSTREAM_LOGOUT_ACTIONS:
        return [
            "DEVICELINK_OIDC_BACKCHANNEL_LOGOUT must be off, end-sessions or revoke-keys, "
            f"not {choice!r}"
        ]
    if choice != "off" and not (settings.oidc_issuer and settings.oidc_client_id):
        return [
            "DEVICELINK_OIDC_BACKCHANNEL_LOGOUT needs DEVICELINK_OIDC_ISSUER and "
            "DEVICELINK_OIDC_CLIENT_ID: the provider whose logout tokens it accepts"
        ]
    return []


def default_password_problems(settings: Settings) -> list[str]:
    """Well-known default passwords left on (outside development).

    Two kinds are recognisable without storing anything new: a placeholder password
    in a connection URL or as the upstream client secret, and the local account
    ``admin`` that ``serve`` created on its first start (in development), whose
    one-time password was printed on the terminal and is still unchanged (the marker
    file next to the embedded database says so until ``users passwd admin``)."""
    problems: list[str] = []
    for setting, url in (
        ("DEVICELINK_DATABASE_URL", settings.database_url),
        ("DEVICELINK_REDIS_URL", settings.redis_url),
    ):
        password = url_password(url)
        if password is not None and password.lower() in _DEFAULT_PASSWORDS:
            problems.append(
                f"{setting} carries a well-known default password: give that account "
                "a strong password and put it in the URL"
            )
    client_secret = (
        settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else ""
    )
    if client_secret and client_secret.lower() in _DEFAULT_PASSWORDS:
        problems.append(
            "DEVICELINK_OIDC_CLIENT_SECRET is a placeholder: copy the client secret the "
            "provider generated (Keycloak: Clients > your client > Credentials)"
        )
    if settings.embedded and (settings.data_dir / FIRST_PASSWORD_MARKER).exists():
        problems.append(
            "the local account 'admin' still has the one-time password printed when it "
            "was created: change it with `devicelink users passwd admin` (or disable it "
            "with `devicelink users disable admin`)"
        )
    return problems


def operations_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    if settings.log_format is not None and settings.log_format.lower() not in ("json", "console"):
        problems.append("DEVICELINK_LOG_FORMAT must be json or console")
    if settings.log_level.lower() not in LOG_LEVELS:
        problems.append("DEVICELINK_LOG_LEVEL must be one of " + ", ".join(LOG_LEVELS))
    try:
        settings.trusted_proxy_list()
    except ValueError as exc:
        problems.append(f"DEVICELINK_TRUSTED_PROXIES: {exc}")
    if settings.graceful_timeout < 0:
        problems.append("DEVICELINK_GRACEFUL_TIMEOUT must not be negative")
    if not 0 <= settings.shutdown_delay <= 600:
        problems.append("DEVICELINK_SHUTDOWN_DELAY must be between 0 and 600 seconds")
    if settings.templates_dir is not None and not settings.templates_dir.is_dir():
        problems.append(f"DEVICELINK_TEMPLATES_DIR: {settings.templates_dir} is not a directory")
    return problems


POOL_LIMIT = 100
"""The most connections one pool of one process may be given: more than PostgreSQL's
default max_connections for the whole server is a typo, not a sizing."""


def pool_problems(settings: Settings) -> list[str]:
    """The sizes of each server process's connection pools to PostgreSQL."""
    problems: list[str] = []
    for name, least in (
        ("database_pool_size", 1),
        ("database_max_overflow", 0),
        ("fast_path_pool_size", 1),
    ):
        if not least <= getattr(settings, name) <= POOL_LIMIT:
            problems.append(
                f"DEVICELINK_{name.upper()} must be between {least} and {POOL_LIMIT} "
                "(connections of each server process; docs/deploy.md says how to size them)"
            )
    return problems


def is_weak_secret(secret: str) -> bool:
    """Shorter than 32 characters, a known placeholder, a short pattern repeated, or
    fewer than 6 distinct characters."""
    if len(secret) < 32 or secret.lower() in _WEAK_SECRETS:
        return True
    if len(set(secret)) < 6:
        return True
    return any(
        len(secret) % size == 0 and secret == secret[:size] * (len(secret) // size)
        for size in range(1, 17)
    )


def url_password(url: str | None) -> str | None:
    """The password in a connection URL, decoded, or None."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password is not None else None


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
