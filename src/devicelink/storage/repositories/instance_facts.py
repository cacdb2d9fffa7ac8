"""What a deployment must agree on: :class:`devicelink.core.ports.InstanceFacts`."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from devicelink.core.codes import SECRET_FINGERPRINT
from devicelink.storage.repositories.base import Repository
from devicelink.storage.tables import instance_facts

_f = instance_facts


def is_database_secret(fingerprint: str) -> ColumnElement[bool]:
    """True while the database's secret is the one of ``fingerprint``: the condition
    under which a hash found under a previous secret is rewritten (see
    :data:`devicelink.core.codes.SECRET_FINGERPRINT`)."""
    return exists().where(_f.c.name == SECRET_FINGERPRINT, _f.c.value == fingerprint)


class SqlInstanceFacts(Repository):
    __slots__ = ()

    async def claim(self, name: str, value: str) -> str:
        dialect_insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        await self._conn.execute(
            dialect_insert(_f).values(name=name, value=value).on_conflict_do_nothing()
        )
        stored = await self._conn.execute(select(_f.c.value).where(_f.c.name == name))
        return str(stored.scalar_one())

    async def get(self, name: str) -> str | None:
        stored = await self._conn.execute(select(_f.c.value).where(_f.c.name == name))
        value = stored.scalar_one_or_none()
        return None if value is None else str(value)

    async def replace(self, name: str, value: str) -> None:
        dialect_insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        statement = dialect_insert(_f).values(name=name, value=value)
        await self._conn.execute(
            statement.on_conflict_do_update(index_elements=[_f.c.name], set_={"value": value})
        )
