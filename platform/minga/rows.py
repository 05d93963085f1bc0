"""Partial rows: a hot read written as SQL once, its rows turned into model instances.

The gateway's connect and subscribe each read a few columns of two or three tables. Through the
ORM, compiling those querysets (select_related, an Exists annotation) cost ~1 ms of CPU per
query, more than the database took to answer, on every connect (docs/performance.md, "H3: the
connect's CPU"). A `Columns` names the fields a hot read needs, in the table's own column names,
and makes instances from the row with every other field deferred: reading one of those loads it
(a query, which the query-count tests would show), it never reads a wrong default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection, models
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
