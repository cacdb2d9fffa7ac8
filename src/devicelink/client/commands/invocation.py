"""What every auth command shares: the host CLI's settings (:class:`AuthConfig`), the
replacements tests pass in (:class:`ClientHooks`), one run of a command
(:class:`Invocation`), and the Click command class that binds a command to its settings
(:class:`AuthCommand`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from devicelink.client.api import DEFAULT_SERVER, BrowserOpener, LoginMethod, resolve_server
from devicelink.client.commands.failures import ENDINGS, failure_of
from devicelink.client.commands.output import Output
from devicelink.client.http import DEFAULT_CLIENT_ID, DeviceFlowClient, machine_name
from devicelink.client.revocation import ClientFor
from devicelink.client.store import CredentialStore


@dataclass(frozen=True)
class AuthConfig:
    """What a host CLI decides for its users: the server, its client id, and the names
    under which keys and settings live (keyring service, environment variables)."""

    server: str = DEFAULT_SERVER
    client_id: str | None = DEFAULT_CLIENT_ID
    scope: str | None = None
    keyring_service: str = "devicelink"
    env_prefix: str = "DEVICELINK"
    user_agent: str | None = None
    """The host CLI's product token (``acme-cli/2.1``), sent before devicelink's in the
    User-Agent, so the confirm page names the host's CLI."""
    method: LoginMethod = "auto"
    """How ``login`` signs in (``devicelink.client.api.choose_method``); its
    ``--device-code`` and ``--no-browser`` force the device flow."""

    @property
    def server_env(self) -> str:
        return f"{self.env_prefix}_SERVER"

    @property
    def token_env(self) -> str:
        return f"{self.env_prefix}_TOKEN"


@dataclass(frozen=True)
class ClientHooks:
    """Replacements for the outside world, for tests and embedding: pass one as the root
    context's ``obj`` (``CliRunner().invoke(group, args, obj=ClientHooks(...))``).

    ``transport`` carries every HTTP request (e.g. ``httpx.MockTransport``), ``sleep``
    replaces ``time.sleep`` between polls, ``browser`` replaces opening a browser,
    ``config_dir`` the credential store's directory, ``browser_env`` the environment
    consulted for the browser decision (:func:`~devicelink.client.api.browser_plausible`),
    ``now`` the wall clock that dates keys and decides whether they have expired.
    """

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] | None = None
    browser: BrowserOpener | None = None
    config_dir: Path | None = None
    browser_env: dict[str, str] | None = None
    now: Callable[[], datetime] | None = None


class Invocation:
    """One run of an auth command: its Click context, the host's settings, the hooks,
    and where it speaks."""

    def __init__(self, ctx: click.Context, config: AuthConfig, output: Output) -> None:
        self.ctx = ctx
        self.config = config
        self.hooks = ctx.find_object(ClientHooks) or ClientHooks()
        self.output = output
        self.server_given: str | None = None
        """The server of ``--server`` (normalised), which every command a hint suggests
        keeps; None when it was not given."""

    def now(self) -> datetime:
        """The wall clock, in UTC (the hooks' when given)."""
        return self.hooks.now() if self.hooks.now is not None else datetime.now(UTC)

    @property
    def login_command(self) -> str:
        """``login`` as the user types it here: ``devicelink login``, ``mycli auth login``."""
        return self.command_line("login")

    def command_line(self, verb: str) -> str:
        """The auth command ``verb`` as the user types it here (``mycli auth logout``),
        with the ``--server`` this one was given (``devicelink login --server URL``)."""
        parent = self.ctx.parent
        line = f"{(parent or self.ctx).command_path} {verb}"
        return line if self.server_given is None else f"{line} --server {self.server_given}"

    def store(self, *, warn: bool = False) -> CredentialStore:
        """The credential store; its warning that no keyring works (and keys go to a file)
        is shown by ``login`` only, where it matters, not on every ``token`` of a script,
        and once (the store remembers it)."""
        return CredentialStore(
            service=self.config.keyring_service,
            config_dir=self.hooks.config_dir,
            warn=self.output.store_warning if warn else None,
            token_env=self.config.token_env,
        )

    def target(self, explicit: str | None, store: CredentialStore) -> str:
        """The server to talk to (``--server``, the environment, the last one, the default)."""
        config = self.config
        target = resolve_server(
            explicit, store=store, env_var=config.server_env, default=config.server
        )
        if explicit is not None and explicit.strip():
            self.server_given = target
        return target

    def client_for(self, target: str) -> ClientFor:
        """Clients of ``target`` for revoking a key with its own client id (a key without
        one: the host's)."""
        return lambda client_id: self.client(target, client_id or self.config.client_id)

    def client(
        self, target: str, client_id: str | None, scope: str | None = None
    ) -> DeviceFlowClient:
        return DeviceFlowClient(
            target,
            client_id or None,
            scope=scope or None,
            transport=self.hooks.transport,
            sleep=self.hooks.sleep or time.sleep,
            user_agent=self.config.user_agent,
            host=machine_name(),  # the key's name on the server says which computer
        )


class AuthCommand(click.Command):
    """An auth command bound to the host CLI's :class:`AuthConfig`.

    ``run(invocation, **options)`` does the work; its docstring is the help, where
    ``{cmd}`` becomes the command as typed (``mycli auth token``). What it raises of
    :data:`~devicelink.client.commands.failures.ENDINGS` becomes a message (or the
    ``--json`` error object) and the exit code.
    """

    def __init__(
        self,
        name: str,
        config: AuthConfig,
        run: Callable[..., None],
        params: list[click.Parameter],
    ) -> None:
        super().__init__(name, callback=self._invoke, params=params, help=run.__doc__)
        self.config = config
        self.run = run

    def _invoke(self, **options: Any) -> None:
        ctx = click.get_current_context()
        invocation = Invocation(ctx, self.config, Output(as_json=bool(options.get("as_json"))))
        try:
            self.run(invocation, **options)
        except ENDINGS as exc:
            failure = failure_of(exc)
            invocation.output.failure(failure)
            ctx.exit(int(failure.code))

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        original = self.help
        if original:
            self.help = original.replace("{cmd}", ctx.command_path)
        try:
            super().format_help_text(ctx, formatter)
        finally:
            self.help = original


def server_option(config: AuthConfig) -> click.Option:
    return click.Option(
        ["--server"],
        metavar="URL",
        default=None,
        help=(
            f"The server [env: {config.server_env}; default: the server last logged in "
            f"to or chosen with switch, else {config.server}]."
        ),
    )


def force_option(help: str) -> click.Option:  # Click's own name for it
    return click.Option(["--force"], is_flag=True, help=help)


def json_option() -> click.Option:
    return click.Option(
        ["--json", "as_json"], is_flag=True, help="Print one JSON object on standard output."
    )


__all__ = [
    "AuthCommand",
    "AuthConfig",
    "ClientHooks",
    "Invocation",
    "force_option",
    "json_option",
    "server_option",
]
