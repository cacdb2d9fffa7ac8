"""The ``devicelink`` command. Server verbs appear when the ``[server]`` extra is installed.

The server verbs are imported only when one of them runs (or for ``--help``). The console
script is ``devicelink.launcher``, which answers ``devicelink token`` with a usable key
without loading this module (nor Click), and hands every other command line to ``main``.
"""

from __future__ import annotations

import shlex
import sys
from typing import IO, Any

import click

import devicelink
from devicelink.client.commands import make_auth_group

SERVER_VERBS = ("serve", "db", "clients", "users", "keys", "audit", "config", "purge", "secret")


class ServerNotInstalled(click.ClickException):
    """A server verb on the client-only install (``pip install devicelink`` without the
    ``[server]`` extra): the command to add it, no traceback, the usage exit code."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"devicelink: {self.message}", err=True)


class DevicelinkGroup(click.Group):
    _server_loaded = False
    _server_missing: ImportError | None = None

    def _load_server_verbs(self) -> None:
        if self._server_loaded:
            return
        self._server_loaded = True
        try:
            from devicelink.admin import register
        except ImportError as missing:  # the client-only install
            if isinstance(missing, ModuleNotFoundError) and (missing.name or "").startswith(
                "devicelink."
            ):
                raise  # a module of devicelink's own: a broken install, not a missing extra
            self._server_missing = missing
            return
        register(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SERVER_VERBS:
            self._load_server_verbs()
            if self._server_missing is not None:
                missing = self._server_missing
                raise ServerNotInstalled(
                    f"`{cmd_name}` is a server command, and this install has the client only "
                    f"({missing}). Install the server with:\n"
                    f"  {shlex.quote(sys.executable)} -m pip install 'devicelink[server]'"
                )
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_server_verbs()
        return super().list_commands(ctx)


@click.group(cls=DevicelinkGroup)
@click.version_option(devicelink.__version__, prog_name="devicelink")
def main() -> None:
    """Sign command-line tools in through the browser (OAuth 2.0 device flow)."""


# The client verbs: the same factory a host CLI mounts as `mycli auth ...`, here at the top.
for _command in make_auth_group(
    "auth", client_id="devicelink-cli", keyring_service="devicelink", env_prefix="DEVICELINK"
).commands.values():
    main.add_command(_command)
