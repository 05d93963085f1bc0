"""minga.rows: hot reads written once as SQL, their rows made model instances."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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


def _message(thread: Any, seq: Any) -> Message:
    return Message(
        thread=thread,
        room=thread.room,
        seq=seq,
        author=thread.author,
        body="Agenda, item 2",
        body_html="<p>Agenda, item 2</p>\n",
        client_id=uuid.uuid4(),
        created_at=datetime(2026, 11, 25, 23, 59, 30, tzinfo=UTC),
    )


def _stored(message: Message) -> dict[str, Any]:
    row = Message.objects.values().get(pk=message.pk)
    return {k: v for k, v in row.items() if k not in {"id", "seq", "client_id"}}


@pytest.mark.django_db
def test_insert_writes_the_row_that_save_writes_and_reads_its_key_back(plan: None) -> None:
    from tests.forums.factories import ThreadFactory

    thread = ThreadFactory()
    saved, inserted = _message(thread, 1), _message(thread, 2)
    saved.save(force_insert=True)

    rows.insert(inserted)

    assert inserted.pk is not None
    assert inserted.pk != saved.pk
    assert (inserted._state.adding, inserted._state.db) == (False, "default")
    assert _stored(inserted) == _stored(saved)  # every default (change, kind, ...) too
    assert Message.objects.get(pk=inserted.pk).client_id == inserted.client_id
    assert _stored(inserted)["created_at"] == datetime(2026, 11, 25, 23, 59, 30, tzinfo=UTC)


@pytest.mark.django_db
def test_insert_leaves_signals_and_expressions_to_save(plan: None) -> None:
    from django.db.models import Value
    from django.db.models.signals import post_save

    from tests.forums.factories import ThreadFactory

    thread = ThreadFactory()
    heard: list[int] = []

    def receiver(sender: type[Message], instance: Message, **kwargs: Any) -> None:
        heard.append(instance.pk)

    post_save.connect(receiver, sender=Message, dispatch_uid="test_rows")
    try:
        with_signal = _message(thread, 1)
        rows.insert(with_signal)
    finally:
        post_save.disconnect(dispatch_uid="test_rows", sender=Message)
    with_expression = _message(thread, Value(7))
    rows.insert(with_expression)

    assert heard == [with_signal.pk]
    assert Message.objects.get(pk=with_expression.pk).seq == 7


def test_split_cuts_a_row_into_each_tables_values_and_refuses_a_row_of_another_length() -> None:
    room = rows.Columns(Room, "r", ["id", "slug"])
    member = rows.Columns(User, "a", ["id", "name", "email"])

    parts = rows.split((1, "wg1-a", 7, "Ana", "ana@example.org"), [room, member])

    assert parts == [(1, "wg1-a"), (7, "Ana", "ana@example.org")]
    with pytest.raises(ValueError, match="4 values for 5 columns"):
        rows.split((1, "wg1-a", 7, "Ana"), [room, member])
