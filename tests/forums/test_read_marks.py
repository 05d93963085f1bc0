"""read_mark as one upsert: first mark, forward moves, never back, its frame after commit, queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from community.models import User
from forums import services
from forums.models import Message, ReadState, Thread
from notifications import bus
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory

pytestmark = pytest.mark.django_db

Frames = list[tuple[str, dict[str, Any]]]


class BoomError(Exception):
    pass


@pytest.fixture
def messages(thread: Thread) -> list[Message]:
    return [MessageFactory(thread=thread) for _i in range(3)]


@pytest.fixture
def steady_member(member: User, thread: Thread) -> User:
    """The member with their roles and verified flag read once, as a request's member is."""
    _ = member.is_verified
    _ = thread.room
    return member


def _mark(member: User, thread: Thread) -> tuple[int | None, int]:
    state = ReadState.objects.get(member=member, thread=thread)
    return state.last_read_message_id, state.last_read_seq


def read_frame(member: User, thread: Thread, message: Message) -> tuple[str, dict[str, Any]]:
    return (
        bus.user_group(member.pk),
        {
            "type": "read",
            "room": thread.room.slug,
            "thread": thread.pk,
            "message_id": message.pk,
            "seq": message.seq,
        },
    )


def test_read_mark_first_mark_is_one_write_and_published(
    *,
    thread: Thread,
    steady_member: User,
    messages: list[Message],
    frames: Frames,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Act: the thread's room is loaded already (pages and the socket select it with the thread).
    with (
        django_capture_on_commit_callbacks(execute=True),
        django_assert_num_queries(1),  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING
    ):
        state = services.read_mark(member=steady_member, thread=thread, message_id=messages[1].pk)

    # Assert
    assert (state.last_read_message_id, state.last_read_seq) == (messages[1].pk, messages[1].seq)
    assert _mark(steady_member, thread) == (messages[1].pk, messages[1].seq)
    assert frames == [read_frame(steady_member, thread, messages[1])]


def test_read_mark_moves_forward_in_one_query(
    *,
    thread: Thread,
    steady_member: User,
    messages: list[Message],
    frames: Frames,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Arrange
    services.read_mark(member=steady_member, thread=thread, message_id=messages[0].pk)
    frames.clear()

    # Act
    with django_capture_on_commit_callbacks(execute=True), django_assert_num_queries(1):
        services.read_mark(member=steady_member, thread=thread, message_id=messages[2].pk)

    # Assert
    assert _mark(steady_member, thread) == (messages[2].pk, messages[2].seq)
    assert frames == [read_frame(steady_member, thread, messages[2])]
    assert ReadState.objects.filter(member=steady_member, thread=thread).count() == 1


def test_read_mark_never_moves_back_and_publishes_nothing(
    *,
    thread: Thread,
    steady_member: User,
    messages: list[Message],
    frames: Frames,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Arrange
    services.read_mark(member=steady_member, thread=thread, message_id=messages[2].pk)
    frames.clear()

    # Act: the upsert changes nothing; one more query reads the mark to return it.
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        django_assert_num_queries(2),
    ):
        state = services.read_mark(member=steady_member, thread=thread, message_id=messages[0].pk)

    # Assert
    assert (state.last_read_message_id, state.last_read_seq) == (messages[2].pk, messages[2].seq)
    assert _mark(steady_member, thread) == (messages[2].pk, messages[2].seq)
    assert (callbacks, frames) == ([], [])


def test_read_mark_same_message_again_publishes_nothing(
    thread: Thread, steady_member: User, messages: list[Message], frames: Frames
) -> None:
    services.read_mark(member=steady_member, thread=thread, message_id=messages[1].pk)
    frames.clear()

    services.read_mark(member=steady_member, thread=thread, message_id=messages[1].pk)

    assert frames == []


def test_read_mark_message_of_another_thread_is_not_found(
    thread: Thread, steady_member: User, messages: list[Message], room: Any
) -> None:
    other = MessageFactory(thread=ThreadFactory(room=room))  # noqa: F405 - from factories

    with pytest.raises(ValidationError) as caught:
        services.read_mark(member=steady_member, thread=thread, message_id=other.pk)

    assert caught.value.code == "not_found"
    assert not ReadState.objects.filter(member=steady_member).exists()


def test_read_mark_publishes_nothing_on_rollback(
    thread: Thread,
    steady_member: User,
    messages: list[Message],
    frames: Frames,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        services.read_mark(member=steady_member, thread=thread, message_id=messages[0].pk)
        raise BoomError

    assert (callbacks, frames) == ([], [])
    assert not ReadState.objects.filter(member=steady_member).exists()
