"""The ``devicelink`` command. Server verbs appear when the ``[server]`` extra is installed."""

from __future__ import annotations

import click

import devicelink


@click.group()
@click.version_option(devicelink.__version__, prog_name="devicelink")
def main() -> None:
    """Sign command-line tools in through the browser (OAuth 2.0 device flow)."""


try:
    from devicelink.web.commands import register as _register_server
except ImportError:  # the client-only install
    pass
else:
    _register_server(main)
