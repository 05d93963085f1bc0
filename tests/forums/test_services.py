"""forums.services: rules, stored rows, the frame after commit and nothing on rollback."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from community import policy
from community.models import Role, User, WorkingGroup
from forums import services
from forums.models import (
    MAX_BODY_CHARS,
    Follow,
    Mention,
    Message,
    MessageRevision,
    Reaction,
    Room,
    RoomMute,
    Thread,
)
from forums.selectors import message_payload
from notifications import bus
from tests.factories import MembershipFactory
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db

Frames = list[tuple[str, dict[str, Any]]]


class BoomError(Exception):
    pass


def post(thread: Thread, author: User, body: str = "Hello", **kwargs: Any) -> Message:
    message, _created = services.message_post(
        thread=thread,
        author=author,
        body=body,
        client_id=kwargs.pop("client_id", uuid.uuid4()),
        **kwargs,
    )
    return message


def code_of(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return services.error_code(excinfo.value)


# --- message_post -----------------------------------------------------------------------------


def test_message_post_stores_message_with_next_seq(thread: Thread, member: User) -> None:
    room = thread.room
    Room.objects.filter(pk=room.pk).update(last_seq=41)

    message, created = services.message_post(
        thread=thread, author=member, body="**Hola** a todos", client_id=uuid.uuid4()
    )

    message.refresh_from_db()
    thread.refresh_from_db()
    assert (created, message.seq, message.room_id, message.body) == (
        True,
        42,
        room.pk,
        "**Hola** a todos",
    )
    assert message.body_html == "<p><strong>Hola</strong> a todos</p>\n"
    assert Room.objects.get(pk=room.pk).last_seq == 42
    assert (thread.message_count, thread.last_activity_at) == (1, message.created_at)


def test_message_post_publishes_created_frame_after_commit(
    thread: Thread,
    member: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client_id = uuid.uuid4()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message, _ = services.message_post(
            thread=thread, author=member, body="Hello", client_id=client_id
        )
        assert frames == []
    for callback in callbacks:
        callback()

    expected_message = {
        "id": message.pk,
        "seq": 1,
        "room": "wg1-a",
        "thread": thread.pk,
        "author": {
            "id": member.pk,
            "name": "Ana Pérez",
            "organization": member.organization.name,
            "handle": "ana",
        },
        "body": "Hello",
        "body_html": "<p>Hello</p>\n",
        "created_at": message.created_at.isoformat(),
        "edited_at": None,
        "deleted": False,
        "hidden": False,
        "reply_to": None,
        "client_id": str(client_id),
        "reactions": {},
        "mentions": [],
        "attachments": [],
    }
    assert frames == [
        (
            bus.room_group(thread.room_id),
            {"type": "message.created", "room": "wg1-a", "seq": 1, "message": expected_message},
        )
    ]
    # Nobody but the author follows the thread (read with the post's checks).
    assert received == [
        (
            "message_posted",
            {"sender": Message, "message": message, "mentioned_ids": [], "followed": False},
        )
    ]


def test_message_post_publishes_nothing_on_rollback(
    thread: Thread,
    member: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        post(thread, member)
        raise BoomError

    assert (callbacks, frames, received) == ([], [], [])
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=thread.room_id).last_seq == 0


def test_message_post_same_client_id_returns_existing(
    thread: Thread, member: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    client_id = uuid.uuid4()
    with django_capture_on_commit_callbacks(execute=True):
        first, first_created = services.message_post(
            thread=thread, author=member, body="Once", client_id=client_id
        )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again, again_created = services.message_post(
            thread=thread, author=member, body="Once", client_id=client_id
        )

    assert (again.pk, first_created, again_created) == (first.pk, True, False)
    assert message_payload(again) == message_payload(first)
    assert callbacks == []
    assert [f["type"] for g, f in frames if g.startswith("room.")] == ["message.created"]
    assert Message.objects.count() == 1


def test_message_post_integrity_race_returns_existing(
    thread: Thread, member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A concurrent request committed the same client_id between our check and our insert:
    # the check (under the room lock) misses it, the unique constraint catches it, the stored
    # message is returned.
    client_id = uuid.uuid4()
    first = post(thread, member, "Race", client_id=client_id)
    _blind_to_repeats(monkeypatch)

    again, created = services.message_post(
        thread=thread, author=member, body="Race", client_id=client_id
    )

    assert (again.pk, created, Message.objects.count()) == (first.pk, False, 1)
    assert Room.objects.get(pk=thread.room_id).last_seq == 1


def _blind_to_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check under the room lock finds no repeat, as when the other commit came later."""
    real = services._post_checks

    def checks(**kwargs: Any) -> tuple[Thread | None, dict[str, Any]]:
        thread, found = real(**kwargs)
        return thread, {**found, services._EXISTING: None}

    monkeypatch.setattr(services, "_post_checks", checks)


def test_message_post_repeat_gives_its_seq_back(thread: Thread, member: User) -> None:
    # The repeat is found after the seq was taken: the transaction is rolled back with it, so
    # the next message gets the next seq (no gap a client would read as a lost message).
    client_id = uuid.uuid4()
    first = post(thread, member, "Once", client_id=client_id)

    again, created = services.message_post(
        thread=thread, author=member, body="Once", client_id=client_id
    )
    following = post(thread, member, "Next")

    assert (again.pk, created) == (first.pk, False)
    assert (first.seq, following.seq, Room.objects.get(pk=thread.room_id).last_seq) == (1, 2, 2)


def test_thread_create_repeat_found_under_the_lock_returns_its_thread(
    room: Room, member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check before the lock misses the first request's commit; the one under the lock
    # finds it: the first thread answers, nothing is written and no seq is spent.
    client_id = uuid.uuid4()
    first = services.thread_create(
        room=room, author=member, title="Once", body="Body", client_id=client_id
    )
    real = services._existing_message
    calls: list[uuid.UUID] = []

    def miss_first(author: User, wanted: uuid.UUID) -> Message | None:
        calls.append(wanted)
        return None if len(calls) == 1 else real(author, wanted)

    monkeypatch.setattr(services, "_existing_message", miss_first)

    again = services.thread_create(
        room=room, author=member, title="Once", body="Body", client_id=client_id
    )

    assert (again.pk, len(calls)) == (first.pk, 2)
    assert (Thread.objects.filter(room=room).count(), Message.objects.count()) == (1, 1)
    assert Room.objects.get(pk=room.pk).last_seq == 1


def test_message_post_same_client_id_other_author_is_another_message(
    thread: Thread, member: User, chair: User
) -> None:
    client_id = uuid.uuid4()

    first = post(thread, member, client_id=client_id)
    second = post(thread, chair, client_id=client_id)

    assert (first.seq, second.seq) == (1, 2)


@pytest.mark.parametrize("body", ["", "   ", "\n\n\t \n"])
def test_message_post_empty_body_is_invalid(
    thread: Thread, member: User, frames: Frames, body: str, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ValidationError) as excinfo,
    ):
        post(thread, member, body)

    assert code_of(excinfo) == "invalid"
    assert (Message.objects.count(), callbacks, frames) == (0, [], [])


def test_message_post_nul_character_is_invalid(thread: Thread, member: User) -> None:
    with pytest.raises(ValidationError) as excinfo:
        post(thread, member, "a\x00b")

    assert code_of(excinfo) == "invalid"


def test_message_post_over_limit_is_too_long(thread: Thread, member: User) -> None:
    with pytest.raises(ValidationError) as excinfo:
        post(thread, member, "x" * (MAX_BODY_CHARS + 1))

    assert code_of(excinfo) == "too_long"
    assert Message.objects.count() == 0


def test_message_post_at_limit_is_stored(thread: Thread, member: User) -> None:
    message = post(thread, member, "x" * MAX_BODY_CHARS)

    assert len(message.body) == MAX_BODY_CHARS


def test_message_post_observer_is_forbidden(thread: Thread, observer: User, frames: Frames) -> None:
    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, observer)

    assert code_of(excinfo) == "forbidden"
    assert (Message.objects.count(), frames) == (0, [])


def test_message_post_member_of_other_group_is_forbidden(thread: Thread, plan: None) -> None:
    outsider = member_in("wg2")

    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, outsider)

    assert code_of(excinfo) == "forbidden"


def test_message_post_unverified_member_is_forbidden(thread: Thread, plan: None) -> None:
    unverified = member_in("wg1", verified=False)

    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, unverified)

    assert code_of(excinfo) == "forbidden"


def test_message_post_locked_room_refuses_member(thread: Thread, member: User) -> None:
    Room.objects.filter(pk=thread.room_id).update(state=Room.State.LOCKED)

    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, member)

    assert code_of(excinfo) == "room_locked"


def test_message_post_locked_room_accepts_moderator(thread: Thread, chair: User) -> None:
    Room.objects.filter(pk=thread.room_id).update(state=Room.State.LOCKED)

    message = post(thread, chair)

    assert message.seq == 1


def test_message_post_archived_room_refuses_moderator(thread: Thread, secretariat: User) -> None:
    Room.objects.filter(pk=thread.room_id).update(state=Room.State.ARCHIVED)

    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, secretariat)

    assert code_of(excinfo) == "room_locked"


def test_message_post_locked_thread_refuses_member(thread: Thread, member: User) -> None:
    Thread.objects.filter(pk=thread.pk).update(locked=True)

    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, member)

    assert code_of(excinfo) == "thread_locked"


def test_message_post_locked_thread_accepts_moderator(thread: Thread, chair: User) -> None:
    Thread.objects.filter(pk=thread.pk).update(locked=True)

    message = post(thread, chair)

    assert message.seq == 1


def test_message_post_muted_member_is_forbidden(thread: Thread, member: User, chair: User) -> None:
    RoomMute.objects.create(
        room=thread.room,
        member=member,
        until=timezone.now() + timedelta(hours=1),
        by=chair,
        reason="heated",
    )

    with pytest.raises(PermissionDenied) as excinfo:
        post(thread, member)

    assert code_of(excinfo) == "forbidden"
    assert Message.objects.count() == 0


def test_message_post_expired_mute_accepts(thread: Thread, member: User, chair: User) -> None:
    RoomMute.objects.create(
        room=thread.room,
        member=member,
        until=timezone.now() - timedelta(seconds=1),
        by=chair,
        reason="over",
    )

    message = post(thread, member)

    assert message.seq == 1


def test_message_post_flood_is_rate_limited(
    thread: Thread,
    member: User,
    settings: Any,
    frames: Frames,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (3, 10)
    for n in range(3):
        post(thread, member, f"message {n}")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(ValidationError) as excinfo,
    ):
        post(thread, member, "one too many")

    assert code_of(excinfo) == "rate_limited"
    assert (Message.objects.count(), callbacks) == (3, [])


def test_message_post_flood_window_passed_accepts(
    thread: Thread, member: User, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (2, 10)
    for n in range(2):
        post(thread, member, f"message {n}")
    Message.objects.update(created_at=timezone.now() - timedelta(seconds=11))

    message = post(thread, member, "later")

    assert message.seq == 3


def test_message_post_flood_counts_per_member(
    thread: Thread, member: User, chair: User, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 10)
    post(thread, member)

    message = post(thread, chair)

    assert message.seq == 2


def test_message_post_slow_mode_is_rate_limited(thread: Thread, member: User) -> None:
    Room.objects.filter(pk=thread.room_id).update(slow_mode_seconds=60)
    post(thread, member, "first")

    with pytest.raises(ValidationError) as excinfo:
        post(thread, member, "second")

    assert code_of(excinfo) == "rate_limited"
    assert Message.objects.count() == 1


def test_message_post_slow_mode_exempts_moderators(thread: Thread, chair: User) -> None:
    Room.objects.filter(pk=thread.room_id).update(slow_mode_seconds=60)
    post(thread, chair, "first")

    message = post(thread, chair, "second")

    assert message.seq == 2


def test_message_post_slow_mode_after_interval_accepts(thread: Thread, member: User) -> None:
    Room.objects.filter(pk=thread.room_id).update(slow_mode_seconds=60)
    post(thread, member, "first")
    Message.objects.update(created_at=timezone.now() - timedelta(seconds=61))

    message = post(thread, member, "second")

    assert message.seq == 2


def test_message_post_resolves_mentions(
    thread: Thread,
    member: User,
    chair: User,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        message = post(thread, member, "Thanks @JOAO and @nobody, see `@joao`")

    assert list(Mention.objects.filter(message=message).values_list("member_id", flat=True)) == [
        chair.pk
    ]
    assert message.body_html == (
        f'<p>Thanks <span class="mention" data-member-id="{chair.pk}">@JOAO</span> and '
        "@nobody, see <code>@joao</code></p>\n"
    )
    assert message_payload(message)["mentions"] == [chair.pk]
    assert received[0][1]["mentioned_ids"] == [chair.pk]


def test_message_post_inactive_handle_stays_text(thread: Thread, member: User) -> None:
    member_in("wg1", handle="gone", is_active=False)

    message = post(thread, member, "Hi @gone")

    assert (message.body_html, Mention.objects.count()) == ("<p>Hi @gone</p>\n", 0)


def test_message_post_reply_to_other_thread_is_invalid(
    thread: Thread, member: User, room: Room
) -> None:
    elsewhere = MessageFactory(thread=ThreadFactory(room=room, author=member))

    with pytest.raises(ValidationError) as excinfo:
        post(thread, member, reply_to_id=elsewhere.pk)

    assert code_of(excinfo) == "invalid"
    assert Message.objects.count() == 1


def test_message_post_reply_to_is_stored(thread: Thread, member: User, chair: User) -> None:
    first = post(thread, member, "Question")

    reply = post(thread, chair, "Answer", reply_to_id=first.pk)

    assert (reply.reply_to_id, message_payload(reply)["reply_to"]) == (first.pk, first.pk)


def test_message_post_query_count(
    thread: Thread, member: User, django_assert_num_queries: Any
) -> None:
    member.is_verified  # noqa: B018 - warm the per-request cache the way the API's auth does
    member.organization  # noqa: B018
    policy.forget_roles(member)  # a request's member: its roles not read yet
    # savepoint + lock room taking the seq + the thread's count with every check (repeat, mute,
    # flood) and the author's roles + insert + release (no @handle: no lookup)
    with django_assert_num_queries(5):
        post(thread, member, "No mentions here")


def test_message_post_reads_the_authors_roles_with_its_checks(
    thread: Thread, plan: None, django_assert_num_queries: Any
) -> None:
    # Every role the member has, in every group, as the policy's own read gives them: the
    # post's checks cache them on the member, and the policy asks nothing more.
    author = member_in("wg1", role=Role.VICE_CHAIR)
    MembershipFactory(
        member=author, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.OBSERVER
    )
    author.is_verified  # noqa: B018
    expected = policy.roles_of(User.objects.get(pk=author.pk))

    post(thread, author, "With my roles")

    assert policy.roles_known(author)
    with django_assert_num_queries(0):
        assert policy.roles_of(author) == expected
        assert policy.is_organizer_of(author, thread.room.working_group_id)
    assert sorted(expected.values()) == [Role.OBSERVER, Role.VICE_CHAIR]


def test_message_post_keeps_the_roles_it_was_given(
    thread: Thread, member: User, django_assert_num_queries: Any
) -> None:
    # The gateway reads a member's roles with the member: the post's checks do not again.
    policy.remember_roles(member, [(thread.room.working_group_id, Role.MEMBER)])
    member.is_verified  # noqa: B018
    member.organization  # noqa: B018

    with django_assert_num_queries(5) as captured:
        post(thread, member, "Known roles")

    assert not any("community_membership" in q["sql"] for q in captured.captured_queries)


def test_message_post_refused_leaves_the_thread_uncounted(thread: Thread, member: User) -> None:
    # The count is taken with the checks, before they refuse: the refusal rolls it back.
    post(thread, member, "Before the lock")
    before = Thread.objects.get(pk=thread.pk)
    Thread.objects.filter(pk=thread.pk).update(locked=True)

    with pytest.raises(PermissionDenied):
        post(thread, member, "Refused")

    after = Thread.objects.get(pk=thread.pk)
    assert (after.message_count, after.last_activity_at) == (1, before.last_activity_at)
    assert Room.objects.get(pk=thread.room_id).last_seq == 1


def test_message_post_to_a_missing_thread_is_refused_and_takes_nothing(
    thread: Thread, member: User
) -> None:
    gone = Thread(pk=thread.pk + 1000, room=thread.room, title="Gone")

    with pytest.raises(Thread.DoesNotExist):
        post(gone, member, "Nowhere")

    assert Room.objects.get(pk=thread.room_id).last_seq == 0
    assert Message.objects.count() == 0


# --- thread_create ----------------------------------------------------------------------------


def test_thread_create_stores_thread_and_first_message(
    room: Room,
    member: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        thread = services.thread_create(
            room=room, author=member, title="  Social   dialogue ", body="Let us *begin*."
        )

    message = Message.objects.get(thread=thread)
    assert (thread.title, thread.message_count, message.seq, message.body_html) == (
        "Social dialogue",
        1,
        1,
        "<p>Let us <em>begin</em>.</p>\n",
    )
    assert [(g, f["type"], f["seq"], f["new_thread"]["id"]) for g, f in frames] == [
        (bus.room_group(room.pk), "message.created", 1, thread.pk)
    ]
    assert [name for name, _ in received] == ["thread_created", "message_posted"]


def test_thread_create_same_client_id_returns_same_thread(room: Room, member: User) -> None:
    client_id = uuid.uuid4()
    first = services.thread_create(
        room=room, author=member, title="Once", body="Body", client_id=client_id
    )

    again = services.thread_create(
        room=room, author=member, title="Once", body="Body", client_id=client_id
    )

    assert (again.pk, Thread.objects.count()) == (first.pk, 1)


def test_thread_create_publishes_nothing_on_rollback(
    room: Room,
    member: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        services.thread_create(room=room, author=member, title="T", body="B")
        raise BoomError

    assert (callbacks, frames, received, Thread.objects.count()) == ([], [], [], 0)


@pytest.mark.parametrize(("title", "code"), [("  ", "invalid"), ("x" * 201, "too_long")])
def test_thread_create_bad_title_is_refused(
    room: Room, member: User, title: str, code: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.thread_create(room=room, author=member, title=title, body="Body")

    assert code_of(excinfo) == code
    assert Thread.objects.count() == 0


def test_thread_create_observer_is_forbidden(room: Room, observer: User) -> None:
    with pytest.raises(PermissionDenied) as excinfo:
        services.thread_create(room=room, author=observer, title="T", body="B")

    assert code_of(excinfo) == "forbidden"
    assert Thread.objects.count() == 0


# --- message_edit -----------------------------------------------------------------------------


def test_message_edit_keeps_revision_and_publishes(
    thread: Thread,
    member: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = post(thread, member, "Frist")
    post(thread, member, "later message")

    with django_capture_on_commit_callbacks(execute=True):
        services.message_edit(message=message, editor=member, body="First")

    message.refresh_from_db()
    assert (message.body, message.body_html) == ("First", "<p>First</p>\n")
    assert message.edited_at is not None
    assert list(MessageRevision.objects.values_list("body", "editor_id")) == [("Frist", member.pk)]
    assert frames == [
        (
            bus.room_group(thread.room_id),
            {
                "type": "message.edited",
                "room": "wg1-a",
                "seq": 2,
                "change": 1,
                "message": message_payload(message),
            },
        )
    ]
    assert received == [
        (
            "message_edited",
            {"sender": Message, "message": message, "editor": member, "added_mention_ids": []},
        )
    ]


def test_message_edit_publishes_nothing_on_rollback(
    thread: Thread, member: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    message = post(thread, member, "Before")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        services.message_edit(message=message, editor=member, body="After")
        raise BoomError

    message.refresh_from_db()
    assert (callbacks, frames, message.body, MessageRevision.objects.count()) == (
        [],
        [],
        "Before",
        0,
    )


def test_message_edit_by_other_member_is_forbidden(
    thread: Thread, member: User, chair: User
) -> None:
    message = post(thread, member, "Mine")

    with pytest.raises(PermissionDenied) as excinfo:
        services.message_edit(message=message, editor=chair, body="Theirs")

    assert code_of(excinfo) == "forbidden"
    message.refresh_from_db()
    assert message.body == "Mine"


def test_message_edit_unchanged_body_changes_nothing(
    thread: Thread, member: User, django_capture_on_commit_callbacks: Any
) -> None:
    message = post(thread, member, "Same")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.message_edit(message=message, editor=member, body="Same  \n")

    assert (callbacks, MessageRevision.objects.count(), message.edited_at) == ([], 0, None)


def test_message_edit_updates_mentions(
    *,
    thread: Thread,
    member: User,
    chair: User,
    secretariat: User,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = post(thread, member, "cc @joao")

    with django_capture_on_commit_callbacks(execute=True):
        services.message_edit(message=message, editor=member, body="cc @sofia")

    assert list(Mention.objects.values_list("member_id", flat=True)) == [secretariat.pk]
    assert received[-1][1]["added_mention_ids"] == [secretariat.pk]


def test_message_edit_deleted_message_is_not_found(thread: Thread, member: User) -> None:
    message = post(thread, member, "Gone soon")
    services.message_delete(message=message, actor=member)

    with pytest.raises(ValidationError) as excinfo:
        services.message_edit(message=message, editor=member, body="Back")

    assert code_of(excinfo) == "not_found"


def test_message_edit_hidden_message_is_forbidden(thread: Thread, member: User) -> None:
    message = post(thread, member, "Rude")
    Message.objects.filter(pk=message.pk).update(hidden_at=timezone.now(), hidden_reason="rude")

    with pytest.raises(PermissionDenied) as excinfo:
        services.message_edit(message=message, editor=member, body="Polite")

    assert code_of(excinfo) == "forbidden"


def test_message_edit_empty_body_is_invalid(thread: Thread, member: User) -> None:
    message = post(thread, member, "Something")

    with pytest.raises(ValidationError) as excinfo:
        services.message_edit(message=message, editor=member, body=" ")

    assert code_of(excinfo) == "invalid"


# --- message_delete ---------------------------------------------------------------------------


def test_message_delete_leaves_tombstone_and_publishes(
    *,
    thread: Thread,
    member: User,
    chair: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = post(thread, member, "Regret @joao")
    services.reaction_toggle(message=message, member=chair, emoji="👍")
    services.message_edit(message=message, editor=member, body="Regret more @joao")
    frames.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.message_delete(message=message, actor=member)

    message.refresh_from_db()
    assert (message.body, message.body_html, message.seq) == ("", "", 1)
    assert message.deleted_at is not None
    assert (Reaction.objects.count(), Mention.objects.count(), MessageRevision.objects.count()) == (
        0,
        0,
        0,
    )
    payload = message_payload(message)
    assert (payload["body"], payload["body_html"], payload["deleted"]) == ("", "", True)
    assert frames == [
        (
            bus.room_group(thread.room_id),
            {
                "type": "message.deleted",
                "room": "wg1-a",
                "seq": 1,
                "change": 3,  # after the reaction (1) and the edit (2)
                "message": payload,
            },
        )
    ]
    assert received[-1] == (
        "message_deleted",
        {"sender": Message, "message": message, "actor": member},
    )


def test_message_delete_publishes_nothing_on_rollback(
    thread: Thread, member: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    message = post(thread, member, "Stay")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        services.message_delete(message=message, actor=member)
        raise BoomError

    message.refresh_from_db()
    assert (callbacks, frames, message.body, message.deleted_at) == ([], [], "Stay", None)


def test_message_delete_by_moderator_of_others_message(
    thread: Thread, member: User, chair: User
) -> None:
    message = post(thread, member, "Off topic")

    services.message_delete(message=message, actor=chair)

    message.refresh_from_db()
    assert (message.body, message.deleted_at is not None) == ("", True)


def test_message_delete_by_other_member_is_forbidden(thread: Thread, member: User) -> None:
    message = post(thread, member, "Mine")
    other = member_in("wg1")

    with pytest.raises(PermissionDenied) as excinfo:
        services.message_delete(message=message, actor=other)

    assert code_of(excinfo) == "forbidden"
    message.refresh_from_db()
    assert message.deleted_at is None


def test_message_delete_twice_announces_once(
    thread: Thread, member: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    message = post(thread, member, "Twice")
    frames.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.message_delete(message=message, actor=member)
        services.message_delete(message=message, actor=member)

    assert [f["type"] for _, f in frames] == ["message.deleted"]


# --- reaction_toggle --------------------------------------------------------------------------


def test_reaction_toggle_adds_and_publishes_counts(
    *,
    thread: Thread,
    member: User,
    chair: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = post(thread, member, "Nice")
    services.reaction_toggle(message=message, member=member, emoji="🎉")
    frames.clear()
    received.clear()

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.reaction_toggle(message=message, member=chair, emoji="👍")

    assert counts == {"👍": 1, "🎉": 1}
    assert frames == [
        (
            bus.room_group(thread.room_id),
            {
                "type": "reaction.changed",
                "room": "wg1-a",
                "seq": 1,
                "change": 2,
                "message_id": message.pk,
                "reactions": {"👍": 1, "🎉": 1},
            },
        )
    ]
    assert received == [
        (
            "reaction_changed",
            {"sender": Reaction, "message": message, "member": chair, "emoji": "👍", "added": True},
        )
    ]


def test_reaction_toggle_twice_removes(thread: Thread, member: User) -> None:
    message = post(thread, member, "Nice")
    services.reaction_toggle(message=message, member=member, emoji="❤️")

    counts = services.reaction_toggle(message=message, member=member, emoji="❤️")

    assert (counts, Reaction.objects.count()) == ({}, 0)


def test_reaction_toggle_publishes_nothing_on_rollback(
    thread: Thread, member: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    message = post(thread, member, "Nice")
    frames.clear()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        services.reaction_toggle(message=message, member=member, emoji="👀")
        raise BoomError

    assert (callbacks, frames, Reaction.objects.count()) == ([], [], 0)


def test_reaction_toggle_unknown_emoji_is_invalid(thread: Thread, member: User) -> None:
    message = post(thread, member, "Nice")

    with pytest.raises(ValidationError) as excinfo:
        services.reaction_toggle(message=message, member=member, emoji="💩")

    assert code_of(excinfo) == "invalid"
    assert Reaction.objects.count() == 0


def test_reaction_toggle_observer_is_forbidden(
    thread: Thread, member: User, observer: User
) -> None:
    message = post(thread, member, "Nice")

    with pytest.raises(PermissionDenied) as excinfo:
        services.reaction_toggle(message=message, member=observer, emoji="👍")

    assert code_of(excinfo) == "forbidden"


def test_reaction_toggle_on_deleted_message_is_not_found(thread: Thread, member: User) -> None:
    message = post(thread, member, "Nice")
    services.message_delete(message=message, actor=member)

    with pytest.raises(ValidationError) as excinfo:
        services.reaction_toggle(message=message, member=member, emoji="👍")

    assert code_of(excinfo) == "not_found"


# --- read_mark --------------------------------------------------------------------------------


def test_read_mark_moves_forward_and_publishes_to_member(
    *,
    thread: Thread,
    member: User,
    chair: User,
    frames: Frames,
    received: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    post(thread, chair, "one")
    second = post(thread, chair, "two")
    frames.clear()

    with django_capture_on_commit_callbacks(execute=True):
        state = services.read_mark(member=member, thread=thread, message_id=second.pk)

    assert (state.last_read_message_id, state.last_read_seq) == (second.pk, 2)
    assert frames == [
        (
            bus.user_group(member.pk),
            {
                "type": "read",
                "room": "wg1-a",
                "thread": thread.pk,
                "message_id": second.pk,
                "seq": 2,
            },
        )
    ]
    assert received == [("thread_read", {"sender": type(state), "read_state": state})]


def test_read_mark_never_moves_back(
    thread: Thread,
    member: User,
    chair: User,
    frames: Frames,
    django_capture_on_commit_callbacks: Any,
) -> None:
    first = post(thread, chair, "one")
    second = post(thread, chair, "two")
    services.read_mark(member=member, thread=thread, message_id=second.pk)
    frames.clear()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        state = services.read_mark(member=member, thread=thread, message_id=first.pk)

    assert (state.last_read_seq, callbacks) == (2, [])


def test_read_mark_publishes_nothing_on_rollback(
    thread: Thread,
    member: User,
    chair: User,
    frames: Frames,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = post(thread, chair, "one")
    frames.clear()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(BoomError),
        transaction.atomic(),
    ):
        services.read_mark(member=member, thread=thread, message_id=message.pk)
        raise BoomError

    assert (callbacks, frames) == ([], [])


def test_read_mark_message_of_other_thread_is_not_found(
    thread: Thread, member: User, room: Room
) -> None:
    elsewhere = MessageFactory(thread=ThreadFactory(room=room, author=member))

    with pytest.raises(ValidationError) as excinfo:
        services.read_mark(member=member, thread=thread, message_id=elsewhere.pk)

    assert code_of(excinfo) == "not_found"


# --- error codes ------------------------------------------------------------------------------


def test_error_code_defaults() -> None:
    assert [
        services.error_code(PermissionDenied()),
        services.error_code(ValidationError("x")),
        services.error_code(ValidationError("x", code="rate_limited")),
        services.error_code(Message.DoesNotExist()),
    ] == ["forbidden", "invalid", "rate_limited", "not_found"]


# --- Real PostgreSQL concurrency --------------------------------------------------------------


def _in_threads(count: int, work: Any) -> list[Any]:
    """Run work(i) in `count` threads started together; each uses and closes its own connection."""
    from django.db import connection

    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # handed back to the test, which asserts on it
            results[i] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_message_post_concurrent_posts_get_seq_without_gaps(plan: None, frames: Frames) -> None:
    count = 8
    room = Room.objects.get(slug="wg1-a")
    authors = [member_in("wg1") for _ in range(count)]
    thread = ThreadFactory(room=room, author=authors[0])

    results = _in_threads(
        count,
        lambda i: (
            services.message_post(
                thread=thread, author=authors[i], body=f"post {i}", client_id=uuid.uuid4()
            )[0].pk
        ),
    )

    assert [r for r in results if not isinstance(r, int)] == []
    seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, count + 1))
    assert Room.objects.get(pk=room.pk).last_seq == count
    assert Thread.objects.get(pk=thread.pk).message_count == count
    assert sorted(f["seq"] for g, f in frames if g.startswith("room.")) == list(range(1, count + 1))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_message_post_concurrent_same_client_id_makes_one_message(
    plan: None, frames: Frames
) -> None:
    # The same author and key at once in two rooms: the room locks do not serialise them, the
    # unique constraint does, and the loser answers with the winner's message.
    author = member_in("wg1")
    threads = [
        ThreadFactory(room=Room.objects.get(slug=slug), author=author)
        for slug in ("wg1-a", "wg1-b")
    ]
    client_id = uuid.uuid4()

    results = _in_threads(
        2,
        lambda i: services.message_post(
            thread=threads[i], author=author, body="once", client_id=client_id
        ),
    )

    assert [r for r in results if not isinstance(r, tuple)] == []
    (first, first_created), (second, second_created) = results
    assert (first.pk, sorted([first_created, second_created])) == (second.pk, [False, True])
    assert Message.objects.filter(author=author).count() == 1
    assert [f["type"] for g, f in frames if g.startswith("room.")] == ["message.created"]


# --- follow_set -------------------------------------------------------------------------------


def test_follow_set_room_then_mute_then_forget(room: Room, member: User) -> None:
    services.follow_set(member=member, room=room, level="follow")
    services.follow_set(member=member, room=room, level="mute")
    levels = list(Follow.objects.values_list("room_id", "level"))

    services.follow_set(member=member, room=room, level=None)

    assert (levels, Follow.objects.count()) == ([(room.pk, "mute")], 0)


def test_follow_set_thread(thread: Thread, member: User) -> None:
    follow = services.follow_set(member=member, thread=thread, level="follow")

    assert (follow.thread_id, follow.room_id, follow.level) == (thread.pk, None, "follow")


@pytest.mark.parametrize("level", ["loud", ""])
def test_follow_set_unknown_level_is_invalid(room: Room, member: User, level: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.follow_set(member=member, room=room, level=level)

    assert code_of(excinfo) == "invalid"


def test_follow_set_needs_exactly_one_target(thread: Thread, member: User) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.follow_set(member=member, room=thread.room, thread=thread, level="follow")

    assert code_of(excinfo) == "invalid"


def test_follow_set_unverified_is_forbidden(room: Room) -> None:
    with pytest.raises(PermissionDenied):
        services.follow_set(member=member_in("wg1", verified=False), room=room, level="follow")


@pytest.mark.django_db
def test_taking_a_seq_returns_the_whole_room_as_the_orm_reads_it(room: Room) -> None:
    # Arrange: a room with a few fields set off their defaults.
    Room.objects.filter(pk=room.pk).update(last_seq=41, slow_mode_seconds=30, state="locked")

    # Act
    with transaction.atomic():
        taken = services._take_seq(room.pk)

    # Assert: every field as a fresh read gives it, the seq taken included; none deferred.
    fresh = Room.objects.get(pk=room.pk)
    fields = [f.attname for f in Room._meta.concrete_fields]
    assert (taken.last_seq, taken.get_deferred_fields()) == (42, set())
    assert [getattr(taken, f) for f in fields] == [getattr(fresh, f) for f in fields]
    with pytest.raises(Room.DoesNotExist), transaction.atomic():
        services._take_seq(10**9)
