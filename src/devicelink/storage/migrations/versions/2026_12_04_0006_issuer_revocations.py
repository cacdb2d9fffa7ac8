"""revocations the key issuer has yet to hear of; why an authorization was denied"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "issuer_revocations",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("api_key_id", Id, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_issuer_revocations_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issuer_revocations")),
        sa.UniqueConstraint("api_key_id", name=op.f("uq_issuer_revocations_api_key_id")),
    )
    with op.batch_alter_table("issuer_revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_issuer_revocations_next_attempt_at"), ["next_attempt_at"], unique=False
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_external_id"), ["external_id"], unique=False)
    with op.batch_alter_table("device_authorizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("denial_reason", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_authorizations", schema=None) as batch_op:
        batch_op.drop_column("denial_reason")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_external_id"))
    op.drop_table("issuer_revocations")
