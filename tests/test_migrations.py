"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db import make_engine
from storage.models import Base
from storage.schema import upgrade_schema


def test_migrations_match_models(db_url):
    engine = make_engine(db_url)
    try:
        upgrade_schema(engine)
        upgrade_schema(engine)  # a second `maild init` is a no-op
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
