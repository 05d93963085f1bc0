"""Who is told, signal by signal: the recipient resolution table.

Each forum scenario posts through the forums' services (so the real signal reaches the real
receiver) and reads the inbox of one member in one position.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from community.models import Role, User, WorkingGroup
from events import services as event_services
from events.models import Registration
from forums.models import Message, Room
from notifications.models import Notification
from tests.notifications.conftest import follow, inbox_of, mute

pytestmark = pytest.mark.django_db


def _kinds(member: User) -> list[str]:
    return [kind for kind, _key in inbox_of(member)]


# --- New thread in a followed room ----------------------------------------------------------------

NEW_THREAD_TABLE = [
    # (scenario, role, verified, relation, expected kinds)
    ("follower", Role.MEMBER, True, "follow", ["new_thread"]),
    ("observer follower", Role.OBSERVER, True, "follow", ["new_thread"]),
    ("follower of another group", None, True, "follow", ["new_thread"]),
    ("muted the room", Role.MEMBER, True, "mute", []),
    ("no follow", Role.MEMBER, True, None, []),
    ("unverified follower", Role.MEMBER, False, "follow", []),
]


@pytest.mark.parametrize("case", NEW_THREAD_TABLE, ids=[row[0] for row in NEW_THREAD_TABLE])
def test_new_thread_recipients_by_position(
    case: tuple[str, str | None, bool, str | None, list[str]],
    make_member: Callable[..., User],
    author: User,
    room: Room,
    post: Callable[..., Message],
) -> None:
    # Arrange
    _scenario, role, verified, relation, expected = case
    someone = make_member("someone", role=role, verified=verified)
    if relation == "follow":
        follow(someone, room=room)
    elif relation == "mute":
        mute(someone, room=room)

    # Act
    post(author=author, room=room, body="Opening the discussion.")

    # Assert
    assert _kinds(someone) == expected


def test_new_thread_author_following_room_is_not_told(
    author: User, room: Room, post: Callable[..., Message]
) -> None:
    follow(author, room=room)

    post(author=author, room=room, body="My own thread.")

    assert _kinds(author) == []


# --- Messages in a thread: mention, reply, thread follower, mutes ---------------------------------

THREAD_TABLE = [
    # (scenario, body, relation, replied_to, expected)
    ("mentioned", "Thoughts, @someone?", None, False, ["mention"]),
    (
        "mentioned and follows the thread",
        "Thoughts, @someone?",
        "follow_thread",
        False,
        ["mention"],
    ),
    ("mentioned but muted the room", "Thoughts, @someone?", "mute_room", False, ["mention"]),
    ("mentioned but muted the thread", "Thoughts, @someone?", "mute_thread", False, []),
    ("replied to", "I agree.", None, True, ["reply"]),
    ("replied to but muted the room", "I agree.", "mute_room", True, []),
    ("replied to and mentioned", "I agree, @someone.", None, True, ["mention"]),
    ("follows the thread", "More data.", "follow_thread", False, ["thread_message"]),
    (
        "follows the thread, muted the room",
        "More data.",
        "follow_thread_mute_room",
        False,
        ["thread_message"],
    ),
    ("follows the room only", "More data.", "follow_room", False, []),
    ("unrelated", "More data.", None, False, []),
]


@pytest.mark.parametrize("case", THREAD_TABLE, ids=[row[0] for row in THREAD_TABLE])
def test_thread_message_recipients_by_position(
    case: tuple[str, str, str | None, bool, list[str]],
    make_member: Callable[..., User],
    author: User,
    room: Room,
    post: Callable[..., Message],
) -> None:
    # Arrange
    _scenario, body, relation, replied_to, expected = case
    someone = make_member("someone")
    first = post(author=someone, room=room, body="What about inspection data?")
    thread = first.thread
    if relation == "follow_thread":
        follow(someone, thread=thread)
    elif relation == "mute_room":
        mute(someone, room=room)
    elif relation == "mute_thread":
        mute(someone, thread=thread)
    elif relation == "follow_thread_mute_room":
        follow(someone, thread=thread)
        mute(someone, room=room)
    elif relation == "follow_room":
        follow(someone, room=room)

    # Act
    message = post(author=author, thread=thread, body=body, reply_to=first if replied_to else None)

    # Assert
    told = [(kind, key) for kind, key in inbox_of(someone)]
    assert told == [(kind, f"message:{message.pk}") for kind in expected]


def test_mention_of_self_is_not_told(
    author: User, room: Room, post: Callable[..., Message]
) -> None:
    post(author=author, room=room, body="Note to @author: check this.")

    assert _kinds(author) == []


def test_mention_of_unverified_member_is_not_told(
    make_member: Callable[..., User], author: User, room: Room, post: Callable[..., Message]
) -> None:
    ghost = make_member("ghost", verified=False)

    post(author=author, room=room, body="Hello @ghost")

    assert _kinds(ghost) == []


def test_mention_added_by_edit_is_told_once(
    make_member: Callable[..., User],
    author: User,
    room: Room,
    post: Callable[..., Message],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from forums import services as forum_services

    someone = make_member("someone")
    message = post(author=author, room=room, body="Draft")

    with django_capture_on_commit_callbacks(execute=True):
        forum_services.message_edit(message=message, editor=author, body="Draft for @someone")
    with django_capture_on_commit_callbacks(execute=True):
        forum_services.message_edit(message=message, editor=author, body="Draft, @someone!")

    assert inbox_of(someone) == [("mention", f"message:{message.pk}")]


# --- Events ---------------------------------------------------------------------------------------


def _event(chair: User, *, capacity: int | None = None, **kwargs: Any) -> Any:
    start = timezone.now().replace(microsecond=0) + dt.timedelta(days=10)
    return event_services.event_create(
        actor=chair,
        title="Workshop on labour inspection",
        starts_at=start,
        ends_at=start + dt.timedelta(hours=2),
        timezone="America/Lima",
        working_group=WorkingGroup.objects.get(slug="wg1"),
        capacity=capacity,
        **kwargs,
    )


EVENT_SCHEDULED_TABLE = [
    ("member of the group", "wg1", Role.MEMBER, True, ["event_scheduled"]),
    ("observer of the group", "wg1", Role.OBSERVER, True, ["event_scheduled"]),
    ("member of another group", "wg2", Role.MEMBER, True, []),
    ("unverified member", "wg1", Role.MEMBER, False, []),
]


@pytest.mark.parametrize(
    "case", EVENT_SCHEDULED_TABLE, ids=[row[0] for row in EVENT_SCHEDULED_TABLE]
)
def test_event_scheduled_recipients_by_position(
    case: tuple[str, str, str, bool, list[str]],
    make_member: Callable[..., User],
    chair: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _scenario, group, role, verified, expected = case
    someone = make_member("someone", role=None, verified=verified)
    from tests.factories import MembershipFactory

    MembershipFactory(member=someone, working_group=WorkingGroup.objects.get(slug=group), role=role)

    with django_capture_on_commit_callbacks(execute=True):
        _event(chair)

    assert _kinds(someone) == expected


def test_event_scheduled_organizer_is_not_told(
    chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        _event(chair)

    assert _kinds(chair) == []


def test_event_cancelled_tells_registrants_not_withdrawn(
    make_member: Callable[..., User], chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    stays = make_member("stays")
    leaves = make_member("leaves")
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(chair)
        event_services.registration_create(event=event, member=stays)
        event_services.registration_create(event=event, member=leaves)
        event_services.registration_withdraw(event=event, member=leaves)
    Notification.objects.all().delete()

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_cancel(event=event, actor=chair, message="Postponed.")

    # Assert
    assert (_kinds(stays), _kinds(leaves), _kinds(chair)) == (["event_cancelled"], [], [])


def test_registration_waitlist_and_promotion_tell_the_member(
    make_member: Callable[..., User], chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    first = make_member("first")
    second = make_member("second")
    with django_capture_on_commit_callbacks(execute=True):
        event = _event(chair, capacity=1)
        event_services.registration_create(event=event, member=first)
        event_services.registration_create(event=event, member=second)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.registration_withdraw(event=event, member=first)

    # Assert
    titles = list(
        Notification.objects.filter(recipient=second, kind="registration")
        .order_by("pk")
        .values_list("title", flat=True)
    )
    assert titles == [
        "You are on the waitlist for Workshop on labour inspection (position 1)",
        "A place opened: you are now registered for Workshop on labour inspection",
    ]
    assert Registration.objects.get(member=second).status == "registered"


def test_mention_links_to_the_message_in_its_thread(
    make_member: Callable[..., User], author: User, room: Room, post: Callable[..., Message]
) -> None:
    from django.urls import reverse

    someone = make_member("someone")

    message = post(author=author, room=room, body="Over to you, @someone.")

    row = Notification.objects.get(recipient=someone)
    assert (row.url, row.title, row.snippet) == (
        reverse("thread_detail", args=[message.thread_id]) + f"#m-{message.pk}",
        "Ana Autora mentioned you in “Labour inspection”",
        "Over to you, @someone.",
    )
