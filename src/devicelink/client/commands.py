"""The end-user commands ``login``, ``status``, ``token`` and ``logout``, as a Click group
that any CLI mounts (``mycli auth login``); ``devicelink`` mounts the same commands at its
top level, so there is one implementation.

::

    import click
    from devicelink.client import make_auth_group

    @click.group()
    def main() -> None: ...

    main.add_command(make_auth_group(
        name="auth", server="https://login.example.com", client_id="mycli",
        keyring_service="mycli", env_prefix="MYCLI",
    ))

Exit codes (:class:`ExitCode`), the same for every command::

    0   success (also: login when already logged in; logout when not logged in)
    1   any other error (the server refused, bad metadata, credential storage)
    2   usage error (unknown option, a --server that is not a URL)
    3   login: the request was denied in the browser
    4   login: the code expired (or was already used) before approval
    5   the server could not be reached (network failure, or it kept answering 5xx/429)
    6   status, token: not logged in to that server
    7   status, token: the key was refused by the server, or has expired
    8   logout: the key was forgotten locally but NOT revoked on the server
    130 interrupted (Ctrl-C)

Output: results go to standard output (the status report, the key, the single ``--json``
object); the code, the link, the countdown, warnings and errors go to standard error.
With ``--json`` standard output holds exactly one JSON object and standard error only
JSON lines (``{"event": "code", ...}`` first, so an agent can relay the code and link).
Colour and the spinner appear only on a terminal and never with ``NO_COLOR`` set; the
countdown is a live line on a terminal and a plain line every 30 s otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import httpx
import segno
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from devicelink.client.api import (
    DEFAULT_SERVER,
    BrowserOpener,
    browser_plausible,
    open_in_browser,
    owner_key_expiry,
    owner_name,
    resolve_server,
    scope_covers,
    sign_in,
)
from devicelink.client.credentials import (
    KEYRING,
    Credential,
    CredentialStore,
    CredentialStoreError,
)
from devicelink.client.errors import (
    AccessDenied,
    DeviceFlowError,
    DiscoveryFailed,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
    ServerRejected,
    ServerUnreachable,
)
from devicelink.client.flow import DeviceAuthorization
from devicelink.client.http import DEFAULT_CLIENT_ID, DeviceFlowClient

PLAIN_PROGRESS_EVERY = 30.0
"""Seconds between two "waiting" lines when standard error is not a terminal."""


class ExitCode(IntEnum):
    """The exit status of every auth command (see the module docstring)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DENIED = 3
    EXPIRED = 4
    NETWORK = 5
    NOT_LOGGED_IN = 6
    KEY_REJECTED = 7
    NOT_REVOKED = 8
    INTERRUPTED = 130


@dataclass(frozen=True)
class AuthConfig:
    """What a host CLI decides for its users: the server, its client id, and the names
    under which keys and settings live (keyring service, environment variables)."""

    server: str = DEFAULT_SERVER
    client_id: str | None = DEFAULT_CLIENT_ID
    scope: str | None = None
    keyring_service: str = "devicelink"
    env_prefix: str = "DEVICELINK"

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
    consulted for the browser decision (:func:`browser_plausible`).
    """

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] | None = None
    browser: BrowserOpener | None = None
    config_dir: Path | None = None
    browser_env: dict[str, str] | None = None


class CommandFailed(Exception):
    """Ends a command with ``code``; ``error`` is the machine-readable name in ``--json``."""

    def __init__(
        self, code: ExitCode, error: str, message: str, *, hint: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message
        self.hint = hint
        self.extra = extra


def failure_for(exc: DeviceFlowError) -> CommandFailed:
    """The exit code and error name of a client error."""
    message = str(exc)
    if isinstance(exc, AccessDenied):
        return CommandFailed(ExitCode.DENIED, "access_denied", message)
    if isinstance(exc, ExpiredToken):
        return CommandFailed(ExitCode.EXPIRED, "expired_token", message)
    if isinstance(exc, InvalidGrant):
        return CommandFailed(ExitCode.EXPIRED, "invalid_grant", message)
    if isinstance(exc, ServerUnreachable):
        return CommandFailed(ExitCode.NETWORK, "server_unreachable", message)
    if isinstance(exc, InvalidToken):
        return CommandFailed(ExitCode.KEY_REJECTED, "invalid_token", message)
    if isinstance(exc, DiscoveryFailed):
        return CommandFailed(ExitCode.ERROR, "discovery_failed", message)
    if isinstance(exc, InvalidClient):
        return CommandFailed(ExitCode.ERROR, "invalid_client", message)
    if isinstance(exc, ServerRejected):
        return CommandFailed(ExitCode.ERROR, exc.error or "server_error", message)
    return CommandFailed(ExitCode.ERROR, exc.error or "error", message)


# --- output ------------------------------------------------------------------------------


def colour_allowed(env: Mapping[str, str] | None = None) -> bool:
    """``NO_COLOR`` (any non-empty value, https://no-color.org) turns colour off."""
    env = os.environ if env is None else env
    return not env.get("NO_COLOR")


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") not in ("dumb", "unknown")
    except (AttributeError, ValueError):
        return False


def _console(stream: IO[str]) -> Console:
    return Console(
        file=stream,
        color_system="auto" if colour_allowed() else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,  # a link wrapped at 80 columns cannot be copied
    )


class Output:
    """Where and how a command speaks: rich text for people, JSON for programs."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self.stdout: IO[str] = sys.stdout
        self.stderr: IO[str] = sys.stderr
        self.out = _console(self.stdout)
        self.err = _console(self.stderr)
        self.colour = colour_allowed() and self.err.color_system is not None
        self.live_terminal = _is_tty(self.stderr)
        self._deferred: list[tuple[str, str]] | None = None

    # JSON
    def result(self, document: dict[str, Any]) -> None:
        """The one object of ``--json`` mode, on standard output."""
        self.stdout.write(json.dumps(document, separators=(", ", ": ")) + "\n")
        self.stdout.flush()

    def event(self, document: dict[str, Any]) -> None:
        """One JSON line on standard error (``--json`` mode)."""
        self.stderr.write(json.dumps(document, separators=(", ", ": ")) + "\n")
        self.stderr.flush()

    # people
    def say(self, *parts: str | Text | tuple[str, str]) -> None:
        self.out.print(Text.assemble(*parts))

    def tell(self, *parts: str | Text | tuple[str, str]) -> None:
        self.err.print(Text.assemble(*parts))

    def warn(self, message: str) -> None:
        self._notice("warning", message)

    def store_warning(self, message: str) -> None:
        """The credential store's own warning, which names the program already."""
        self._notice("store", message)

    def note(self, message: str) -> None:
        self._notice("note", message)

    def _notice(self, kind: str, message: str) -> None:
        if self._deferred is not None:
            self._deferred.append((kind, message))
            return
        if self.as_json:
            self.event({"event": "warning" if kind == "store" else kind, "message": message})
        elif kind == "warning":
            self.tell(("Warning: ", "bold yellow"), message)
        elif kind == "store":
            self.tell((message, "yellow"))
        else:
            self.tell(message)

    def defer_notices(self) -> None:
        """Hold warnings and notes back until :meth:`flush_notices` (login shows the code
        and the link before anything else)."""
        if self._deferred is None:
            self._deferred = []

    def flush_notices(self) -> None:
        pending, self._deferred = self._deferred or [], None
        for kind, message in pending:
            self._notice(kind, message)

    def failure(self, failure: CommandFailed) -> None:
        self.flush_notices()
        if self.as_json:
            self.result({"error": failure.error, "message": failure.message, **failure.extra})
            return
        message = failure.message.rstrip(".")
        self.tell(("Error: ", "bold red"), message[:1].upper() + message[1:] + ".")
        if failure.hint:
            self.tell(failure.hint)


# --- helpers -----------------------------------------------------------------------------


def _hooks(ctx: click.Context) -> ClientHooks:
    return ctx.find_object(ClientHooks) or ClientHooks()


def _store(
    config: AuthConfig, hooks: ClientHooks, output: Output, *, warn: bool = False
) -> CredentialStore:
    """The credential store; its warning that no keyring works (and keys go to a file) is
    shown by ``login`` only, where it matters, not on every ``token`` of a script."""
    return CredentialStore(
        service=config.keyring_service,
        config_dir=hooks.config_dir,
        warn=output.store_warning if warn else _ignore,
        token_env=config.token_env,
    )


def _ignore(message: str) -> None:
    pass


def _target(explicit: str | None, store: CredentialStore, config: AuthConfig) -> str:
    try:
        return resolve_server(
            explicit, store=store, env_var=config.server_env, default=config.server
        )
    except ValueError as exc:
        raise CommandFailed(ExitCode.USAGE, "invalid_server", str(exc)) from None


def _client(
    target: str, client_id: str | None, hooks: ClientHooks, scope: str | None = None
) -> DeviceFlowClient:
    return DeviceFlowClient(
        target,
        client_id or None,
        scope=scope or None,
        transport=hooks.transport,
        sleep=hooks.sleep or time.sleep,
    )


def _login_command(ctx: click.Context) -> str:
    parent = ctx.parent.command_path if ctx.parent is not None else ctx.command_path
    return f"{parent} login"


def stored_in(store: CredentialStore, server: str) -> str:
    """Where ``server``'s stored credential is: :data:`KEYRING` or the file's path."""
    try:
        in_file = server in store._read_credentials()  # noqa: SLF001 - the same package
    except CredentialStoreError:
        in_file = False
    return str(store.credentials_path) if in_file else KEYRING


def _describe_storage(where: str, config: AuthConfig) -> str:
    if where == KEYRING:
        return "the system keyring"
    if where == "environment":
        return f"the environment variable {config.token_env}"
    try:
        return "~/" + Path(where).relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError):
        return where


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def describe_expiry(moment: datetime | None, now: datetime | None = None) -> str:
    """``2026-12-29 10:00 UTC (in 30 days)``, or ``never``."""
    if moment is None:
        return "never"
    now = now or datetime.now(UTC)
    seconds = (moment - now).total_seconds()
    when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    span = abs(seconds)
    if span >= 2 * 86_400:
        amount = f"{round(span / 86_400)} days"
    elif span >= 2 * 3600:
        amount = f"{round(span / 3600)} hours"
    elif span >= 120:
        amount = f"{round(span / 60)} minutes"
    else:
        amount = f"{round(span)} seconds"
    return f"{when} (in {amount})" if seconds >= 0 else f"{when} ({amount} ago)"


def format_left(seconds: float) -> str:
    """``9:05``: minutes and seconds, rounded up (a code is never shown as 0:00 early)."""
    whole = max(0, int(seconds + 0.999))
    return f"{whole // 60}:{whole % 60:02d}"


@contextmanager
def _handled(ctx: click.Context, output: Output) -> Iterator[None]:
    """Turns failures, client errors, storage errors and Ctrl-C into a message (or the
    ``--json`` error object) and the exit code."""
    try:
        yield
    except CommandFailed as failure:
        _exit(ctx, output, failure)
    except DeviceFlowError as exc:
        _exit(ctx, output, failure_for(exc))
    except CredentialStoreError as exc:
        _exit(ctx, output, CommandFailed(ExitCode.ERROR, "credential_store", str(exc)))
    except KeyboardInterrupt:
        _exit(
            ctx, output, CommandFailed(ExitCode.INTERRUPTED, "interrupted", "interrupted (Ctrl-C)")
        )


def _exit(ctx: click.Context, output: Output, failure: CommandFailed) -> NoReturn:
    output.failure(failure)
    ctx.exit(int(failure.code))


# --- the QR code -------------------------------------------------------------------------


def qr_text(url: str, *, colour: bool) -> Text:
    """``url`` as a QR code in half blocks, two modules a character cell.

    With colour, dark and light modules are painted black and white explicitly (right on
    any terminal theme); without, light modules are drawn as blocks in the foreground
    colour, which suits the usual light-on-dark terminal.
    """
    qr = segno.make(url, error="l", micro=False)
    rows = [list(row) for row in qr.matrix_iter(border=2)]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    text = Text()
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        for upper, lower in zip(top, bottom, strict=True):
            if colour:
                fg = "black" if upper else "bright_white"
                bg = "black" if lower else "bright_white"
                text.append("▀", style=f"{fg} on {bg}")
            else:
                text.append(" ▄▀█"[(0 if upper else 2) + (0 if lower else 1)])
        text.append("\n")
    return text


# --- login's terminal interface ----------------------------------------------------------


class _Countdown:
    """The live line: a spinner (with colour), the time left, how to cancel."""

    def __init__(self, deadline: float, spinner: bool) -> None:
        self.deadline = deadline
        self.spinner = Spinner("dots", style="cyan") if spinner else None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        left = format_left(self.deadline - time.monotonic())
        line = Text.assemble(
            "Waiting for approval in the browser: ",
            (left, "bold"),
            " left (Ctrl-C to cancel)",
        )
        if self.spinner is None:
            yield line
        else:
            self.spinner.update(text=line)
            yield self.spinner


class LoginView:
    """What a person (or, with ``--json``, a program) sees while ``login`` runs."""

    def __init__(self, output: Output, *, server: str, qr: bool) -> None:
        self.output = output
        self.server = server
        self.qr = qr
        self.deadline: float | None = None
        self._live: Live | None = None
        self._countdown: _Countdown | None = None
        self._last_line: float | None = None

    def show_code(self, authorization: DeviceAuthorization) -> None:
        """RFC 8628 section 3.3: the code and the link, first; then the QR code."""
        out = self.output
        self.deadline = time.monotonic() + authorization.expires_in
        link = authorization.verification_uri_complete or authorization.verification_uri
        if out.as_json:
            out.event(
                {
                    "event": "code",
                    "server": self.server,
                    "user_code": authorization.user_code,
                    "verification_uri": authorization.verification_uri,
                    "verification_uri_complete": authorization.verification_uri_complete,
                    "expires_in": authorization.expires_in,
                    "interval": authorization.interval,
                }
            )
            out.flush_notices()
            return
        out.tell("To log in to ", self.server, ", open this link in a browser:")
        out.tell("")
        out.tell("    ", (link, "bold underline"))
        out.tell("")
        out.tell("and check that the page shows the code  ", (authorization.user_code, "bold cyan"))
        if authorization.verification_uri_complete:
            out.tell(
                "(or open ",
                authorization.verification_uri,
                " and type the code).",
            )
        if self.qr:
            out.tell("")
            out.err.print(qr_text(link, colour=out.colour), end="")
        out.tell("")
        out.flush_notices()

    def browser_opened(self, opened: bool) -> None:
        if self.output.as_json:
            self.output.event({"event": "browser", "opened": opened})
        elif opened:
            self.output.tell("Opened the link in your browser.")
        else:
            self.output.tell("Could not open a browser: open the link yourself.")

    def waiting(self, seconds: float, remaining: float | None) -> None:
        """Before each wait: refresh the countdown (``remaining`` is the code's time)."""
        if remaining is None or self.output.as_json:
            return
        self.deadline = time.monotonic() + remaining
        if self.output.live_terminal:
            if self._live is None:
                self._countdown = _Countdown(self.deadline, spinner=self.output.colour)
                self._live = Live(
                    self._countdown,
                    console=self.output.err,
                    refresh_per_second=4,
                    transient=True,
                )
                self._live.start()
            elif self._countdown is not None:
                self._countdown.deadline = self.deadline
            return
        now = time.monotonic()
        if self._last_line is None or now - self._last_line >= PLAIN_PROGRESS_EVERY:
            self._last_line = now
            self.output.tell(f"Waiting for approval in the browser: {format_left(remaining)} left")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


# --- the commands ------------------------------------------------------------------------


class _AuthCommand(click.Command):
    """A command whose help may name itself as typed: ``{cmd}`` becomes ``mycli auth token``."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        original = self.help
        if original:
            self.help = original.replace("{cmd}", ctx.command_path)
        try:
            super().format_help_text(ctx, formatter)
        finally:
            self.help = original


def _server_option(config: AuthConfig) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--server",
        metavar="URL",
        default=None,
        help=(
            f"The server [env: {config.server_env}; default: the server last logged in "
            f"to, else {config.server}]."
        ),
    )


_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on standard output."
)


def _existing_login(
    client: DeviceFlowClient,
    store: CredentialStore,
    target: str,
    client_id: str | None,
    scope: str | None,
    output: Output,
) -> tuple[Credential, dict[str, Any]] | None:
    """The stored credential and its owner, when it is for this client and scope and the
    server still accepts it; otherwise ``None`` (and a note saying why, where useful)."""
    credential = store.get(target)
    if credential is None:
        return None
    if (credential.client_id or None) != (client_id or None):
        return None
    if not scope_covers(credential.scope, scope):
        output.note(f"The stored key does not cover the scope {scope!r}; logging in again.")
        return None
    if credential.is_expired():
        output.note(f"The stored key for {target} has expired; logging in again.")
        return None
    try:
        owner = client.whoami(credential.access_token)
    except InvalidToken:
        output.note(f"The server no longer accepts the stored key for {target}; logging in again.")
        return None
    except ServerUnreachable:
        raise  # logging in again could not reach it either
    except DeviceFlowError:
        return None  # the login itself will say what is wrong
    return credential, owner


def _login_result(
    credential: Credential, where: str, *, already: bool, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    expires_at = (owner_key_expiry(owner) if owner else None) or credential.expires_at
    return {
        "server": credential.server,
        "user": (owner_name(owner) if owner else None) or credential.username,
        "expires_at": _iso(expires_at),
        "scope": credential.scope,
        "client_id": credential.client_id or None,
        "stored_in": where,
        "already_logged_in": already,
    }


def _revoke_replaced(
    client: DeviceFlowClient, previous: Credential | None, current: Credential, output: Output
) -> None:
    """After ``login --force``: the key it replaced is revoked, not left working."""
    if previous is None or previous.access_token == current.access_token:
        return
    try:
        client.revoke(previous.access_token)
    except DeviceFlowError as exc:
        output.warn(f"the previous key was not revoked on the server ({exc})")


def auth_commands(config: AuthConfig) -> list[click.Command]:
    """``login``, ``status``, ``token`` and ``logout`` wired to ``config``."""

    @click.command("login", cls=_AuthCommand)
    @_server_option(config)
    @click.option(
        "--client-id",
        default=config.client_id,
        show_default=True,
        help="The OAuth client id to sign in as.",
    )
    @click.option(
        "--scope",
        default=config.scope,
        help="Space-separated scopes to ask for (default: the server's).",
    )
    @click.option("--no-browser", is_flag=True, help="Do not open a browser; print the link.")
    @click.option("--qr", is_flag=True, help="Also draw the link as a QR code (for a phone).")
    @_json_option
    @click.option("--force", is_flag=True, help="Log in again even if already logged in.")
    @click.pass_context
    def login(
        ctx: click.Context,
        server: str | None,
        client_id: str | None,
        scope: str | None,
        no_browser: bool,
        qr: bool,
        as_json: bool,
        force: bool,
    ) -> None:
        """Log in through the browser and store an API key for the server.

        Prints a code and a link; open the link on any device (a phone works), sign in,
        check the code and approve. Exit codes: 0 logged in (or already), 3 denied,
        4 expired, 5 server unreachable, 130 interrupted, 1 other errors.
        """
        output = Output(as_json=as_json)
        output.defer_notices()
        hooks = _hooks(ctx)
        with _handled(ctx, output):
            store = _store(config, hooks, output, warn=True)
            target = _target(server, store, config)
            if store.from_environment(target) is not None:
                output.note(
                    f"{config.token_env} is set: commands use its key, not the one stored "
                    "by this login."
                )
            with _client(target, client_id, hooks, scope) as client:
                previous = store.get(target) if force else None
                existing = None
                if not force:
                    existing = _existing_login(client, store, target, client_id, scope, output)
                if existing is not None:
                    credential, owner = existing
                    result = _login_result(
                        credential, stored_in(store, target), already=True, owner=owner
                    )
                    output.flush_notices()
                    if as_json:
                        output.result(result)
                    else:
                        output.say(
                            ("Already logged in", "bold green"),
                            f" to {target} as ",
                            (str(result["user"] or "an unknown user"), "bold"),
                            f"; the key expires {describe_expiry(credential.expires_at)}.",
                        )
                        output.say(f"Use {_login_command(ctx)} --force to log in again.")
                    return

                view = LoginView(output, server=target, qr=qr and not as_json)
                plausible = browser_plausible(hooks.browser_env)
                opener = hooks.browser or open_in_browser

                def open_browser(url: str) -> bool:
                    opened = opener(url)
                    view.browser_opened(opened)
                    return opened

                try:
                    credential = sign_in(
                        client,
                        on_code=view.show_code,
                        on_wait=view.waiting,
                        open_browser=plausible and not no_browser,
                        browser=open_browser,
                    )
                finally:
                    view.stop()
                where = store.save(credential)
                if force:
                    _revoke_replaced(client, previous, credential, output)
            output.flush_notices()
            result = _login_result(credential, where, already=False)
            if as_json:
                output.result(result)
                return
            output.say(
                ("Logged in", "bold green"),
                f" to {target} as ",
                (str(result["user"] or "an unknown user"), "bold"),
                ".",
            )
            output.say(
                f"The key expires {describe_expiry(credential.expires_at)} and is stored in "
                f"{_describe_storage(where, config)}."
            )

    @click.command("status", cls=_AuthCommand)
    @_server_option(config)
    @_json_option
    @click.pass_context
    def status(ctx: click.Context, server: str | None, as_json: bool) -> None:
        """Show the server, the user and the key's expiry; check the key with the server.

        Exit codes: 0 logged in and the key works, 6 not logged in, 7 the key was refused
        or has expired, 5 server unreachable.
        """
        output = Output(as_json=as_json)
        hooks = _hooks(ctx)
        with _handled(ctx, output):
            store = _store(config, hooks, output)
            target = _target(server, store, config)
            credential, where = _current(ctx, store, target, config)
            with _client(target, credential.client_id or config.client_id, hooks) as client:
                try:
                    owner = client.whoami(credential.access_token)
                except InvalidToken:
                    raise CommandFailed(
                        ExitCode.KEY_REJECTED,
                        "invalid_token",
                        f"the server {target} no longer accepts the key (revoked, expired, "
                        "or its user disabled)",
                        hint=f"Run {_login_command(ctx)} to log in again.",
                        server=target,
                    ) from None
                except DeviceFlowError as exc:
                    failure = failure_for(exc)
                    failure.extra["server"] = target
                    raise failure from None
            expires_at = owner_key_expiry(owner) or credential.expires_at
            scope = owner.get("scope") if isinstance(owner.get("scope"), str) else None
            result = {
                "server": target,
                "user": owner_name(owner),
                "expires_at": _iso(expires_at),
                "scope": scope or credential.scope,
                "client_id": owner.get("client_id") or credential.client_id or None,
                "stored_in": where,
                "logged_in": True,
            }
            if as_json:
                output.result(result)
                return
            rows = [
                ("Server", target),
                ("User", str(result["user"] or "(unknown)")),
                ("Key expires", describe_expiry(expires_at)),
                ("Scope", str(result["scope"] or "(none)")),
                ("Stored in", _describe_storage(where, config)),
            ]
            for label, value in rows:
                output.say((f"{label + ':':<13}", "bold"), value)
            output.say(("Logged in", "bold green"), "; the server accepts the key.")

    @click.command("token", cls=_AuthCommand)
    @_server_option(config)
    @click.pass_context
    def token(ctx: click.Context, server: str | None) -> None:
        """Print the API key, for scripts.

        \b
            curl -H "Authorization: Bearer $({cmd})" ...

        Prints nothing on standard output when there is no usable key (exit 6 not logged
        in, 7 expired). The key in the environment variable, when set, wins.
        """
        output = Output()
        hooks = _hooks(ctx)
        with _handled(ctx, output):
            store = _store(config, hooks, output)
            target = _target(server, store, config)
            credential, _ = _current(ctx, store, target, config)
            output.stdout.write(credential.access_token + "\n")
            output.stdout.flush()

    @click.command("logout", cls=_AuthCommand)
    @_server_option(config)
    @_json_option
    @click.pass_context
    def logout(ctx: click.Context, server: str | None, as_json: bool) -> None:
        """Revoke the key on the server (RFC 7009), then forget it here.

        When the server cannot be reached or refuses, the key is still forgotten here,
        with a warning that it was not revoked, and the exit code is 8. Not logged in:
        nothing to do, exit 0.
        """
        output = Output(as_json=as_json)
        hooks = _hooks(ctx)
        with _handled(ctx, output):
            store = _store(config, hooks, output)
            target = _target(server, store, config)
            credential = store.get(target)
            if store.from_environment(target) is not None:
                output.warn(
                    f"{config.token_env} is set; its key is not revoked nor removed by logout"
                )
            if credential is None:
                if as_json:
                    output.result({"server": target, "revoked": False, "removed": False})
                else:
                    output.say(f"Not logged in to {target}; nothing to do.")
                return
            error: DeviceFlowError | None = None
            revoked = False
            with _client(target, credential.client_id or config.client_id, hooks) as client:
                try:
                    revoked = client.revoke(credential.access_token)
                except DeviceFlowError as exc:
                    error = exc
            store.delete(target)
            if error is not None:
                expiry = describe_expiry(credential.expires_at)
                raise CommandFailed(
                    ExitCode.NOT_REVOKED,
                    "not_revoked",
                    f"forgot the key for {target} here, but could not revoke it on the "
                    f"server: {error}",
                    hint=(
                        f"The key keeps working until it expires ({expiry}) unless the "
                        "server's operator revokes it."
                    ),
                    server=target,
                    revoked=False,
                    removed=True,
                    reason=failure_for(error).error,
                )
            if as_json:
                output.result({"server": target, "revoked": revoked, "removed": True})
                return
            output.say(
                ("Logged out", "bold green"),
                f" of {target}: the key was revoked on the server and removed from this computer.",
            )

    return [login, status, token, logout]


def _current(
    ctx: click.Context, store: CredentialStore, target: str, config: AuthConfig
) -> tuple[Credential, str]:
    """The key to use for ``target`` (the environment's first) and where it is; fails
    with exit 6 when there is none and 7 when it has expired."""
    from_env = store.from_environment(target)
    if from_env is not None:
        return from_env, "environment"
    credential = store.get(target)
    if credential is None:
        raise CommandFailed(
            ExitCode.NOT_LOGGED_IN,
            "not_logged_in",
            f"not logged in to {target}",
            hint=f"Run {_login_command(ctx)} to log in.",
            server=target,
        )
    if credential.is_expired():
        raise CommandFailed(
            ExitCode.KEY_REJECTED,
            "expired",
            f"the key for {target} expired {describe_expiry(credential.expires_at)}",
            hint=f"Run {_login_command(ctx)} to log in again.",
            server=target,
        )
    return credential, stored_in(store, target)


def make_auth_group(
    name: str = "auth",
    *,
    server: str = DEFAULT_SERVER,
    client_id: str | None = DEFAULT_CLIENT_ID,
    scope: str | None = None,
    keyring_service: str = "devicelink",
    env_prefix: str = "DEVICELINK",
    help: str | None = None,  # noqa: A002 - Click's own name for it
) -> click.Group:
    """A Click group with ``login``, ``status``, ``token`` and ``logout`` for a host CLI.

    - ``server``: the default server (users override it with ``--server`` or
      ``{env_prefix}_SERVER``; after a login, the server last logged in to);
    - ``client_id``: the client registered on the server for this CLI
      (``devicelink clients add mycli``); ``scope``: what ``login`` asks for;
    - ``keyring_service``: the name of the keyring entries and of the configuration
      directory, so the host CLI's keys stay apart from devicelink's and other tools';
    - ``env_prefix``: ``{env_prefix}_SERVER`` and ``{env_prefix}_TOKEN`` (a key that
      overrides the stored one, for CI).

    Mount it with ``main.add_command(make_auth_group(...))``; the commands' exit codes
    are :class:`ExitCode`.
    """
    config = AuthConfig(
        server=server,
        client_id=client_id,
        scope=scope,
        keyring_service=keyring_service,
        env_prefix=env_prefix,
    )
    group = click.Group(
        name,
        help=help or f"Log in to {server} through the browser, check, print or revoke the key.",
    )
    for command in auth_commands(config):
        group.add_command(command)
    return group


__all__ = [
    "PLAIN_PROGRESS_EVERY",
    "AuthConfig",
    "ClientHooks",
    "CommandFailed",
    "ExitCode",
    "LoginView",
    "Output",
    "auth_commands",
    "colour_allowed",
    "describe_expiry",
    "failure_for",
    "format_left",
    "make_auth_group",
    "qr_text",
    "stored_in",
]
