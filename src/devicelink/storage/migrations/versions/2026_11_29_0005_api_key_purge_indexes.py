"""indexes for purging old keys in bounded batches"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_api_keys_revoked_at", ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_revoked_at")
        batch_op.drop_index("ix_api_keys_expires_at")
