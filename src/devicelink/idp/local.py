"""Local accounts: a username and an argon2 password hash in devicelink's own table."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from devicelink.core.models import Identity
from devicelink.core.ports import LoginFailed, LoginRedirect, Store

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as much time as a
# wrong password and response times do not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("devicelink-no-such-user")

LOCAL_LOGIN_PATH = "/login"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class LocalAccounts:
    """The :class:`devicelink.core.ports.Authenticator` of local accounts: the "redirect"
    is this server's own sign-in form; the "callback" is that form's post."""

    name = "local"
    label = "Sign in"

    def __init__(self, store: Store) -> None:
        self._store = store

    async def login_redirect(self, *, callback_url: str) -> LoginRedirect:
        return LoginRedirect(url=LOCAL_LOGIN_PATH)

    async def identity_from_callback(
        self, params: Mapping[str, str], *, transient: Mapping[str, str], callback_url: str
    ) -> Identity:
        username = params.get("username", "").strip()
        password = params.get("password", "")
        if not username or not password or len(username) > 200 or len(password) > 1024:
            raise LoginFailed("enter your username and password")
        if not username.isprintable() or "\x00" in password:
            raise LoginFailed("wrong username or password")
        async with self._store.transaction() as tx:
            user = await tx.users.get_by_username(username)
        stored = user.password_hash if user is not None and user.provider == "local" else None
        # argon2 takes tens of milliseconds by design: keep it off the event loop.
        valid = await asyncio.to_thread(verify_password, stored, password)
        if not valid or user is None or user.disabled:
            raise LoginFailed("wrong username or password")
        return Identity(
            provider="local", subject=str(user.id), username=user.username, user_id=user.id
        )
