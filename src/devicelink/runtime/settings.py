"""Settings, from the environment (``DEVICELINK_`` prefix) through pydantic-settings.

Every setting has its default beside it. Development means a loopback ``PUBLIC_URL``:
there a missing secret is generated and kept in the data directory. Anywhere else an
insecure configuration is refused at start-up with a message that says what to set.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devicelink.runtime.checks import (
    fallback_problems,
    flow_problems,
    is_loopback_url,
    operations_problems,
    pool_problems,
    public_url_problems,
    upstream_logout_problems,
)
from devicelink.runtime.embedding import database_problems, sign_in_problems
from devicelink.runtime.secret_file import load_or_create_secret

SECRET_FILE = "secret.key"  # noqa: S105 - a file name
DATABASE_FILE = "devicelink.db"


class ConfigurationError(Exception):
    """The configuration is unsafe or inconsistent; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEVICELINK_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql://user:pass@host/db); default: a SQLite "
        "file in the data directory",
    )
    database_schema: str | None = Field(
        default=None,
        description="PostgreSQL schema of devicelink's tables (and its migrations' version "
        "table), created if missing, for a database shared with other applications; "
        "default: public",
    )
    data_dir: Path = Field(
        default=Path("devicelink-data"),
        description="Where the embedded default keeps its SQLite file and generated secret",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL users reach; the issuer and verification_uri are built from it. "
        "Default (embedded only): the address the server listens on",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Server secret for the keyed hashes (at least 32 characters); "
        "generated and kept in the data directory on a loopback PUBLIC_URL",
    )
    # --- rotating the secret (docs/deploy.md, "Changing the server secret") -----------
    secret_key_fallbacks: SecretStr | None = Field(
        default=None,
        description="Previous server secrets, newest first, separated by commas, during a "
        "rotation: what was hashed or sealed with them is still accepted (and API keys and "
        "client secrets are rewritten to SECRET_KEY as they are used); nothing new is "
        "made with them. Default: none",
    )
    default_client_id: str | None = Field(
        default="devicelink-cli",
        description="Client used when a request has no client_id; empty to require one",
    )
    code_lifetime: int = Field(default=600, description="Seconds a user code stays valid")
    interval: int = Field(default=5, description="Seconds between polls")
    slow_down_step: int = Field(default=5, description="Seconds added by each slow_down")
    max_interval: int = Field(default=60, description="Cap of the polling interval")
    key_lifetime: int = Field(
        default=30 * 86_400,
        description="Seconds an API key lives, for clients created without their own "
        "lifetime; 0 means keys never expire",
    )
    start_rate_limit: str = Field(
        default="30/minute", description="Flows one IP address may start (limits syntax)"
    )
    ipv6_limit_prefix: int = Field(
        default=64, ge=32, le=128, description="IPv6 clients share per-address limits per prefix"
    )
    redis_url: str | None = Field(
        default=None, description="Redis for shared rate-limit counters across processes"
    )
    redis_key_prefix: str = Field(
        default="devicelink", description="Prefix of devicelink's keys in Redis"
    )
    max_body_bytes: int = Field(default=65_536, description="Largest request body accepted")
    openapi: bool | None = Field(
        default=None,
        description="Standalone: serve /openapi.json and /docs. Embedded: list devicelink's "
        "routes in the host's OpenAPI schema. Default: on standalone, off embedded",
    )
    metrics: bool | None = Field(
        default=None,
        description="Serve /metrics (Prometheus). Default: on standalone, off embedded",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, /metrics answers only requests with "
        "'Authorization: Bearer <this token>' (32+ random characters); default: none, "
        "so keep /metrics off the public proxy",
    )
    fast_path: bool = Field(
        default=True,
        description="On PostgreSQL, answer polls (every answer but the key) and key checks "
        "with one statement each on a fast path; on SQLite, new flows, polls and key checks "
        "through its one writer (group commit), reads beside it (false: every request takes "
        "the general path)",
    )
    key_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="On PostgreSQL with the fast path, how many API keys each process "
        "remembers between checks; a revocation or a disabled account reaches every "
        "process at once (PostgreSQL NOTIFY). 0: every check reads the database",
    )
    # --- connections to PostgreSQL (docs/deploy.md, "Connections to PostgreSQL") -----
    database_pool_size: int = Field(
        default=10,
        description="On PostgreSQL, connections each server process keeps open for the "
        "general path (pages, approvals, revocations, the purge), opened as needed",
    )
    database_max_overflow: int = Field(
        default=5,
        description="On PostgreSQL, connections each server process may open beyond "
        "DATABASE_POOL_SIZE when busy, closed again once used",
    )
    fast_path_pool_size: int = Field(
        default=10,
        description="On PostgreSQL with the fast path, the most connections of each server "
        "process's fast-path pool (new flows, pending polls, key checks)",
    )
    auto_migrate: bool | None = Field(
        default=None,
        description="Apply migrations at start-up; default: only on the embedded SQLite",
    )
    session_lifetime: int = Field(
        default=43_200, description="Seconds a browser stays signed in to the pages"
    )
    purge_interval: int = Field(
        default=300,
        description="Seconds between purges of ended rows (codes, keys, sessions, audit "
        "events) in each server process; 0 disables the periodic purge",
    )
    revocation_drain_interval: int = Field(
        default=5,
        ge=0,
        description="Seconds between the server process's deliveries of pending key "
        "revocations to the key issuer (those the operator's commands made, and any the "
        "issuer failed to take); also done at start-up. 0: only at start-up",
    )
    code_retention: int = Field(
        default=86_400,
        description="Seconds an expired device authorization or sign-in code is kept "
        "(it answers expired_token, or revokes the key of a replayed code, until purged)",
    )
    key_retention: int = Field(
        default=30 * 86_400,
        description="Seconds a revoked or expired API key is kept before it is purged",
    )
    audit_retention: int = Field(
        default=90 * 86_400, description="Seconds audit events are kept before they are purged"
    )
    purge_batch_size: int = Field(
        default=500,
        description="Rows deleted per purge transaction (kept small: polls wait at most one batch)",
    )
    code_entry_limit_session: str = Field(
        default="5/15 minutes", description="Failed code entries allowed per browser session"
    )
    code_entry_limit_ip: str = Field(
        default="20/hour", description="Failed code entries allowed per IP address"
    )
    code_entry_limit_account: str = Field(
        default="20/hour", description="Failed code entries allowed per signed-in account"
    )
    login_limit: str = Field(
        default="10/15 minutes",
        description="Failed password sign-ins allowed per IP address, and per username "
        "from one IP address",
    )
    login_account_limit: str = Field(
        default="100/1 hour",
        description="Failed password sign-ins per username from every address together; "
        "past it, only addresses with no failed sign-in for that username may try",
    )
    local_accounts: bool = Field(default=True, description="Offer sign-in with local accounts")
    login_url: str | None = Field(
        default=None,
        description="Embedded with resolve_user: the host's sign-in page, where a visitor "
        "not signed in is sent, with next= the devicelink page to come back to",
    )
    logout_url: str | None = Field(
        default=None,
        description="Embedded with resolve_user: the host's sign-out, behind the pages' "
        "Sign out (without it, Sign out is hidden for the host's users)",
    )
    oidc_issuer: str | None = Field(
        default=None, description="Upstream OpenID Connect issuer URL (enables upstream sign-in)"
    )
    oidc_client_id: str | None = Field(default=None, description="Client id at the upstream")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="Client secret at the upstream (omit for a public client)"
    )
    oidc_username_claims: str = Field(
        default="preferred_username email sub",
        description="Claims that name the user, first present wins (space-separated)",
    )
    oidc_label: str | None = Field(default=None, description="Text of the upstream sign-in button")
    oidc_backchannel_logout: str = Field(
        default="off",
        description="What a back-channel logout from the upstream does, posted to "
        "/oauth/upstream/backchannel-logout: off (no such endpoint), end-sessions (the "
        "user's browser sessions here end) or revoke-keys (their sessions end and every "
        "key of theirs is revoked)",
    )
    # --- the host's brand (embedding) --------------------------------------------
    product_name: str = Field(
        default="devicelink",
        min_length=1,
        max_length=100,
        description="Name shown in the pages' titles and header instead of devicelink",
    )
    templates_dir: Path | None = Field(
        default=None,
        description="Directory of templates that override devicelink's, file by file "
        "(base.html, login.html, code.html, confirm.html, devices.html, message.html, "
        "error.html); devicelink's own stay reachable as devicelink/NAME",
    )
    default_client_name: str = Field(
        default="devicelink CLI",
        min_length=1,
        max_length=200,
        description="Display name of the default client, shown on the confirm and devices "
        "pages; set explicitly, it also renames an existing default client at start-up",
    )
    scope_descriptions: dict[str, str] = Field(
        default={"api": "Use the API as you, with your permissions"},
        description="Plain words for each scope on the confirm page (JSON object)",
    )
    # --- operations (devicelink serve) ---------------------------------------------
    log_format: str | None = Field(
        default=None,
        description="json or console; default: json when standard error is not a terminal",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto are believed; default: none",
    )
    graceful_timeout: int = Field(
        default=30, description="Seconds requests in flight get to finish at shutdown"
    )
    shutdown_delay: float = Field(
        default=0,
        description="Seconds between SIGTERM and closing the listener, during which "
        "/readyz answers 503 so a load balancer stops sending new requests",
    )

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "default_client_id",
        "database_url",
        "database_schema",
        "redis_url",
        "oidc_issuer",
        "login_url",
        "logout_url",
    )
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    # --- derived -------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """True when running on the embedded SQLite default."""
        return self.database_url is None

    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DATABASE_FILE).resolve()}"

    def should_migrate(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.effective_database_url().startswith("sqlite")

    @property
    def issuer(self) -> str:
        if not self.public_url:
            raise ConfigurationError("set DEVICELINK_PUBLIC_URL")
        return self.public_url

    @property
    def secure_cookies(self) -> bool:
        return (self.public_url or "").startswith("https://")

    def is_development(self) -> bool:
        return is_loopback_url(self.public_url or "http://127.0.0.1")

    def check(self, *, workers: int = 1, resolves_users: bool = False) -> None:
        """Refuse an unsafe configuration outside development (DESIGN.md, Settings);
        ``workers`` is the number of processes ``serve`` is about to start;
        ``resolves_users``: embedded, the host signs its users in (``resolve_user``)."""
        problems = public_url_problems(self)
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if 0 < len(secret) < 32 and "DEVICELINK_SECRET_KEY is too weak" not in " ".join(problems):
            problems.append("DEVICELINK_SECRET_KEY is too weak: use 32 or more random characters")
        problems.extend(fallback_problems(self))
        problems.extend(sign_in_problems(self, resolves_users=resolves_users))
        problems.extend(database_problems(self))
        problems.extend(flow_problems(self))
        problems.extend(upstream_logout_problems(self))
        problems.extend(operations_problems(self))
        problems.extend(pool_problems(self))
        unshared = self.unshared_limits(workers)
        if unshared and not self.is_development():
            problems.append(unshared)
        if problems:
            raise ConfigurationError("refusing to start:\n  - " + "\n  - ".join(problems))

    def max_connections_per_worker(self) -> int | None:
        """The most connections one server process opens to PostgreSQL (None on SQLite):
        the general path's pool and its overflow, the fast path's pool, and the
        connection that listens for key changes (with the fast path and a key cache)."""
        if not self.effective_database_url().startswith("postgres"):
            return None
        connections = self.database_pool_size + self.database_max_overflow
        if self.fast_path:
            connections += self.fast_path_pool_size
            if self.key_cache_size > 0:
                connections += 1
        return connections

    def unshared_limits(self, workers: int) -> str | None:
        """What goes wrong when several workers each count the rate limits on their own:
        refused outside development, a loud warning in it."""
        if workers <= 1 or self.redis_url:
            return None
        return (
            f"{workers} workers without DEVICELINK_REDIS_URL: each worker counts the rate "
            f"limits on its own, so every limit is {workers} times what it says; set "
            "DEVICELINK_REDIS_URL so that the workers share their counters"
        )

    def trusted_proxy_list(self) -> list[str]:
        """The trusted proxies as uvicorn's ``forwarded_allow_ips`` (empty: trust none).

        uvicorn takes anything it cannot parse as a literal that never matches, so a typo
        would silently trust nobody: entries are checked here instead."""
        entries = [item.strip() for item in self.trusted_proxies.split(",") if item.strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                if "/" in entry:
                    ipaddress.ip_network(entry)
                else:
                    ipaddress.ip_address(entry)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (such as 10.0.0.0/8)"
                ) from None
        return entries

    def fallback_secrets(self) -> list[bytes]:
        """The previous secrets of DEVICELINK_SECRET_KEY_FALLBACKS, newest first (commas
        separate them: ``devicelink secret new`` and ``secrets.token_urlsafe`` never
        make one, and a systemd EnvironmentFile keeps them as they are)."""
        listed = self.secret_key_fallbacks.get_secret_value() if self.secret_key_fallbacks else ""
        return [item.strip().encode("utf-8") for item in listed.split(",") if item.strip()]

    def secret_bytes(self) -> bytes:
        """The server secret; on a loopback URL, generated once and kept with mode 0600."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode("utf-8")
        if not self.is_development():
            raise ConfigurationError("DEVICELINK_SECRET_KEY is required outside development")
        kept = self.data_dir / SECRET_FILE
        secret = load_or_create_secret(kept)
        if len(secret) < 32:
            raise ConfigurationError(f"{kept} holds a secret shorter than 32 bytes")
        return secret
