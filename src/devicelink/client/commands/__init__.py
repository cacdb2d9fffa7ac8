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

The exit codes are :class:`ExitCode`; what goes to standard output and standard error,
and the ``--json`` contract, are in ``output`` and docs/cli.md. Each command is a function
of its own module (``login``, ``status``, ``logout``) that receives an
:class:`~devicelink.client.commands.invocation.Invocation`.
"""

from __future__ import annotations

import click

from devicelink.client.api import DEFAULT_SERVER, LOGIN_METHODS, LoginMethod
from devicelink.client.commands.failures import ExitCode
from devicelink.client.commands.invocation import (
    AuthCommand,
    AuthConfig,
    ClientHooks,
    force_option,
    json_option,
    server_option,
)
from devicelink.client.commands.login import login_command
from devicelink.client.commands.logout import logout
from devicelink.client.commands.status import status, token
from devicelink.client.commands.switch import switch
from devicelink.client.http import DEFAULT_CLIENT_ID, user_agent_header


def auth_commands(config: AuthConfig) -> list[click.Command]:
    """``login``, ``status``, ``token``, ``logout`` and ``switch`` wired to ``config``
    (``login``, with options of its own, is built in its module)."""
    return [
        login_command(config),
        AuthCommand(
            "status",
            config,
            status,
            [
                server_option(config),
                click.Option(
                    ["--all", "all_servers"],
                    is_flag=True,
                    help="List every server with a stored key, where each key is, and the "
                    "default (from this computer, asking no server).",
                ),
                json_option(),
            ],
        ),
        AuthCommand("token", config, token, [server_option(config)]),
        AuthCommand(
            "logout",
            config,
            logout,
            [
                server_option(config),
                json_option(),
                force_option(
                    "Forget the key here even when it cannot be revoked on the server "
                    "(after one try)."
                ),
            ],
        ),
        AuthCommand(
            "switch",
            config,
            switch,
            [click.Argument(["server"], metavar="SERVER"), json_option()],
        ),
    ]


def make_auth_group(
    name: str = "auth",
    *,
    server: str = DEFAULT_SERVER,
    client_id: str | None = DEFAULT_CLIENT_ID,
    scope: str | None = None,
    keyring_service: str = "devicelink",
    env_prefix: str = "DEVICELINK",
    help: str | None = None,  # Click's own name for it
    user_agent: str | None = None,
    method: LoginMethod = "auto",
) -> click.Group:
    """A Click group with ``login``, ``status``, ``token`` and ``logout`` for a host CLI.

    - ``server``: the default server (users override it with ``--server`` or
      ``{env_prefix}_SERVER``; after a login, the server last logged in to);
    - ``client_id``: the client registered on the server for this CLI
      (``devicelink clients add mycli``); ``scope``: what ``login`` asks for;
    - ``keyring_service``: the name of the keyring entries and of the configuration
      directory, so the host CLI's keys stay apart from devicelink's and other tools';
    - ``env_prefix``: ``{env_prefix}_SERVER`` and ``{env_prefix}_TOKEN`` (a key that
      overrides the stored one, for CI);
    - ``user_agent``: the host CLI's product token (``"acme-cli/2.1"``), sent before
      devicelink's in the User-Agent of every request, so the page where the user
      approves shows the host's CLI;
    - ``method``: how ``login`` signs in: ``"auto"`` (a browser on this machine when one
      can open and the server offers it, else the device flow), ``"loopback"`` or
      ``"device"``; ``login --device-code`` and ``--no-browser`` force the device flow.

    Mount it with ``main.add_command(make_auth_group(...))``; the commands' exit codes
    are :class:`ExitCode`.
    """
    user_agent_header(user_agent)  # a malformed one is refused here, not at the first login
    if method not in LOGIN_METHODS:
        raise ValueError(f"method must be one of {', '.join(LOGIN_METHODS)}, not {method!r}")
    config = AuthConfig(
        server=server,
        client_id=client_id,
        scope=scope,
        keyring_service=keyring_service,
        env_prefix=env_prefix,
        user_agent=user_agent,
        method=method,
    )
    group = click.Group(
        name,
        help=help or f"Log in to {server} through the browser, check, print or revoke the key.",
    )
    for command in auth_commands(config):
        group.add_command(command)
    return group


__all__ = ["AuthConfig", "ClientHooks", "ExitCode", "auth_commands", "make_auth_group"]
