"""Who is told, signal by signal: the recipient resolution table.

Each forum scenario posts through the forums' services (so the real signal reaches the real
receiver) and reads the inbox of one member in one position.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone

from community.models import Role, User, WorkingGroup
from events import services as event_services
from events.models import Registration
from forums.models import Message, Report, Room
from notifications.models import Notification
from tests.factories import MembershipFactory
from tests.notifications.conftest import follow, inbox_of, mute

pytestmark = pytest.mark.django_db


def _kinds(member: User) -> list[str]:
    return [kind for kind, _key in inbox_of(member)]


# --- The members in position (fixtures) -----------------------------------------------------------


@pytest.fixture
def someone(make_member: Callable[..., User]) -> User:
    """The member whose inbox a scenario reads: a verified member of wg1."""
    return make_member("someone")


@pytest.fixture
def member_as(make_member: Callable[..., User]) -> Callable[..., User]:
    """`someone` in a table's position: a role in a group (or none), verified or not."""

    def make(*, role: str | None, verified: bool = True, group: str = "wg1") -> User:
        member = make_member("someone", role=None, verified=verified)
        if role is not None:
            MembershipFactory(
                member=member, working_group=WorkingGroup.objects.get(slug=group), role=role
            )
        return member

    return make


@pytest.fixture
def reporter_language() -> str:
    """Override with parametrize to give the reporter another language."""
    return "en"


@pytest.fixture
def reporter(make_member: Callable[..., User], reporter_language: str) -> User:
    return make_member("reporter", language=reporter_language)


@pytest.fixture
def reported(
    author: User, room: Room, reporter: User, post: Callable[..., Message]
) -> tuple[Message, Report]:
    """A message by `author` in “Inspection data”, and `reporter`'s open report of it."""
    from forums import moderation

    message = post(author=author, room=room, body="Buy cheap watches", title="Inspection data")
    return message, moderation.report_create(message=message, reporter=reporter, reason="Spam")


@pytest.fixture
def reporter_in(
    make_member: Callable[..., User], author: User
) -> Callable[[str, Message], tuple[User, list[Report]]]:
    """`someone` in a moderation position towards `message`, with the reports they made: the
    author (none), a bystander (none), or a reporter: observer, unverified or deactivated after
    reporting (reporting needs a participant)."""
    from forums import moderation

    def place(position: str, message: Message) -> tuple[User, list[Report]]:
        if position == "author":
            return author, []
        someone = make_member(
            "someone",
            role=Role.OBSERVER if position == "observer reporter" else Role.MEMBER,
            verified=position != "unverified reporter",
        )
        if position == "bystander":
            return someone, []
        if position == "unverified reporter":
            EmailAddress.objects.filter(user=someone).update(verified=True)
        report = moderation.report_create(message=message, reporter=someone, reason="Advertising")
        if position == "unverified reporter":
            EmailAddress.objects.filter(user=someone).update(verified=False)
        if position == "deactivated reporter":
            User.objects.filter(pk=someone.pk).update(is_active=False)
        return someone, [report]

    return place


@pytest.fixture
def registrants(make_member: Callable[..., User]) -> tuple[User, User]:
    """Two verified members of wg1 who register for events in the scenarios."""
    return make_member("first"), make_member("second")


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
    member_as: Callable[..., User],
    author: User,
    room: Room,
    post: Callable[..., Message],
) -> None:
    # Arrange
    _scenario, role, verified, relation, expected = case
    someone = member_as(role=role, verified=verified)
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
    someone: User,
    author: User,
    room: Room,
    post: Callable[..., Message],
) -> None:
    # Arrange
    _scenario, body, relation, replied_to, expected = case
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
    someone: User,
    author: User,
    room: Room,
    post: Callable[..., Message],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from forums import services as forum_services

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
    member_as: Callable[..., User],
    chair: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _scenario, group, role, verified, expected = case
    someone = member_as(role=role, verified=verified, group=group)

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
    registrants: tuple[User, User], chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    stays, leaves = registrants
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
    registrants: tuple[User, User], chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    first, second = registrants
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
    someone: User, author: User, room: Room, post: Callable[..., Message]
) -> None:
    from django.urls import reverse

    message = post(author=author, room=room, body="Over to you, @someone.")

    row = Notification.objects.get(recipient=someone)
    assert (row.url, row.title, row.snippet) == (
        reverse("thread_detail", args=[message.thread_id]) + f"#m-{message.pk}",
        "Ana Autora mentioned you in “Labour inspection”",
        "Over to you, @someone.",
    )


# --- Moderation outcome on my report --------------------------------------------------------------

MODERATION_TABLE = [
    # (scenario, position, outcome, expected kinds)
    ("reporter, message hidden", "reporter", "hidden", ["moderation"]),
    ("reporter, report dismissed", "reporter", "dismissed", ["moderation"]),
    ("unverified reporter", "unverified reporter", "hidden", []),
    ("deactivated reporter", "deactivated reporter", "hidden", []),
    ("observer reporter", "observer reporter", "dismissed", ["moderation"]),
    ("member who did not report", "bystander", "hidden", []),
    ("author of the reported message", "author", "hidden", []),
]


@pytest.mark.parametrize("case", MODERATION_TABLE, ids=[row[0] for row in MODERATION_TABLE])
def test_moderation_outcome_recipients_by_position(
    *,
    case: tuple[str, str, str, list[str]],
    make_member: Callable[..., User],
    reporter_in: Callable[[str, Message], tuple[User, list[Report]]],
    author: User,
    chair: User,
    room: Room,
    post: Callable[..., Message],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from forums import moderation

    # Arrange: `someone` holds the position; a second member reports in every scenario, so
    # that a bystander or the author is left out of a resolution that does notify someone.
    _scenario, position, outcome, expected = case
    message = post(author=author, room=room, body="Off-topic advertising.")
    other = make_member("other")
    reports = [moderation.report_create(message=message, reporter=other, reason="Spam")]
    someone, own_reports = reporter_in(position, message)
    reports += own_reports
    Notification.objects.all().delete()

    # Act: hiding closes every open report at once; dismissing closes each one.
    with django_capture_on_commit_callbacks(execute=True):
        if outcome == "hidden":
            moderation.report_resolve(report=reports[0], actor=chair, outcome="hidden")
        else:
            for report in reports:
                moderation.report_resolve(report=report, actor=chair, outcome="dismissed")

    # Assert
    assert (_kinds(someone), _kinds(other), _kinds(chair)) == (expected, ["moderation"], [])


def test_moderation_outcome_title_snippet_and_link(
    *,
    reporter: User,
    reported: tuple[Message, Report],
    chair: User,
    room: Room,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.urls import reverse

    from forums import moderation

    # Arrange
    message, report = reported

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        moderation.report_resolve(report=report, actor=chair, outcome="hidden")

    # Assert: the outcome and where, not the moderator's name; the link goes to the message.
    row = Notification.objects.get(recipient=reporter)
    assert (row.kind, row.actor_id, row.title, row.snippet, row.url, row.email_mode) == (
        "moderation",
        None,
        "A moderator reviewed your report: the message is now hidden",
        f"“Inspection data” in {room.title}",
        reverse("thread_detail", args=[message.thread_id]) + f"#m-{message.pk}",
        "daily",
    )


def test_moderation_outcome_dismissed_says_the_message_stays(
    *,
    reporter: User,
    reported: tuple[Message, Report],
    chair: User,
    room: Room,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from forums import moderation

    _message, report = reported

    with django_capture_on_commit_callbacks(execute=True):
        moderation.report_resolve(report=report, actor=chair, outcome="dismissed")

    row = Notification.objects.get(recipient=reporter)
    assert (row.title, row.snippet) == (
        "A moderator reviewed your report: the message stays as it is",
        f"“Inspection data” in {room.title}",
    )


@pytest.mark.parametrize("reporter_language", ["es"])
def test_moderation_outcome_title_in_the_reporters_language(
    *,
    reporter: User,
    reported: tuple[Message, Report],
    chair: User,
    room: Room,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.utils import translation

    from forums import moderation
    from notifications.services import render

    _message, report = reported

    with django_capture_on_commit_callbacks(execute=True):
        moderation.report_resolve(report=report, actor=chair, outcome="dismissed")

    row = Notification.objects.get(recipient=reporter)
    with translation.override("es"):
        expected = render(
            "moderation",
            {"outcome": "dismissed", "thread": "Inspection data", "room": room.title},
            tz_name=reporter.timezone,
        )
    assert (row.title, row.snippet) == expected
    assert row.title.startswith("Un moderador")


def test_moderation_outcome_hiding_an_unreported_message_tells_nobody(
    author: User,
    chair: User,
    room: Room,
    post: Callable[..., Message],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from forums import moderation

    message = post(author=author, room=room, body="Off-topic")
    Notification.objects.all().delete()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        moderation.message_hide(message=message, actor=chair, reason="Off-topic")

    assert (Notification.objects.count(), len(callbacks)) == (0, 1)  # only the live frame


def test_moderation_outcome_not_sent_when_the_resolution_rolls_back(
    *,
    reporter: User,
    reported: tuple[Message, Report],
    chair: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.db import transaction

    from forums import moderation, signals

    _message, report = reported
    sent: list[dict[str, Any]] = []

    def capture(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    signals.reports_resolved.connect(capture)
    try:
        # Act: one resolution rolls back, the next commits.
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(RuntimeError),
            transaction.atomic(),
        ):
            moderation.report_resolve(report=report, actor=chair, outcome="dismissed")
            raise RuntimeError("rolled back")
        assert (sent, Notification.objects.filter(recipient=reporter).count()) == ([], 0)
        with django_capture_on_commit_callbacks(execute=True):
            moderation.report_resolve(report=report, actor=chair, outcome="dismissed")
    finally:
        signals.reports_resolved.disconnect(capture)

    # Assert: one signal, after commit, with the reporter and the outcome.
    assert [(s["reporter_ids"], s["outcome"], s["actor_id"]) for s in sent] == [
        ([reporter.pk], "dismissed", chair.pk)
    ]
    assert _kinds(reporter) == ["moderation"]
