"""Browser sessions of the sign-in pages: anonymous in the cookie alone until a sign-in
(the sign-in form's CSRF token derives from the cookie's token), then rotated into a
new signed-in session, ended on sign-out. Signed-in sessions are kept in the database,
so any server process can serve any request."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from devicelink.core.codes import CodeHasher
from devicelink.core.models import BrowserSession, Identity, User
from devicelink.core.names import NAME_LENGTH, printable_name
from devicelink.core.ports import LoginFailed, Store, Transaction
from devicelink.service.clock import Clock, utc_now

ANONYMOUS_LIFETIME = 3600


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session and the secret token its cookie carries."""

    token: str
    record: BrowserSession
    user: User | None = None
    saved: bool = True
    """False for an anonymous session that lives in its cookie alone
    (:meth:`BrowserSessions.unsaved`)."""


class BrowserSessions:
    def __init__(
        self, store: Store, hasher: CodeHasher, *, lifetime: int, clock: Clock = utc_now
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._lifetime = lifetime
        self._clock = clock

    def csrf_token(self, session: OpenSession) -> str:
        return self._hasher.csrf_token(session.token)

    def check_csrf(self, session: OpenSession | None, presented: str | None) -> bool:
        """``presented`` is the session's CSRF token, as this process or one with a
        previous secret (a rotation in progress) put it in a form."""
        if session is None or not presented:
            return False
        if secrets.compare_digest(self.csrf_token(session), presented):
            return True
        return any(
            secrets.compare_digest(previous.csrf_token(session.token), presented)
            for previous in self._hasher.previous
        )

    async def load(self, token: str | None) -> OpenSession | None:
        """The live session for a cookie token, with its user if signed in and enabled."""
        if not token or len(token) > 128:
            return None
        now = self._clock()
        async with self._store.transaction() as tx:
            record = await tx.browser_sessions.get(self._hasher.session_token(token), now=now)
            for previous in self._hasher.previous:  # a rotation in progress
                if record is not None:
                    break
                record = await tx.browser_sessions.get(previous.session_token(token), now=now)
            if record is None:
                return None
            user = await tx.users.get(record.user_id) if record.user_id is not None else None
        if user is not None and user.disabled:
            user = None
        return OpenSession(token=token, record=record, user=user)

    def unsaved(self, token: str | None = None) -> OpenSession:
        """An anonymous session that lives in its cookie alone: its token's CSRF token
        protects the sign-in form, and no row is written until one is needed (a
        sign-in, or data to keep), so visits of the sign-in page cost nothing stored.
        ``token``: the browser's cookie when it names no row (a new token otherwise)."""
        if not token or len(token) > 128 or not token.isascii() or not token.isprintable():
            token = secrets.token_urlsafe(32)
        now = self._clock()
        record = BrowserSession(
            id=0,
            user_id=None,
            data={},
            created_at=now,
            expires_at=now + timedelta(seconds=ANONYMOUS_LIFETIME),
        )
        return OpenSession(token=token, record=record, saved=False)

    async def _create(
        self,
        user: User | None,
        data: Mapping[str, str],
        lifetime: int,
        *,
        token: str | None = None,
    ) -> OpenSession:
        token = token or secrets.token_urlsafe(32)
        now = self._clock()
        async with self._store.transaction() as tx:
            record = await tx.browser_sessions.add(
                self._hasher.session_token(token),
                user_id=user.id if user else None,
                data=data,
                now=now,
                expires_at=now + timedelta(seconds=lifetime),
            )
        return OpenSession(token=token, record=record, user=user)

    async def save_data(self, session: OpenSession, data: Mapping[str, str]) -> OpenSession:
        if not session.saved:  # its row, under the cookie's token, now that it is needed
            return await self._create(None, data, ANONYMOUS_LIFETIME, token=session.token)
        async with self._store.transaction() as tx:
            await tx.browser_sessions.set_data(session.record.id, data)
        record = BrowserSession(
            id=session.record.id,
            user_id=session.record.user_id,
            data=dict(data),
            created_at=session.record.created_at,
            expires_at=session.record.expires_at,
        )
        return OpenSession(token=session.token, record=record, user=session.user)

    async def sign_in(self, previous: OpenSession | None, identity: Identity) -> OpenSession:
        """Map the identity to a user and open a signed-in session under a NEW token
        (the anonymous one is deleted), so a planted session id is worthless."""
        now = self._clock()
        async with self._store.transaction() as tx:
            if identity.user_id is not None:
                user = await tx.users.get(identity.user_id)
            else:
                user = await account_of(tx, identity, now=now)
            if user is None or user.disabled:
                raise LoginFailed("this account cannot sign in")
            if previous is not None and previous.saved:
                await tx.browser_sessions.delete(previous.record.id)
        return await self._create(user, {}, self._lifetime)

    async def follow_name(self, session: OpenSession, identity: Identity) -> OpenSession:
        """The session's user, whom the upstream or the host now calls by another name:
        the account keeps the new name, the session stays."""
        assert session.user is not None
        name = shown_name(identity)
        async with self._store.transaction() as tx:
            await tx.users.set_display_name(session.user.id, name)
        user = replace(session.user, display_name=name)
        return OpenSession(token=session.token, record=session.record, user=user)

    async def sign_out(self, session: OpenSession) -> None:
        if not session.saved:
            return
        async with self._store.transaction() as tx:
            await tx.browser_sessions.delete(session.record.id)


async def account_of(tx: Transaction, identity: Identity, *, now: datetime) -> User:
    """The account of an upstream's or the host's user, found by ``provider`` and
    ``subject`` (the user's unique key there; its name need not be unique) with its
    display name brought up to date, or created at its first sign-in under a free
    account name (:func:`free_username`)."""
    name = shown_name(identity)
    for _attempt in range(3):
        user = await tx.users.get_by_subject(identity.provider, identity.subject)
        if user is not None:
            if user.display_name != name and not user.disabled:
                await tx.users.set_display_name(user.id, name)
                user = replace(user, display_name=name)
            return user
        username = await free_username(tx, identity, name)
        try:
            return await tx.users.add(
                username,
                None,
                now,
                provider=identity.provider,
                subject=identity.subject,
                display_name=name,
            )
        except ValueError:
            continue  # a sign-in at the same moment took the name, or made the account
    raise LoginFailed("this account cannot sign in at the moment; try again")


def shown_name(identity: Identity) -> str:
    """The name the upstream or the host gives the user, if it is printable and not too
    long (:func:`devicelink.core.names.printable_name`); else ``user``, which
    :func:`free_username` tells apart by a suffix."""
    return printable_name(identity.username) or "user"


async def free_username(tx: Transaction, identity: Identity, name: str) -> str:
    """The name itself when no account has it (up to case and width:
    :func:`devicelink.core.names.name_key`), else the name and a suffix derived from
    the user's provider and subject (``sam~1f0c2e9a``): the same user always gets the
    same one, and ``sub`` tells apart two users the host gives one name, or a user who
    calls themself ``Admin`` from the local ``admin``."""
    if await tx.users.get_by_username(name) is None:
        return name
    digest = hashlib.sha256(f"{identity.provider}\0{identity.subject}".encode()).hexdigest()
    for size in (8, 16, 64):
        candidate = f"{name[: NAME_LENGTH - size - 1]}~{digest[:size]}"
        if await tx.users.get_by_username(candidate) is None:
            return candidate
    raise LoginFailed(f"no free account name for {name!r}; ask an administrator")
