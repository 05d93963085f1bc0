"""GIN indexes for full-text search (forums.search), on PostgreSQL only.

The expressions are exactly those SearchVector(field, config="simple") produces, so the planner
uses the indexes. Other databases have no full-text search here and get nothing.
"""

from django.db import migrations

INDEXES = {
    "forums_message_body_fts": ("forums_message", "body"),
    "forums_thread_title_fts": ("forums_thread", "title"),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, column) in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin "
            f"(to_tsvector('simple'::regconfig, COALESCE({column}, '')))"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("forums", "0003_moderation")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
