"""One secret per deployment (DESIGN.md, Settings): the database keeps the fingerprint
of the server secret it was first used with (:attr:`devicelink.core.codes.CodeHasher.fingerprint`,
derived from the secret, revealing nothing of it). A process started with another
secret would hash every code, session and key differently, answering ``invalid_grant``
to pending codes and 401 to valid keys while passing its readiness probe: it refuses to
start instead. Changing the secret on purpose is :func:`adopt_secret` (``devicelink
secret adopt``), which invalidates what the old one protected.
"""

from __future__ import annotations

from devicelink.core.codes import CodeHasher
from devicelink.core.ports import Store

SECRET_FINGERPRINT = "secret_fingerprint"  # noqa: S105 - the name of a stored fact


class SecretMismatch(Exception):
    """This process's secret is not the one the database was set up with."""


async def check_secret(store: Store, hasher: CodeHasher) -> None:
    """Keep this secret's fingerprint if the database has none yet; refuse another."""
    async with store.transaction() as tx:
        stored = await tx.instance.claim(SECRET_FINGERPRINT, hasher.fingerprint)
    if stored != hasher.fingerprint:
        raise SecretMismatch(
            "DEVICELINK_SECRET_KEY is not the secret this database was set up with "
            f"(its fingerprint is {hasher.fingerprint}, the database's {stored}): every "
            "process must have the same secret, or every code, session and key would be "
            "refused. Use the same DEVICELINK_SECRET_KEY everywhere; to change it on "
            "purpose, see `devicelink secret adopt` (docs/deploy.md)"
        )


async def adopt_secret(store: Store, hasher: CodeHasher) -> str | None:
    """Make this secret the database's, whatever it was; the fingerprint it replaced."""
    async with store.transaction() as tx:
        previous = await tx.instance.claim(SECRET_FINGERPRINT, hasher.fingerprint)
        await tx.instance.replace(SECRET_FINGERPRINT, hasher.fingerprint)
    return None if previous == hasher.fingerprint else previous
