"""minga.rows: hot reads written once as SQL, their rows made model instances."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from minga import rows

from community.models import User
from forums.models import Message, Room


def test_columns_are_in_the_models_field_order_whatever_order_they_are_named_in() -> None:
    columns = rows.Columns(Room, "r", ["last_seq", "slug", "id"])

    assert (columns.names, len(columns)) == (["id", "slug", "last_seq"], 3)
    assert columns.sql == 'r."id", r."slug", r."last_seq"'


def test_columns_refuse_a_name_the_model_does_not_have() -> None:
    with pytest.raises(ValueError, match=r"Room has no columns \['nope'\]"):
        rows.Columns(Room, "r", ["id", "nope"])


def test_an_instance_has_the_values_read_and_every_other_field_deferred() -> None:
    columns = rows.Columns(User, "u", ["id", "is_active", "is_staff", "language"])
    read = {"id": 7, "is_active": True, "is_staff": False, "language": "pt"}

    member = columns.instance([read[name] for name in columns.names])  # the row's order

    assert (member.pk, member.is_active, member.is_staff, member.language) == (7, True, False, "pt")
    assert member.get_deferred_fields() >= {"email", "name", "is_superuser"}
    assert member._state.adding is False
    with pytest.raises(ValueError, match="3 values for 4 columns"):
        columns.instance([7, True, False])


@pytest.mark.django_db
def test_a_whole_row_reads_as_the_orm_reads_it(plan: None) -> None:
    # Every field of a room, its timestamp and boolean-free text included, through the
    # backend's converters (on SQLite: aware datetimes from stored text).
    room = Room.objects.get(slug="wg1-a")
    columns = rows.Columns(Room, "r", [f.attname for f in Room._meta.concrete_fields])

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.sql} FROM {rows.table(Room)} r WHERE r.id = %s", [room.pk])  # noqa: S608
        read = columns.instance(cursor.fetchone())

    assert [getattr(read, n) for n in columns.names] == [getattr(room, n) for n in columns.names]
    assert read.created.tzinfo is not None


def test_moment_makes_sqlites_text_an_aware_utc_datetime_and_keeps_the_rest() -> None:
    aware = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)

    assert rows.moment("2026-11-25 20:00:00.5") == aware.replace(microsecond=500000)
    assert rows.moment(aware.replace(tzinfo=None)) == aware  # SQLite, where it knows the type
    assert (rows.moment(aware), rows.moment(None)) == (aware, None)
    with pytest.raises(ValueError, match="not a timestamp"):
        rows.moment("yesterday")


def test_param_prepares_a_value_as_the_orm_would_for_a_filter() -> None:
    client_id = uuid.UUID(int=1)
    when = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    field = Message._meta.get_field("client_id")

    assert rows.param(Message, "client_id", client_id) == field.get_db_prep_value(
        client_id, connection
    )
    assert rows.param(Message, "created_at", when) == Message._meta.get_field(
        "created_at"
    ).get_db_prep_value(when, connection)
    with pytest.raises(ValueError, match="Message has no column nope"):
        rows.param(Message, "nope", 1)
