"""same-device sign-in: grants and redirect URIs per client; authorization codes

Clients registered before this migration keep the device grant alone and no redirect
URI; the default client ``devicelink-cli`` also gets the authorization code grant and
the two loopback redirect URIs, as a fresh server creates it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grant_types", sa.Text(), server_default=DEVICE_CODE_GRANT, nullable=False)
        )
        batch_op.add_column(
            sa.Column("redirect_uris", sa.Text(), server_default=sa.text("''"), nullable=False)
        )
    clients = sa.table(
        "clients",
        sa.column("client_id", sa.String()),
        sa.column("grant_types", sa.Text()),
        sa.column("redirect_uris", sa.Text()),
    )
    op.execute(
        clients.update()
        .where(clients.c.client_id == "devicelink-cli")
        .values(
            grant_types=f"authorization_code {DEVICE_CODE_GRANT}",
            redirect_uris="http://127.0.0.1/callback http://[::1]/callback",
        )
    )
    op.create_table(
        "authorization_codes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("redirect_uri", sa.String(length=512), nullable=False),
        sa.Column("code_challenge", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("api_key_id", Id, nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_authorization_codes_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_authorization_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_authorization_codes_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authorization_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_authorization_codes_code_hash")),
    )
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorization_codes_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("authorization_codes")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("redirect_uris")
        batch_op.drop_column("grant_types")
