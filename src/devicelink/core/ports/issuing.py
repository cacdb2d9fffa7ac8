"""The key issuer, pluggable by an embedding application."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from devicelink.core.models import (
    ApiKey,
    Client,
    DeviceAuthorization,
    IssuedKey,
    User,
)
from devicelink.core.ports.repositories import Transaction


class KeyIssuer(Protocol):
    """Mints the API key a device receives, and revokes it.

    The default mints devicelink's own ``dlk_`` keys. An embedding application can plug
    in its own key system instead. devicelink keeps a keyed hash of every issued key
    (whatever its shape) and the issuer's ``external_id`` for it, so the key is answered
    by ``/api/me``, introspection and revocation like devicelink's own, and the user's
    connected-devices page lists the device.

    - ``issue`` creates the key, inside the poll's transaction ``tx``: the key, the
      consumed authorization and the audit line commit together or not at all. Raising
      :class:`devicelink.core.errors.KeyIssueRefused` denies the authorization (the
      device gets ``access_denied`` with the reason); raising anything else rolls the
      poll back and answers ``server_error``, and the device stops polling.
    - ``revoke`` is called once a revocation has committed, from any door (the device's
      logout, the devices page, the operator's ``keys revoke`` and ``users disable``),
      in a transaction of its own that also removes the revocation from the outbox
      (:class:`IssuerRevocationRepository`). Raising leaves it pending: it is retried
      later by the host process. Called at least once per revoked key, so it should
      tolerate a key it already revoked.

    Optional members, looked up by name:

    - ``key_prefix: str`` or ``is_well_formed(presented: str) -> bool``: the shape of
      the issuer's keys, checked before any lookup (see
      :func:`devicelink.core.apikeys.worth_a_lookup`); ``dlk_`` keys are always
      checked by their checksum;
    - ``async check(tx, *, user, client, now) -> None``: called when the user presses
      Approve; raising ``KeyIssueRefused`` there denies the request before any key
      exists, and the page tells the user why. It should only read.
    """

    async def issue(
        self,
        tx: Transaction,
        *,
        user: User,
        client: Client,
        authorization: DeviceAuthorization,
        now: datetime,
    ) -> IssuedKey: ...

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None: ...
