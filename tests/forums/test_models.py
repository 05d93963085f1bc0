"""forums.models: the constraints the services rely on hold in the database itself."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from community.models import User
from forums.models import (
    REACTION_EMOJI,
    Follow,
    Mention,
    Message,
    Reaction,
    ReadState,
    Room,
    Thread,
)
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory

pytestmark = pytest.mark.django_db


def test_room_last_seq_starts_at_zero(room: Room) -> None:
    assert room.last_seq == 0


def test_message_factory_takes_next_seq(thread: Thread) -> None:
    first = MessageFactory(thread=thread)
    second = MessageFactory(thread=thread)

    assert (first.seq, second.seq, str(second)) == (1, 2, f"{thread.room_id}#2")


def test_message_seq_unique_per_room(thread: Thread) -> None:
    message = MessageFactory(thread=thread)

    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            thread=thread, room=thread.room, seq=message.seq, author=message.author, body="dup"
        )


def test_message_same_seq_in_other_room_is_allowed(thread: Thread) -> None:
    message = MessageFactory(thread=thread)
    other = Thread.objects.create(
        room=Room.objects.get(slug="wg2-a"), title="elsewhere", author=message.author
    )

    copy = Message.objects.create(
        thread=other, room=other.room, seq=message.seq, author=message.author, body="ok"
    )

    assert copy.seq == message.seq


def test_message_client_id_unique_per_author(thread: Thread) -> None:
    message = MessageFactory(thread=thread)

    with pytest.raises(IntegrityError), transaction.atomic():
        MessageFactory(thread=thread, author=message.author, client_id=message.client_id)


def test_reaction_unique_per_member_and_emoji(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread)
    Reaction.objects.create(message=message, member=member, emoji="👍")

    with pytest.raises(IntegrityError), transaction.atomic():
        Reaction.objects.create(message=message, member=member, emoji="👍")


def test_reaction_emoji_set_is_fixed() -> None:
    assert REACTION_EMOJI == ("👍", "❤️", "😄", "🎉", "🤔", "👀")


def test_mention_unique_per_message_and_member(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread)
    Mention.objects.create(message=message, member=member)

    with pytest.raises(IntegrityError), transaction.atomic():
        Mention.objects.create(message=message, member=member)


def test_read_state_unique_per_member_and_thread(thread: Thread, member: User) -> None:
    ReadState.objects.create(member=member, thread=thread)

    with pytest.raises(IntegrityError), transaction.atomic():
        ReadState.objects.create(member=member, thread=thread)


def test_follow_needs_room_or_thread_not_both(thread: Thread, member: User) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(
            member=member, room=thread.room, thread=thread, level=Follow.Level.FOLLOW
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(member=member, level=Follow.Level.FOLLOW)


def test_follow_unique_per_room(thread: Thread, member: User) -> None:
    Follow.objects.create(member=member, room=thread.room, level=Follow.Level.FOLLOW)

    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(member=member, room=thread.room, level=Follow.Level.MUTE)


def test_follow_thread_and_room_coexist(thread: Thread, member: User) -> None:
    Follow.objects.create(member=member, room=thread.room, level=Follow.Level.FOLLOW)
    Follow.objects.create(member=member, thread=thread, level=Follow.Level.MUTE)

    assert Follow.objects.filter(member=member).count() == 2


def test_deleting_thread_keeps_no_orphan_messages(thread: Thread) -> None:
    MessageFactory(thread=thread)

    thread.delete()

    assert Message.objects.count() == 0
