"""Alembic environment: runs callwatch's migrations on the connection `storage.db.upgrade`
hands over in `config.attributes["connection"]` (already inside a transaction).

There is no alembic.ini. For ad-hoc use of the alembic command line (e.g. `alembic revision
--autogenerate`), build a config with `storage.db.alembic_config()` and set
`sqlalchemy.url`; the engine then comes from `storage.db.make_engine`, with the same SQLite
pragmas as the application.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.db import make_engine
from storage.errors import MigrationError
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode (copy and move) works on both backends.
        render_as_batch=True,
        # storage.db emits a real BEGIN on SQLite, so DDL there is transactional as well and a
        # failed migration leaves the schema as it was.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise MigrationError("no connection given and no sqlalchemy.url set in the config")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run_on(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
