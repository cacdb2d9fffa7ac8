"""The device flow as use cases (RFC 8628 sections 3.1 to 3.5)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from devicelink.core import lifecycle
from devicelink.core.codes import CodeHasher, new_codes, normalise_user_code
from devicelink.core.errors import (
    AccessDenied,
    AuthorizationPending,
    InvalidGrant,
    InvalidScope,
    KeyIssueRefused,
    OAuthError,
    ServerError,
    SlowDown,
    UnauthorizedClient,
)
from devicelink.core.events import DeviceLinkEvent, EventKind
from devicelink.core.lifecycle import FlowPolicy, Verdict
from devicelink.core.models import (
    DEVICE_CODE_GRANT,
    AuditEvent,
    AuditKind,
    Client,
    DeviceAuthorization,
    NewDeviceAuthorization,
    Status,
)
from devicelink.core.ports import DuplicateCode, FastPathStore, KeyIssuer, Store, Transaction
from devicelink.service.clients import ClientAuthenticator, ClientCredentials, is_client_id
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import NO_EVENTS, EventSink
from devicelink.service.flows import Actor, TokenGrant
from devicelink.service.issuing import Minted, Minting

__all__ = [
    "ClientCredentials",
    "DeviceFlowService",
    "Review",
    "StartedFlow",
]

log = logging.getLogger(__name__)

_CODE_ATTEMPTS = 5
_POLL_ATTEMPTS = 3


DEVICE_GRANT_OFF = "this application may no longer sign in with a code (the device grant is off)"
"""Why a flow started before its client lost the device grant is denied at approval or
at its key's issuance: switching the grant off stops flows in progress too."""


@dataclass(frozen=True, slots=True)
class StartedFlow:
    """The device authorization response (RFC 8628 section 3.2), before URLs are added."""

    device_code: str
    user_code: str
    expires_in: int
    interval: int
    scope: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Review:
    """What the confirm page shows, or why it cannot be shown."""

    verdict: Verdict
    authorization: DeviceAuthorization | None = None
    client: Client | None = None
    reference: str | None = None
    """The code's reference (see :meth:`DeviceFlowService.reference`) as stored: under
    the secret that hashed it, a previous one during a rotation."""


class DeviceFlowService:
    def __init__(
        self,
        store: Store,
        hasher: CodeHasher,
        key_issuer: KeyIssuer,
        *,
        policy: FlowPolicy | None = None,
        default_client_id: str | None = None,
        clock: Clock = utc_now,
        fast_path: FastPathStore | None = None,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._minting = Minting(store, hasher, key_issuer)
        self._events = events
        self.policy = policy or FlowPolicy()
        self._clients = ClientAuthenticator(hasher, default_client_id)
        self._default_client_id = default_client_id
        self._fast_path = fast_path
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    # --- RFC 8628 sections 3.1 and 3.2 -----------------------------------------------

    async def start(
        self,
        creds: ClientCredentials,
        *,
        scope: str | None,
        request_ip: str | None,
        user_agent: str | None,
    ) -> StartedFlow:
        try:
            requested = lifecycle.parse_scope(scope)
        except ValueError:
            raise InvalidScope("scope is malformed") from None
        now = self._clock()
        user_agent = (user_agent or None) and user_agent[:512]
        client_id = self._public_client_id(creds)
        if self._fast_path is not None and client_id is not None:
            # The common case, a public client, in one statement (the flow and its
            # audit event); anything else (an unknown or confidential client, a scope
            # it may not have, a code collision) stored nothing and takes the full path.
            device_code, user_code, new = self._new_codes(
                client_id, (), now, request_ip, user_agent
            )
            granted = await self._fast_path.start_flow(new, requested_scope=requested)
            if granted is not None:
                return self._started(device_code, user_code, granted)
        async with self._clients.transaction(self._store) as tx:
            client = await self._clients.authenticate(tx, creds)
            if DEVICE_CODE_GRANT not in client.grant_types:
                # An operator switched the phishable device flow off for this client.
                raise UnauthorizedClient("this client may not use the device authorization grant")
            try:
                granted = lifecycle.granted_scope(requested, client.scopes)
            except ValueError:
                raise InvalidScope(
                    f"this client may ask for: {' '.join(client.scopes) or 'no scope'}"
                ) from None
            for _ in range(_CODE_ATTEMPTS):
                device_code, user_code, new = self._new_codes(
                    client.client_id, granted, now, request_ip, user_agent
                )
                try:
                    added = await tx.device_authorizations.add(new)
                except DuplicateCode:
                    continue
                await tx.audit.record(
                    AuditEvent(
                        kind=AuditKind.FLOW_STARTED,
                        occurred_at=now,
                        client_id=client.client_id,
                        device_authorization_id=added.id,
                        ip=request_ip,
                        user_agent=user_agent,
                    )
                )
                return self._started(device_code, user_code, granted)
        raise ServerError("could not allocate a unique code")

    def _public_client_id(self, creds: ClientCredentials) -> str | None:
        """The client a request without a secret names, if it could be a public client
        the fast path may serve; None sends it down the full path."""
        client_id = creds.client_id or self._default_client_id
        if client_id is None or creds.client_secret is not None or not is_client_id(client_id):
            return None
        return client_id

    def _new_codes(
        self,
        client_id: str,
        scope: tuple[str, ...],
        now: datetime,
        request_ip: str | None,
        user_agent: str | None,
    ) -> tuple[str, str, NewDeviceAuthorization]:
        device_code, user_code = new_codes()
        normalised = normalise_user_code(user_code)
        assert normalised is not None
        return (
            device_code,
            user_code,
            NewDeviceAuthorization(
                device_code_hash=self._hasher.device_code(device_code),
                user_code_hash=self._hasher.user_code(normalised),
                client_id=client_id,
                scope=scope,
                created_at=now,
                expires_at=self.policy.expires_at(now),
                interval=self.policy.interval,
                request_ip=request_ip,
                user_agent=user_agent,
            ),
        )

    def _started(self, device_code: str, user_code: str, scope: tuple[str, ...]) -> StartedFlow:
        return StartedFlow(
            device_code=device_code,
            user_code=user_code,
            expires_in=self.policy.code_lifetime,
            interval=self.policy.interval,
            scope=scope,
        )

    # --- RFC 8628 sections 3.4 and 3.5 -----------------------------------------------

    async def poll(
        self, creds: ClientCredentials, device_code: str, *, ip: str | None = None
    ) -> TokenGrant:
        """Answer one poll of the token endpoint; raises the section 3.5 errors.

        A public client's poll is answered by the repositories' ``poll`` (one statement
        on the fast path, else a short transaction of one read and, for a pending code,
        one compare-and-set), whatever the answer but the key; the key's issuance, a
        client that must authenticate and a poll that raced an approval take the general
        path: one transaction of the authorization read with its client, then the key or
        the compare-and-set that records the poll.
        """
        code_hash = self._hasher.device_code(device_code)
        client_id = self._public_client_id(creds)
        if client_id is not None:
            decision = await self._thin_poll(code_hash, client_id)
            if isinstance(decision, lifecycle.SlowDownTo):
                raise SlowDown(decision.interval)
            if isinstance(decision, lifecycle.KeepWaiting):
                raise AuthorizationPending()
            if isinstance(decision, lifecycle.Refuse) and not (
                # During a secret rotation an unknown code may be one hashed with a
                # previous secret: the general path looks for it under those too.
                self._hasher.previous and isinstance(decision.error, InvalidGrant)
            ):
                raise decision.error
        for _ in range(_POLL_ATTEMPTS):
            answered = await self._poll_once(code_hash, device_code, creds, self._clock(), ip)
            if isinstance(answered, TokenGrant):
                return answered
            if answered is not None:
                raise answered
            # Another request changed the record between our read and our write:
            # read it again and decide afresh.
        raise SlowDown(
            min(self.policy.interval + self.policy.slow_down_step, self.policy.max_interval)
        )

    async def _thin_poll(self, code_hash: bytes, client_id: str) -> lifecycle.PollDecision | None:
        """The repositories' ``poll`` (:data:`devicelink.core.ports.POLL_CONTRACT`): on the
        fast path's one statement when there is one, else in a transaction of its own."""
        if self._fast_path is not None:
            return await self._fast_path.poll(
                code_hash, client_id=client_id, now=self._clock(), policy=self.policy
            )
        async with self._store.transaction() as tx:
            return await tx.device_authorizations.poll(
                code_hash, client_id=client_id, now=self._clock(), policy=self.policy
            )

    async def _with_client(
        self, tx: Transaction, code_hash: bytes, device_code: str
    ) -> tuple[DeviceAuthorization, Client] | None:
        """The authorization of a device code with its client: under the current secret,
        or during a rotation a previous one (a code handed out before it)."""
        found = await tx.device_authorizations.get_with_client(code_hash)
        for previous in self._hasher.previous if found is None else ():
            found = await tx.device_authorizations.get_with_client(
                previous.device_code(device_code)
            )
            if found is not None:
                break
        return found

    async def _poll_once(
        self,
        code_hash: bytes,
        device_code: str,
        creds: ClientCredentials,
        now: datetime,
        ip: str | None,
    ) -> TokenGrant | OAuthError | None:
        """One attempt of the full path: the key, the answer to raise, or None when the
        record changed between the read and the write. Raises the final answers."""
        answer: OAuthError | None = None
        minted: Minted | None = None
        authorization: DeviceAuthorization | None = None
        try:
            async with self._clients.transaction(self._store) as tx:
                found = await self._with_client(tx, code_hash, device_code)
                authorization, owner = found if found is not None else (None, None)
                client = await self._clients.authenticate(tx, creds, known=owner)
                decision = lifecycle.decide_poll(
                    authorization, client_id=client.client_id, now=now, policy=self.policy
                )
                if isinstance(decision, lifecycle.Refuse):
                    raise decision.error
                assert authorization is not None
                if isinstance(decision, lifecycle.Issue):
                    if DEVICE_CODE_GRANT not in client.grant_types:
                        # Approved before an operator switched the device grant off
                        # for this client: no key; the device learns why.
                        raise KeyIssueRefused(DEVICE_GRANT_OFF)
                    minted = await self._minting.consume_and_issue(
                        tx, client, authorization, now, ip
                    )
                # Pending: record this poll (and the slower interval) so every process
                # judges the next poll against it; the answer goes out after the commit.
                elif await tx.device_authorizations.record_poll(
                    authorization.id,
                    previous_poll=authorization.last_polled_at,
                    now=now,
                    interval=decision.interval,
                ):
                    if isinstance(decision, lifecycle.SlowDownTo):
                        answer = SlowDown(decision.interval)
                    else:
                        answer = AuthorizationPending()
        except KeyIssueRefused as refusal:
            # Rolled back whole; the refusal is recorded on its own, then told.
            assert authorization is not None
            if await self._minting.record_refusal(authorization, refusal, now, ip):
                return AccessDenied(refusal.description)
            return None  # the record changed meanwhile: decide afresh
        if minted is None:
            return answer
        await self._events.emit(minted.event(now))  # committed: the host may hear of it
        return TokenGrant(
            access_token=minted.issued.access_token,
            expires_in=_seconds_until(minted.issued.expires_at, now),
            scope=minted.key.scope,
        )

    # --- RFC 8628 section 3.3: the user's side ---------------------------------------

    async def review(self, typed_user_code: str, *, actor: Actor | None = None) -> Review:
        """What the confirm page shows for a typed code. A code that cannot be approved
        is recorded as a wrong entry of ``actor`` (the signed-in user at the form)."""
        normalised = normalise_user_code(typed_user_code)
        now = self._clock()
        async with self._store.transaction() as tx:
            authorization, code_hash = (
                await self._by_user_code(tx, normalised) if normalised is not None else (None, b"")
            )
            verdict = lifecycle.decide_review(authorization, now=now)
            client = await tx.clients.get(authorization.client_id) if authorization else None
            if verdict is not Verdict.OK and actor is not None:
                await tx.audit.record(actor.event(AuditKind.WRONG_CODE, now))
        return Review(verdict, authorization, client, code_hash.hex() if authorization else None)

    async def _by_user_code(
        self, tx: Transaction, normalised: str
    ) -> tuple[DeviceAuthorization | None, bytes]:
        """The authorization of a typed code and the hash it is stored under: the
        current secret's, or during a rotation a previous secret's (a flow started on a
        process that had it)."""
        code_hash = self._hasher.user_code(normalised)
        authorization = await tx.device_authorizations.get_by_user_code(code_hash)
        for previous in self._hasher.previous:
            if authorization is not None:
                break
            old_hash = previous.user_code(normalised)
            authorization = await tx.device_authorizations.get_by_user_code(old_hash)
            if authorization is not None:
                code_hash = old_hash
        return authorization, code_hash

    async def approve(
        self, typed_user_code: str, *, user_id: int, actor: Actor | None = None
    ) -> Verdict:
        return await self._decide(
            typed_user_code, user_id=user_id, to_status=Status.APPROVED, actor=actor
        )

    async def deny(
        self, typed_user_code: str, *, user_id: int, actor: Actor | None = None
    ) -> Verdict:
        return await self._decide(
            typed_user_code, user_id=user_id, to_status=Status.DENIED, actor=actor
        )

    def reference(self, typed_user_code: str) -> str | None:
        """An opaque reference to a code, to keep between the confirm page and the
        decision (a browser session must not hold the code itself in clear)."""
        normalised = normalise_user_code(typed_user_code)
        return self._hasher.user_code(normalised).hex() if normalised is not None else None

    async def decide_reviewed(
        self, reference: str, *, approve: bool, user_id: int, actor: Actor | None = None
    ) -> Verdict:
        """Approve or deny the code behind a :meth:`reference`."""
        try:
            code_hash = bytes.fromhex(reference)
        except ValueError:
            return Verdict.UNKNOWN
        to_status = Status.APPROVED if approve else Status.DENIED
        return await self._decide_hash(code_hash, user_id=user_id, to_status=to_status, actor=actor)

    async def _decide(
        self, typed_user_code: str, *, user_id: int, to_status: Status, actor: Actor | None
    ) -> Verdict:
        normalised = normalise_user_code(typed_user_code)
        if normalised is None:
            return Verdict.UNKNOWN
        code_hash = self._hasher.user_code(normalised)
        if self._hasher.previous:  # a rotation: the code may be under a previous secret
            async with self._store.transaction() as tx:
                _, code_hash = await self._by_user_code(tx, normalised)
        return await self._decide_hash(code_hash, user_id=user_id, to_status=to_status, actor=actor)

    async def _decide_hash(
        self, code_hash: bytes, *, user_id: int, to_status: Status, actor: Actor | None
    ) -> Verdict:
        """Approve or deny; raises :class:`KeyIssueRefused` (after committing the denial)
        when the key issuer's ``check`` refuses an approval."""
        now = self._clock()
        who = actor or Actor(user_id=user_id)
        refusal: KeyIssueRefused | None = None
        async with self._store.transaction() as tx:
            authorization = await tx.device_authorizations.get_by_user_code(code_hash)
            verdict = lifecycle.decide_review(authorization, now=now)
            if verdict is not Verdict.OK:
                return verdict
            assert authorization is not None
            if to_status is Status.APPROVED:
                client = await tx.clients.get(authorization.client_id)
                if client is None or DEVICE_CODE_GRANT not in client.grant_types:
                    # Started before an operator switched the device grant off for this
                    # client (a phishing campaign, say): denied, the page says why.
                    refusal = KeyIssueRefused(DEVICE_GRANT_OFF)
                else:
                    refusal = await self._minting.pre_check(tx, authorization, user_id, now)
            changed = await tx.device_authorizations.transition(
                authorization.id,
                from_status=Status.PENDING,
                to_status=Status.DENIED if refusal is not None else to_status,
                now=now,
                user_id=user_id,
                reason=refusal.reason if refusal is not None else None,
            )
            if not changed:
                # Someone else decided first (a double submit, another tab): report what
                # the record says now; nothing was changed by this request.
                current = await tx.device_authorizations.get_by_user_code(code_hash)
                return lifecycle.decide_review(current, now=now)
            if refusal is not None:
                kind = AuditKind.KEY_REFUSED
            else:
                kind = AuditKind.APPROVED if to_status is Status.APPROVED else AuditKind.DENIED
            await tx.audit.record(
                who.event(
                    kind,
                    now,
                    client_id=authorization.client_id,
                    device_authorization_id=authorization.id,
                    detail=refusal.reason if refusal is not None else None,
                )
            )
        if refusal is not None:
            raise refusal
        if to_status is Status.APPROVED:
            await self._events.emit(
                DeviceLinkEvent(
                    kind=EventKind.APPROVED,
                    occurred_at=now,
                    user_id=user_id,
                    username=who.username,
                    client_id=authorization.client_id,
                    device_authorization_id=authorization.id,
                )
            )
        return Verdict.OK


def _seconds_until(moment: datetime | None, now: datetime) -> int | None:
    if moment is None:
        return None
    return max(0, int((moment - now).total_seconds()))
