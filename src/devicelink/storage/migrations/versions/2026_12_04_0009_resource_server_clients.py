"""clients.resource_server: only clients an operator marked may introspect

Existing clients are not marked: a confidential client that introspects keys (a
resource server) needs ``devicelink clients edit ID --resource-server`` after the
upgrade (or ``ClientSpec(..., resource_server=True)`` in a host application).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resource_server", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("resource_server")
