"""mycli: an example command-line tool that signs its users in with devicelink.

It mounts devicelink's login commands as ``mycli auth ...`` and has one command of its
own, ``whoami``, which calls the server's ``/api/me`` with the stored key::

    mycli auth login            # code + link, approve in the browser, key stored
    mycli auth status           # server, user, key expiry (exit 6: not logged in)
    mycli whoami                # uses the key
    curl -H "Authorization: Bearer $(mycli auth token)" https://.../api/me
    mycli auth logout           # revoke on the server, forget here

Its keys live apart from devicelink's own: keyring service ``mycli``, configuration
directory ``~/.config/mycli``, environment variables ``MYCLI_SERVER`` and ``MYCLI_TOKEN``.
"""

from __future__ import annotations

import sys

import click

from devicelink.client import (
    CredentialStore,
    DeviceFlowClient,
    DeviceFlowError,
    ExitCode,
    KeyRefused,
    ServerUnreachable,
)
from devicelink.client.api import resolve_server
from devicelink.client.commands import make_auth_group

SERVER = "http://127.0.0.1:8000"  # the operator's devicelink server
CLIENT_ID = "mycli"  # registered there with: devicelink clients add mycli --name "My CLI"
SERVICE = "mycli"
ENV_PREFIX = "MYCLI"


@click.group()
def main() -> None:
    """An example tool whose users sign in through the browser."""


main.add_command(
    make_auth_group(
        name="auth",
        server=SERVER,
        client_id=CLIENT_ID,
        keyring_service=SERVICE,
        env_prefix=ENV_PREFIX,
    )
)


@main.command()
@click.option("--server", metavar="URL", help=f"The server [env: {ENV_PREFIX}_SERVER].")
def whoami(server: str | None) -> None:
    """Ask the server who the stored key belongs to."""
    store = CredentialStore(service=SERVICE, token_env=f"{ENV_PREFIX}_TOKEN")
    target = resolve_server(server, store=store, env_var=f"{ENV_PREFIX}_SERVER", default=SERVER)
    credential = store.resolve(target)  # MYCLI_TOKEN first, then the stored key
    if credential is None:
        click.echo(f"Not logged in to {target}: run `mycli auth login`.", err=True)
        sys.exit(ExitCode.NOT_LOGGED_IN)
    try:
        with DeviceFlowClient(target, CLIENT_ID) as client:
            owner = client.whoami(credential.access_token)
    except KeyRefused:
        click.echo("The server refused the key: run `mycli auth login` again.", err=True)
        sys.exit(ExitCode.KEY_REJECTED)
    except ServerUnreachable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(ExitCode.NETWORK)
    except DeviceFlowError as exc:  # any other refusal, with a message for the user
        click.echo(f"Error: {exc}", err=True)
        sys.exit(ExitCode.ERROR)
    click.echo(f"You are {owner.get('username')} on {target} (client {owner.get('client_id')}).")


if __name__ == "__main__":
    main()
