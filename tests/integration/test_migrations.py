"""The schema changes only through migrations, and the migrations match the models."""

from __future__ import annotations

import flask_migrate
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from membership import create_app
from membership.extensions import db


def _differences(connection: sa.Connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, db.metadata)


def test_the_migrated_database_matches_the_models(db_session):
    assert _differences(db_session.connection()) == []


def test_migrations_go_down_to_nothing_and_up_again(tmp_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/m.db"})
    with app.app_context():
        flask_migrate.upgrade()
        flask_migrate.downgrade(revision="base")
        tables = set(sa.inspect(db.engine).get_table_names())
        assert tables <= {"alembic_version"}
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            assert _differences(connection) == []
