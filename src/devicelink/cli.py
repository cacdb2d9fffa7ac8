"""The ``devicelink`` command. Server verbs appear when the ``[server]`` extra is installed."""

from __future__ import annotations

import click

import devicelink
from devicelink.client.commands import make_auth_group


@click.group()
@click.version_option(devicelink.__version__, prog_name="devicelink")
def main() -> None:
    """Sign command-line tools in through the browser (OAuth 2.0 device flow)."""


# The client verbs: the same factory a host CLI mounts as `mycli auth ...`, here at the top.
for _command in make_auth_group(
    "auth", client_id="devicelink-cli", keyring_service="devicelink", env_prefix="DEVICELINK"
).commands.values():
    main.add_command(_command)

try:
    from devicelink.web.commands import register as _register_server
except ImportError:  # the client-only install
    pass
else:
    _register_server(main)
