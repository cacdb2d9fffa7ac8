"""Authorization codes of same-device sign-in:
:class:`devicelink.core.ports.AuthorizationCodeRepository`.

A code is redeemed by one ``UPDATE ... WHERE redeemed_at IS NULL`` whose row count says
whether this request was the one; its key is attached in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from devicelink.core.authcode import AuthorizationCode, NewAuthorizationCode
from devicelink.core.ports import DuplicateCode
from devicelink.storage.repositories.base import Repository
from devicelink.storage.rows import authorization_code_from_row, columns_of, scope_text
from devicelink.storage.tables import authorization_codes

_t = authorization_codes

# Every column but the code hash, which is only ever looked up, never read back.
_COLUMNS = tuple(column for column in _t.c if column.name != "code_hash")


class SqlAuthorizationCodeRepository(Repository):
    __slots__ = ()

    async def add(self, new: NewAuthorizationCode) -> AuthorizationCode:
        dialect_insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        added = await self._first(
            dialect_insert(_t)
            .values(columns_of(new, scope=scope_text(new.scope)))
            .on_conflict_do_nothing()
            .returning(*_COLUMNS),
            authorization_code_from_row,
        )
        if added is None:
            raise DuplicateCode
        return added

    async def get(self, code_hash: bytes) -> AuthorizationCode | None:
        return await self._first(
            select(*_COLUMNS).where(_t.c.code_hash == code_hash), authorization_code_from_row
        )

    async def redeem(self, code_id: int, *, now: datetime) -> bool:
        return await self._changed_one_row(
            update(_t)
            .where(_t.c.id == code_id, _t.c.redeemed_at.is_(None), _t.c.expires_at > now)
            .values(redeemed_at=now)
        )

    async def attach_key(self, code_id: int, api_key_id: int) -> bool:
        return await self._changed_one_row(
            update(_t)
            .where(_t.c.id == code_id, _t.c.redeemed_at.is_not(None), _t.c.api_key_id.is_(None))
            .values(api_key_id=api_key_id)
        )
