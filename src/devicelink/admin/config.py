"""``devicelink config check``: the effective configuration, secrets masked, and whether
``serve`` would start with it."""

from __future__ import annotations

import asyncio
import difflib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
from pydantic import SecretStr, ValidationError

from devicelink.admin.common import settings_options
from devicelink.client.credentials import DEFAULT_TOKEN_ENV
from devicelink.client.servers import DEFAULT_SERVER_ENV
from devicelink.idp.oidc import OidcAuthenticator
from devicelink.runtime.settings import SECRET_FILE, ConfigurationError, Settings
from devicelink.runtime.wiring import oidc_authenticator

MASK = "********"
POSTGRES_DEFAULT_AVAILABLE = 97
"""Connections PostgreSQL's defaults leave to applications: max_connections 100 less the
3 of superuser_reserved_connections."""
_URL_SETTINGS = ("database_url", "redis_url")
_TOOL_PREFIXES = (
    "DEVICELINK_TEST_",
    "DEVICELINK_FUZZ_",
    "DEVICELINK_BENCH_",
    "DEVICELINK_STATEFUL_",
)
"""Variables of the repository's own tools (tests/, scripts/fuzz, bench/), not settings."""
_SECRET_WORDS = ("pass", "secret", "token", "key")


def mask_url(url: str) -> str:
    """``url`` with the password of its user info, and any password-like query value,
    replaced by a mask."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK  # unparseable: show nothing of it
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        username = userinfo.split(":", 1)[0]
        netloc = f"{username}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (name, MASK if any(word in name.lower() for word in _SECRET_WORDS) else value)
                for name, value in pairs
            ],
            safe="*/",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe(settings: Settings, name: str) -> str:
    """The value of one setting as ``config check`` shows it: never a secret."""
    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        if value.get_secret_value():
            return f"{MASK} (set, {len(value.get_secret_value())} characters)"
        return "(empty)"
    if value is None:
        return _describe_unset(settings, name)
    if name in _URL_SETTINGS:
        return mask_url(str(value))
    return _describe_plain(value)


def _describe_unset(settings: Settings, name: str) -> str:
    """What an unset setting falls back to."""
    if name == "secret_key" and settings.is_development():
        kept = settings.data_dir / SECRET_FILE
        state = "kept in" if kept.exists() else "generated at start in"
        return f"(not set: development, {state} {kept})"
    if name == "database_url":
        return f"(not set: embedded SQLite {settings.effective_database_url()[10:]})"
    return "(not set)"


def _describe_plain(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value == "":
        return "(empty)"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``DEVICELINK_`` variable in ``environ`` that nothing reads (a
    misspelt setting is otherwise ignored in silence), naming the nearest known one."""
    known = [f"DEVICELINK_{name.upper()}" for name in Settings.model_fields]
    known += [DEFAULT_SERVER_ENV, DEFAULT_TOKEN_ENV]  # the command line's own
    warnings = []
    for variable in sorted(environ):
        if not variable.startswith("DEVICELINK_") or variable in known:
            continue
        if variable.startswith(_TOOL_PREFIXES):
            continue
        # Compared without the prefix, which every name shares.
        near = difflib.get_close_matches(variable[11:], [name[11:] for name in known], 1, 0.7)
        hint = f" (did you mean DEVICELINK_{near[0]}?)" if near else ""
        warnings.append(f"{variable} is not a devicelink setting and is ignored{hint}")
    return warnings


def _validation_problems(error: ValidationError) -> list[str]:
    # Never the input: a malformed value may be a secret.
    return [
        f"DEVICELINK_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    ]


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.option("--host", default="127.0.0.1", show_default=True, help="As given to serve.")
@click.option("--port", default=8000, show_default=True, type=int, help="As given to serve.")
@settings_options
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="As given to serve.",
)
def config_check(host: str, port: int, data_dir: Path | None, workers: int) -> None:
    """Print the effective configuration (secrets masked) and exit non-zero, with the
    problems, when `devicelink serve` would refuse it."""
    try:
        settings = Settings()
    except ValidationError as exc:
        _refuse(_validation_problems(exc))
        return
    updates: dict[str, object] = {}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    public_url_note = ""
    if not settings.public_url:
        shown = f"[{host}]" if ":" in host else host
        updates["public_url"] = f"http://{shown}:{port}"
        public_url_note = " (not set: the listening address, as serve does)"
    if updates:
        settings = settings.model_copy(update=updates)
    _print_settings(settings, public_url_note, workers)
    for warning in unknown_variables(os.environ):
        click.echo(f"devicelink: warning: {warning}", err=True)
    unshared = settings.unshared_limits(workers)
    if unshared and settings.is_development():
        click.echo(f"devicelink: warning: {unshared}", err=True)
    try:
        settings.check(workers=workers)
    except ConfigurationError as exc:
        click.echo("", err=True)
        click.echo(f"devicelink: {exc}", err=True)
        sys.exit(1)
    upstream = asyncio.run(_upstream_problems(settings))
    if upstream:
        _refuse(upstream, "upstream sign-in would fail")
    click.echo("\nconfiguration OK: devicelink serve would start with it")


def _print_settings(settings: Settings, public_url_note: str, workers: int) -> None:
    explicit = settings.model_fields_set
    width = max(len(name) for name in Settings.model_fields) + len("DEVICELINK_")
    for name in Settings.model_fields:
        variable = f"DEVICELINK_{name.upper()}"
        note = ""
        if name == "public_url":
            note = public_url_note
        elif name not in explicit and getattr(settings, name) is not None:
            note = " (default)"
        click.echo(f"{variable:<{width}}  {describe(settings, name)}{note}")
    click.echo(f"{'development':<{width}}  {'yes' if settings.is_development() else 'no'}")
    per_worker = settings.max_connections_per_worker()
    if per_worker is None:
        return
    total = per_worker * workers
    processes = "worker" if workers == 1 else "workers"
    click.echo(
        f"{'postgres connections':<{width}}  at most {per_worker} per worker, "
        f"{total} for {workers} {processes}"
    )
    if total > POSTGRES_DEFAULT_AVAILABLE:
        click.echo(
            f"devicelink: warning: {total} connections to PostgreSQL from this machine alone "
            f"exceed the {POSTGRES_DEFAULT_AVAILABLE} its defaults allow (max_connections 100, "
            "3 reserved for superusers): raise max_connections, or lower "
            "DEVICELINK_DATABASE_POOL_SIZE, DEVICELINK_DATABASE_MAX_OVERFLOW and "
            "DEVICELINK_FAST_PATH_POOL_SIZE (docs/deploy.md, Connections to PostgreSQL)",
            err=True,
        )


async def _upstream_problems(settings: Settings) -> list[str]:
    """The upstream provider's discovery document, read as sign-in will read it (a
    warning when it cannot be read from here: serve would start all the same)."""
    authenticator = oidc_authenticator(settings)
    if not isinstance(authenticator, OidcAuthenticator):
        return []
    try:
        problems = await authenticator.discovery_problems()
    finally:
        await authenticator.aclose()
    if problems is None:
        click.echo(
            f"devicelink: warning: the upstream provider {settings.oidc_issuer} could not be "
            "reached from here to check its discovery document",
            err=True,
        )
        return []
    return problems


def _refuse(problems: list[str], what: str = "refusing to start") -> None:
    click.echo(f"devicelink: {what}:\n  - " + "\n  - ".join(problems), err=True)
    sys.exit(1)
