"""Same-device sign-in as use cases: check an authorization request, issue a code when
the user approves, redeem it at the token endpoint (RFC 6749 section 4.1 with RFC 7636
and RFC 8252). The rules are :mod:`devicelink.core.authcode`'s; the key is minted by
:class:`devicelink.service.issuing.Minting`, as for the device flow."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from devicelink.core import authcode
from devicelink.core.authcode import (
    AuthorizationCode,
    AuthorizationRequest,
    NewAuthorizationCode,
    Redeem,
    Refused,
    ReplayedCode,
)
from devicelink.core.codes import CodeHasher
from devicelink.core.errors import (
    InvalidGrant,
    KeyIssueRefused,
    ServerError,
    UnauthorizedClient,
)
from devicelink.core.events import DeviceLinkEvent, EventKind
from devicelink.core.models import (
    AUTHORIZATION_CODE_GRANT,
    AuditKind,
    Client,
    DeviceAuthorization,
    Status,
)
from devicelink.core.ports import DuplicateCode, KeyIssuer, Store, Transaction
from devicelink.service.clients import ClientAuthenticator, ClientCredentials, is_client_id
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import NO_EVENTS, EventSink
from devicelink.service.flows import Actor, TokenGrant
from devicelink.service.issuing import Minted, Minting
from devicelink.service.keys import revoke_key
from devicelink.service.revocations import IssuerRevocations

_CODE_ATTEMPTS = 3


class AuthorizationCodeService:
    def __init__(
        self,
        store: Store,
        hasher: CodeHasher,
        key_issuer: KeyIssuer,
        *,
        revocations: IssuerRevocations,
        clock: Clock = utc_now,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._minting = Minting(store, hasher, key_issuer)
        # Public clients name themselves (section 4.1.3); there is no default client here.
        self._clients = ClientAuthenticator(hasher, None)
        self._revocations = revocations
        self._clock = clock
        self._events = events

    async def check_request(
        self, params: Mapping[str, str], *, repeated: Collection[str] = ()
    ) -> AuthorizationRequest:
        """The authorization request, checked against its client as stored now. Raises
        :class:`devicelink.core.authcode.UnsafeRedirect` (an error page), then the
        errors to send to the redirect URI."""
        client_id = params.get("client_id")
        client: Client | None = None
        if client_id is not None and is_client_id(client_id):
            async with self._store.transaction() as tx:
                client = await tx.clients.get(client_id)
        return authcode.check_authorization_request(params, client, repeated=repeated)

    async def approve(self, request: AuthorizationRequest, *, user_id: int, actor: Actor) -> str:
        """The user approved: a new code bound to the request and the user, recorded
        (``code_issued``). Raises :class:`KeyIssueRefused` when the key issuer's
        ``check`` refuses this user (nothing is issued)."""
        now = self._clock()
        async with self._store.transaction() as tx:
            user = await tx.users.get(user_id)
            if user is None or user.disabled:
                raise KeyIssueRefused("this account can no longer sign in")
            refusal = await self._minting.check(tx, request.client, user, now)
            if refusal is not None:
                await tx.audit.record(
                    actor.event(
                        AuditKind.KEY_REFUSED,
                        now,
                        client_id=request.client.client_id,
                        detail=refusal.reason,
                    )
                )
            else:
                code = await self._add_code(tx, request, user_id, now)
                await tx.audit.record(
                    actor.event(
                        AuditKind.CODE_ISSUED,
                        now,
                        client_id=request.client.client_id,
                        detail=f"to {request.redirect_uri}"[:300],
                    )
                )
        if refusal is not None:
            raise refusal
        await self._events.emit(
            DeviceLinkEvent(
                kind=EventKind.APPROVED,
                occurred_at=now,
                user_id=user_id,
                username=actor.username,
                client_id=request.client.client_id,
            )
        )
        return code

    async def _add_code(
        self, tx: Transaction, request: AuthorizationRequest, user_id: int, now: datetime
    ) -> str:
        for _ in range(_CODE_ATTEMPTS):
            code = authcode.new_authorization_code()
            try:
                await tx.authorization_codes.add(
                    NewAuthorizationCode(
                        code_hash=self._hasher.authorization_code(code),
                        client_id=request.client.client_id,
                        user_id=user_id,
                        redirect_uri=request.redirect_uri,
                        code_challenge=request.code_challenge,
                        scope=request.scope,
                        created_at=now,
                        expires_at=authcode.code_expires_at(now),
                    )
                )
            except DuplicateCode:
                continue
            return code
        raise ServerError("could not allocate a unique code")

    async def deny(self, request: AuthorizationRequest, *, actor: Actor) -> None:
        """The user denied: recorded; nothing is issued."""
        now = self._clock()
        async with self._store.transaction() as tx:
            await tx.audit.record(
                actor.event(
                    AuditKind.DENIED,
                    now,
                    client_id=request.client.client_id,
                    detail="same-device sign-in denied",
                )
            )

    async def redeem(
        self,
        creds: ClientCredentials,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        ip: str | None,
        user_agent: str | None,
    ) -> TokenGrant:
        """RFC 6749 section 4.1.3: the key for a code, once. Raises ``invalid_grant``
        for every code that may not be redeemed here; :class:`ReplayedCode` for one
        already redeemed, once the key it issued has been revoked (section 4.1.2)."""
        now = self._clock()
        code_hash = self._hasher.authorization_code(code[:512])
        queued: list[int] = []
        replayed: ReplayedCode | None = None
        minted: Minted | None = None
        try:
            async with self._clients.transaction(self._store) as tx:
                client = await self._clients.authenticate(tx, creds)
                if AUTHORIZATION_CODE_GRANT not in client.grant_types:
                    raise UnauthorizedClient("this client may not use the authorization code grant")
                found = await tx.authorization_codes.get(code_hash)
                for previous in self._hasher.previous:  # a rotation of the secret
                    if found is not None:
                        break
                    code_hash = previous.authorization_code(code[:512])
                    found = await tx.authorization_codes.get(code_hash)
                decision = authcode.decide_redemption(
                    found,
                    client_id=client.client_id,
                    redirect_uri=redirect_uri,
                    code_verifier=code_verifier,
                    now=now,
                )
                if isinstance(decision, Refused):
                    raise decision.error
                assert found is not None
                if isinstance(decision, Redeem) and await tx.authorization_codes.redeem(
                    found.id, now=now
                ):
                    minted = await self._mint(tx, client, found, now, ip, user_agent)
                else:
                    # Redeemed before, or by a request that got there first: read what
                    # that one issued (committed by now) and revoke it.
                    current = await tx.authorization_codes.get(code_hash)
                    await self._revoke_issued(tx, current or found, now, ip, queued)
                    replayed = ReplayedCode()
        except KeyIssueRefused as refusal:
            raise InvalidGrant(refusal.description) from None
        if replayed is not None:
            await self._revocations.deliver(queued)
            raise replayed
        assert minted is not None
        await self._events.emit(minted.event(now))
        return TokenGrant(
            access_token=minted.issued.access_token,
            expires_in=None
            if minted.issued.expires_at is None
            else max(0, int((minted.issued.expires_at - now).total_seconds())),
            scope=minted.key.scope,
        )

    async def _mint(
        self,
        tx: Transaction,
        client: Client,
        code: AuthorizationCode,
        now: datetime,
        ip: str | None,
        user_agent: str | None,
    ) -> Minted:
        user = await tx.users.get(code.user_id)
        if user is None or user.disabled:
            raise InvalidGrant("the approving account can no longer sign in")
        # What the key issuer is told of the grant: a device authorization's shape, the
        # code's id and bindings, the requesting application's address and user agent.
        grant = DeviceAuthorization(
            id=code.id,
            client_id=code.client_id,
            scope=code.scope,
            status=Status.CONSUMED,
            created_at=code.created_at,
            expires_at=code.expires_at,
            interval=0,
            user_id=code.user_id,
            approved_at=code.created_at,
            consumed_at=now,
            request_ip=ip,
            user_agent=(user_agent or None) and user_agent[:512],
        )
        minted = await self._minting.mint(tx, client, user, grant, now, ip, from_device_flow=False)
        await tx.authorization_codes.attach_key(code.id, minted.key.id)
        await tx.audit.record(
            Actor(
                user_id=user.id, username=user.username, ip=ip, user_agent=grant.user_agent
            ).event(
                AuditKind.CODE_REDEEMED, now, client_id=client.client_id, api_key_id=minted.key.id
            )
        )
        return minted

    async def _revoke_issued(
        self,
        tx: Transaction,
        code: AuthorizationCode,
        now: datetime,
        ip: str | None,
        queued: list[int],
    ) -> None:
        key = await tx.api_keys.get(code.api_key_id) if code.api_key_id is not None else None
        owner = await tx.users.get(code.user_id)
        if key is not None:
            await revoke_key(
                tx,
                key,
                owner_name=owner.username if owner else None,
                now=now,
                ip=ip,
                detail="its authorization code was used again (RFC 6749 section 4.1.2)",
                queued=queued,
            )
        await tx.audit.record(
            Actor(user_id=code.user_id, username=owner.username if owner else None, ip=ip).event(
                AuditKind.CODE_REPLAYED,
                now,
                client_id=code.client_id,
                api_key_id=code.api_key_id,
            )
        )
