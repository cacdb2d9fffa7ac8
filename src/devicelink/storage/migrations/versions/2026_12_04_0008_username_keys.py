"""account names unique after NFKC and case folding (users.username_key)

Existing accounts get their key; should two already differ only by case or width
(``Admin`` beside ``admin``), the later one's key carries its id, so both keep signing
in while no new account can take either name.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from devicelink.core.names import name_key

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_key", sa.String(length=220), nullable=True))
    users = sa.table(
        "users", sa.column("id", sa.BigInteger), sa.column("username"), sa.column("username_key")
    )
    connection = op.get_bind()
    taken: set[str] = set()
    for user_id, username in connection.execute(
        sa.select(users.c.id, users.c.username).order_by(users.c.id)
    ):
        key = name_key(username)
        if key in taken:
            key = f"{key}#{user_id}"
        taken.add(key)
        connection.execute(sa.update(users).where(users.c.id == user_id).values(username_key=key))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("username_key", existing_type=sa.String(length=220), nullable=False)
        batch_op.create_unique_constraint("uq_users_username_key", ["username_key"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_username_key", type_="unique")
        batch_op.drop_column("username_key")
