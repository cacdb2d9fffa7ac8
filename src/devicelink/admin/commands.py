"""The operator's verbs, registered on the ``devicelink`` group (``devicelink.cli``)."""

from __future__ import annotations

import click

from devicelink.admin.clients import clients
from devicelink.admin.config import config
from devicelink.admin.directory import audit, keys, users
from devicelink.admin.maintenance import purge, secret
from devicelink.admin.serve import db, serve


def register(group: click.Group) -> None:
    for command in (serve, db, clients, users, keys, audit, config, purge, secret):
        group.add_command(command)
