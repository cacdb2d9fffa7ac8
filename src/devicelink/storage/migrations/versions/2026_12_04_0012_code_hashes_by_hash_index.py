"""device codes and user codes unique through hash indexes on PostgreSQL

Their 32-byte keyed hashes are random: inserted into B-trees, each new flow touched a
random page of two indexes that outgrew shared_buffers as the table grew (10^6 rows:
87 MB each). A hash index keeps 4 bytes of hash a row (41 MB), and an exclusion
constraint on it (``=``) keeps each code unique, as the unique constraints did; ``ON
CONFLICT DO NOTHING`` (a code drawn twice) works with either. One transaction: the
table is never without its guarantee, and it is locked while the indexes are built
(seconds at 10^6 rows). SQLite keeps its unique constraints.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"

_TABLE = "device_authorizations"
_COLUMNS = ("device_code_hash", "user_code_hash")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.drop_constraint(f"uq_{_TABLE}_{column}", _TABLE, type_="unique")
        op.create_exclude_constraint(f"ex_{_TABLE}_{column}", _TABLE, (column, "="), using="hash")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.drop_constraint(f"ex_{_TABLE}_{column}", _TABLE)
        op.create_unique_constraint(f"uq_{_TABLE}_{column}", _TABLE, [column])
