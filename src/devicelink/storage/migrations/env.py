"""Alembic environment: migrations run on a connection handed in by devicelink."""

from __future__ import annotations

from alembic import context

from devicelink.storage.tables import metadata, on_database

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `devicelink db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=on_database(connection.dialect.name),
    # devicelink's own schema when it shares a PostgreSQL database (DATABASE_SCHEMA).
    version_table_schema=context.config.attributes.get("version_table_schema"),
)
with context.begin_transaction():
    context.run_migrations()
