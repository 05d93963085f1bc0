"""Partial rows: a hot read written as SQL once, its rows turned into model instances.

The gateway's connect and subscribe each read a few columns of two or three tables. Through the
ORM, compiling those querysets (select_related, an Exists annotation) cost ~1 ms of CPU per
query, more than the database took to answer, on every connect (docs/performance.md, "H3: the
connect's CPU"). A `Columns` names the fields a hot read needs, in the table's own column names,
and makes instances from the row with every other field deferred: reading one of those loads it
(a query, which the query-count tests would show), it never reads a wrong default.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection, models
from django.db.models import signals
from django.utils.dateparse import parse_datetime


class Columns[M: models.Model]:
    """`names` of `model` (attribute names, e.g. `working_group_id`) as `alias.column` SQL, in
    the model's field order, and the instance a row's slice of them makes."""

    def __init__(self, model: type[M], alias: str, names: Sequence[str]) -> None:
        wanted = set(names)
        fields = [f for f in model._meta.concrete_fields if f.attname in wanted]
        missing = wanted - {f.attname for f in fields}
        if missing:
            raise ValueError(f"{model.__name__} has no columns {sorted(missing)}")
        self.model = model
        self.names = [f.attname for f in fields]
        # What the ORM applies to a column's value as it reads it (the backend's and the
        # field's converters: on SQLite, 0/1 to booleans and naive UTC text to aware datetimes).
        self.converters: list[tuple[int, list[Any], Any]] = []
        for i, field in enumerate(fields):
            col = field.get_col(alias)
            found = [*connection.ops.get_db_converters(col), *field.get_db_converters(connection)]
            if found:
                self.converters.append((i, found, col))
        quote = connection.ops.quote_name
        self.sql = ", ".join(f"{alias}.{quote(f.column)}" for f in fields)

    def __len__(self) -> int:
        return len(self.names)

    def instance(self, values: Sequence[Any]) -> M:
        """The model instance of these columns' values, converted as the ORM converts them."""
        if len(values) != len(self.names):
            raise ValueError(f"{len(values)} values for {len(self.names)} columns")
        converted = list(values)
        for i, converters, col in self.converters:
            for convert in converters:
                converted[i] = convert(converted[i], col, connection)
        return self.model.from_db(connection.alias, self.names, converted)


def split(row: Sequence[Any], parts: Sequence[Columns[Any]]) -> list[Sequence[Any]]:
    """A row of several tables' columns, read side by side (`SELECT a.sql, b.sql, ...`), cut
    into each one's values, in order."""
    values, at = [], 0
    for columns in parts:
        values.append(row[at : at + len(columns)])
        at += len(columns)
    if at != len(row):
        raise ValueError(f"{len(row)} values for {at} columns")
    return values


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], attname: str) -> str:
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return connection.ops.quote_name(field.column)
    raise ValueError(f"{model.__name__} has no column {attname}")


def param(model: type[models.Model], attname: str, value: Any) -> Any:
    """`value` as the database takes it for that field (a UUID as 32 hex digits and a datetime
    as text on SQLite), the preparation the ORM gives a filter's value."""
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return field.get_db_prep_value(value, connection, prepared=False)
    raise ValueError(f"{model.__name__} has no column {attname}")


def moment(value: Any) -> datetime | None:
    """A timestamp a subquery answered, aware: PostgreSQL gives an aware datetime; SQLite the
    stored UTC text, or a naive datetime where it knows the column's type, which the ORM would
    have made aware for a column but does not for a raw statement."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def insert(obj: models.Model) -> None:
    """Insert `obj` as `obj.save(force_insert=True)` does, with the statement written once per
    model instead of compiled on every call (a post's insert: docs/performance.md, "The write
    path"): every concrete column but the automatic primary key, each value prepared as `save`
    prepares it (the field's `pre_save` for an insert: defaults, `auto_now`; then
    `get_db_prep_save`), and the new key read back into `obj`. A model with save signals
    connected or without an automatic key, and a value that is an expression (F(), a database
    default), take `save` itself."""
    model = type(obj)
    meta = model._meta
    if (
        meta.auto_field is None
        or meta.auto_field is not meta.pk
        or signals.pre_save.has_listeners(model)
        or signals.post_save.has_listeners(model)
    ):
        obj.save(force_insert=True)
        return
    fields, statement, returning = _insert_statement(model, connection.vendor)
    raw = [f.pre_save(obj, True) for f in fields]
    if any(hasattr(value, "resolve_expression") for value in raw):  # F(), a database default
        obj.save(force_insert=True)
        return
    values = [f.get_db_prep_save(value, connection) for f, value in zip(fields, raw, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        if returning:
            key = cursor.fetchone()[0]
        else:
            key = connection.ops.last_insert_id(cursor, meta.db_table, meta.pk.column)
    setattr(obj, meta.pk.attname, key)
    obj._state.adding = False
    obj._state.db = connection.alias


@functools.cache
def _insert_statement(
    model: type[models.Model], vendor: str
) -> tuple[list[models.Field[Any, Any]], str, bool]:
    """(the fields inserted, in order; the statement; whether it returns the new key), per
    model and database vendor (the quoting and RETURNING are the backend's)."""
    meta = model._meta
    fields = [
        f
        for f in meta.local_concrete_fields
        if f is not meta.auto_field and not getattr(f, "generated", False)
    ]
    quote = connection.ops.quote_name
    returning = bool(connection.features.can_return_columns_from_insert)
    statement = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 - names from the model, values as parameters
        f"VALUES ({', '.join(['%s'] * len(fields))})"
        + (f" RETURNING {quote(meta.pk.column)}" if returning else "")
    )
    return fields, statement, returning
