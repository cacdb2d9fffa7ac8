"""One secret per deployment (DESIGN.md, Settings): the database keeps the fingerprint
of the server secret it was first used with (:attr:`devicelink.core.codes.CodeHasher.fingerprint`,
derived from the secret, revealing nothing of it). A process started with another
secret would hash every code, session and key differently, answering ``invalid_grant``
to pending codes and 401 to valid keys while passing its readiness probe: it refuses to
start instead.

A rotation (DEVICELINK_SECRET_KEY_FALLBACKS, docs/deploy.md) changes the secret without
ending anything, in three rolling steps from secret A to secret B:

1. every process runs A with the fallback B: it accepts what B made, makes nothing with
   it; the database's secret stays A;
2. every process runs B with the fallback A: the first to start makes B the database's
   secret and records the rotation (from A, and when); API keys and client secrets
   found under A are rewritten to B as they are used, by processes whose secret is the
   database's only (:func:`devicelink.core.codes.rewrites_under`), so a process of step
   1 still running never rewrites them back;
3. every process runs B alone, once ``devicelink secret status`` says nothing needs A.

A process of step 1 or 2 may (re)start while its step runs. Once step 2 began, a process
of step 1 refuses to start, saying so: still running, it would record uses of keys under
the old secret and make new ones with it after the count of ``devicelink secret status``
began, which would then call the old secret safe to drop while keys still need it.
Changing the secret without a rotation is :func:`adopt_secret` (``devicelink secret
adopt``), which ends what the old one protected unless the old one is kept as a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from devicelink.core.codes import SECRET_FINGERPRINT, CodeHasher
from devicelink.core.models import ApiKey, User
from devicelink.core.ports import Store, Transaction

__all__ = [
    "SECRET_FINGERPRINT",
    "SECRET_ROTATED_FROM",
    "SECRET_ROTATION_STARTED",
    "RotationReport",
    "SecretMismatch",
    "SecretState",
    "adopt_secret",
    "check_secret",
    "rotation_report",
    "secret_state",
]

SECRET_ROTATED_FROM = "secret_rotated_from"  # noqa: S105 - the name of a stored fact
"""The fingerprint of the secret the database had before its current one."""
SECRET_ROTATION_STARTED = "secret_rotation_started_at"  # noqa: S105 - the name of a stored fact
"""When the last process of a rotation's step 2 started (ISO 8601): API keys used since
are under the database's secret; those not used since may still need the previous one."""


class SecretMismatch(Exception):
    """This process's secret is not the one the database was set up with."""


@dataclass(frozen=True, slots=True)
class SecretState:
    """What the database says of its secret."""

    fingerprint: str | None
    rotated_from: str | None
    rotation_started_at: datetime | None


async def secret_state(store: Store) -> SecretState:
    async with store.transaction() as tx:
        fingerprint = await tx.instance.get(SECRET_FINGERPRINT)
        rotated_from = await tx.instance.get(SECRET_ROTATED_FROM)
        started = await tx.instance.get(SECRET_ROTATION_STARTED)
    return SecretState(
        fingerprint=fingerprint,
        rotated_from=rotated_from,
        rotation_started_at=datetime.fromisoformat(started) if started else None,
    )


async def check_secret(store: Store, hasher: CodeHasher, *, now: datetime) -> None:
    """Keep this secret's fingerprint if the database has none yet; accept the
    database's secret when it is this one or one of the fallbacks (a rotation, see the
    module's docstring), taking it over when this process is the rotation's newer side;
    refuse any other."""
    fallbacks = {previous.fingerprint for previous in hasher.previous}
    async with store.transaction() as tx:
        stored = await tx.instance.claim(SECRET_FINGERPRINT, hasher.fingerprint)
        rotated_from = await tx.instance.get(SECRET_ROTATED_FROM)
        if stored == hasher.fingerprint:
            if rotated_from in fallbacks:
                # Step 2 (re)started: what this process serves from now on is rewritten
                # under the database's secret as it is used; count from here.
                await tx.instance.replace(SECRET_ROTATION_STARTED, now.isoformat())
            return
        if stored in fallbacks:
            if rotated_from == hasher.fingerprint:
                raise SecretMismatch(
                    "this database moved on from this process's DEVICELINK_SECRET_KEY to "
                    f"its fallback (fingerprint {stored}): step 2 of a secret rotation began. "
                    "Start this process with step 2's settings: the new secret as "
                    "DEVICELINK_SECRET_KEY, this one as DEVICELINK_SECRET_KEY_FALLBACKS "
                    "(docs/deploy.md, Rotating the server secret)"
                )
            await _take_over(tx, hasher, replaced=stored, now=now)
            return
    raise SecretMismatch(
        "DEVICELINK_SECRET_KEY is not the secret this database was set up with "
        f"(its fingerprint is {hasher.fingerprint}, the database's {stored}): every "
        "process must have the same secret, or every code, session and key would be "
        "refused. Use the same DEVICELINK_SECRET_KEY everywhere; to change it, rotate it "
        "with DEVICELINK_SECRET_KEY_FALLBACKS, or see `devicelink secret adopt` "
        "(docs/deploy.md)"
    )


async def adopt_secret(store: Store, hasher: CodeHasher, *, now: datetime) -> str | None:
    """Make this secret the database's, whatever it was; the fingerprint it replaced.
    When the replaced one is among the fallbacks, this is a rotation's step 2 (and what
    it made is rewritten as it is used)."""
    async with store.transaction() as tx:
        previous = await tx.instance.claim(SECRET_FINGERPRINT, hasher.fingerprint)
        if previous != hasher.fingerprint:
            await _take_over(tx, hasher, replaced=previous, now=now)
    return None if previous == hasher.fingerprint else previous


async def _take_over(tx: Transaction, hasher: CodeHasher, *, replaced: str, now: datetime) -> None:
    await tx.instance.replace(SECRET_FINGERPRINT, hasher.fingerprint)
    await tx.instance.replace(SECRET_ROTATED_FROM, replaced)
    await tx.instance.replace(SECRET_ROTATION_STARTED, now.isoformat())


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What ``devicelink secret status`` says: which secrets are configured and stored
    (fingerprints only), and what still needs a previous secret."""

    current: str
    fallbacks: tuple[str, ...]
    state: SecretState
    waiting_keys: list[tuple[ApiKey, User]]
    """Live API keys that may still be stored under the previous secret: created before
    the rotation's last step-2 start and not used since (a key's hash can only be
    rewritten when it is presented: the database holds no key in clear)."""
    sessions_end: datetime | None
    """When the last browser session or code made under the previous secret ends."""
    confidential_clients: list[str]
    """The clients with a secret: each moves to the new secret at its first
    authenticated request; nothing records which did."""

    @property
    def step(self) -> int | None:
        """The step of docs/deploy.md's rotation this process's configuration is at
        (None: no rotation, or a configuration no server would start with)."""
        stored = self.state.fingerprint
        if stored == self.current and self.state.rotated_from in self.fallbacks:
            return 2
        if stored == self.current and self.fallbacks:
            return 1
        return None

    def previous_needed(self, now: datetime) -> bool:
        """Whether dropping the fallbacks now may end something that still works (a
        confidential client counts: nothing records whether its secret moved)."""
        ending = self.sessions_end is not None and now < self.sessions_end
        return bool(self.waiting_keys) or bool(self.confidential_clients) or ending


async def rotation_report(
    store: Store, hasher: CodeHasher, *, now: datetime, lifetimes: tuple[int, ...]
) -> RotationReport:
    """``lifetimes``: the seconds a browser session, a code or a sealed value made under
    the previous secret may live after the rotation started (the longest counts)."""
    state = await secret_state(store)
    fallbacks = tuple(previous.fingerprint for previous in hasher.previous)
    waiting: list[tuple[ApiKey, User]] = []
    clients: list[str] = []
    sessions_end = None
    started = state.rotation_started_at
    if (
        started is not None
        and state.fingerprint == hasher.fingerprint
        and state.rotated_from in fallbacks
    ):
        async with store.transaction() as tx:
            waiting = await tx.api_keys.live_unused_since(started, now=now)
            clients = [
                client.client_id for client in await tx.clients.list() if client.confidential
            ]
        sessions_end = started + timedelta(seconds=max(lifetimes, default=0))
    return RotationReport(
        current=hasher.fingerprint,
        fallbacks=fallbacks,
        state=state,
        waiting_keys=waiting,
        sessions_end=sessions_end,
        confidential_clients=clients,
    )
