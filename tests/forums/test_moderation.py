"""Moderation: pin, lock, room settings, hiding, mutes, reports; services, frames and pages."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from community.models import Role, User
from forums import moderation, services
from forums.models import Message, Report, Room, RoomMute, Thread
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, member_in

pytestmark = pytest.mark.django_db

Frames = list[tuple[str, dict[str, Any]]]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def group_of(room: Room) -> str:
    return f"room.{room.pk}"


# --- Threads ----------------------------------------------------------------------------------


def test_thread_pin_set_publishes_thread_updated_after_commit(
    thread: Thread, chair: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        moderation.thread_pin_set(thread=thread, actor=chair, pinned=True)
        assert frames == []
    for callback in callbacks:
        callback()

    thread.refresh_from_db()
    assert thread.pinned is True
    assert [(group, frame["type"], frame["thread"]["pinned"]) for group, frame in frames] == [
        (group_of(thread.room), "thread.updated", True)
    ]
    assert frames[0][1]["room"] == "wg1-a"


def test_thread_pin_set_publishes_nothing_on_rollback(
    thread: Thread, chair: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        moderation.thread_pin_set(thread=thread, actor=chair, pinned=True)
        raise RuntimeError("rolled back")

    thread.refresh_from_db()
    assert (thread.pinned, callbacks, frames) == (False, [], [])


def test_thread_pin_set_unchanged_publishes_nothing(
    thread: Thread, chair: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        moderation.thread_pin_set(thread=thread, actor=chair, pinned=False)

    assert frames == []


def test_thread_pin_set_member_refused(thread: Thread, member: User) -> None:
    with pytest.raises(PermissionDenied):
        moderation.thread_pin_set(thread=thread, actor=member, pinned=True)

    thread.refresh_from_db()
    assert thread.pinned is False


def test_thread_lock_set_refuses_member_posts_not_moderator(
    thread: Thread, member: User, chair: User
) -> None:
    moderation.thread_lock_set(thread=thread, actor=chair, locked=True)

    with pytest.raises(PermissionDenied) as refused:
        services.message_post(thread=thread, author=member, body="Hi", client_id=uuid.uuid4())
    _message, created = services.message_post(
        thread=thread, author=chair, body="Closing words", client_id=uuid.uuid4()
    )

    assert (services.error_code(refused.value), created) == ("thread_locked", True)


def test_thread_lock_set_by_secretariat_of_any_group(thread: Thread, secretariat: User) -> None:
    moderation.thread_lock_set(thread=thread, actor=secretariat, locked=True)

    thread.refresh_from_db()
    assert thread.locked is True


def test_thread_moderate_page_pins_for_chair(thread: Thread, chair: User) -> None:
    response = signed_in(chair).post(
        reverse("thread_moderate", args=[thread.pk]), {"action": "pin"}
    )

    thread.refresh_from_db()
    assert (response.status_code, thread.pinned) == (302, True)


def test_thread_moderate_page_member_forbidden(thread: Thread, member: User) -> None:
    response = signed_in(member).post(
        reverse("thread_moderate", args=[thread.pk]), {"action": "lock"}
    )

    thread.refresh_from_db()
    assert (response.status_code, thread.locked) == (403, False)


# --- Rooms ------------------------------------------------------------------------------------


def test_room_settings_set_locks_room_and_publishes(
    room: Room, chair: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        moderation.room_settings_set(
            room=room, actor=chair, state=Room.State.LOCKED, slow_mode_seconds=30
        )

    room.refresh_from_db()
    assert (room.state, room.slow_mode_seconds) == ("locked", 30)
    assert frames == [
        (
            group_of(room),
            {
                "type": "room.updated",
                "room": "wg1-a",
                "seq": 0,
                "state": "locked",
                "slow_mode_seconds": 30,
            },
        )
    ]


def test_room_settings_set_locked_room_refuses_member(
    thread: Thread, member: User, chair: User
) -> None:
    moderation.room_settings_set(
        room=thread.room, actor=chair, state=Room.State.LOCKED, slow_mode_seconds=0
    )

    with pytest.raises(PermissionDenied) as refused:
        services.message_post(thread=thread, author=member, body="Hi", client_id=uuid.uuid4())

    assert services.error_code(refused.value) == "room_locked"


def test_room_settings_set_chair_cannot_archive(room: Room, chair: User) -> None:
    with pytest.raises(PermissionDenied):
        moderation.room_settings_set(
            room=room, actor=chair, state=Room.State.ARCHIVED, slow_mode_seconds=0
        )

    room.refresh_from_db()
    assert room.state == "open"


def test_room_settings_set_secretariat_archives(room: Room, secretariat: User) -> None:
    moderation.room_settings_set(
        room=room, actor=secretariat, state=Room.State.ARCHIVED, slow_mode_seconds=0
    )

    room.refresh_from_db()
    assert room.state == "archived"


def test_room_settings_set_negative_slow_mode_invalid(room: Room, chair: User) -> None:
    with pytest.raises(ValidationError) as invalid:
        moderation.room_settings_set(room=room, actor=chair, state="open", slow_mode_seconds=-1)

    assert list(invalid.value.message_dict) == ["slow_mode_seconds"]


def test_room_settings_slow_mode_refuses_second_message(
    thread: Thread, member: User, chair: User
) -> None:
    moderation.room_settings_set(room=thread.room, actor=chair, state="open", slow_mode_seconds=60)
    services.message_post(thread=thread, author=member, body="One", client_id=uuid.uuid4())

    with pytest.raises(ValidationError) as limited:
        services.message_post(thread=thread, author=member, body="Two", client_id=uuid.uuid4())

    assert services.error_code(limited.value) == "rate_limited"


# --- Hiding -----------------------------------------------------------------------------------


def test_message_hide_publishes_without_body_and_resolves_reports(
    thread: Thread,
    member: User,
    chair: User,
    frames: Frames,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"), body="Rude words")
    report = moderation.report_create(message=message, reporter=member, reason="Rude")

    with django_capture_on_commit_callbacks(execute=True):
        moderation.message_hide(message=message, actor=chair, reason="Insults")

    message.refresh_from_db()
    report.refresh_from_db()
    assert (message.hidden_reason, report.outcome, report.resolved_by) == (
        "Insults",
        "hidden",
        chair,
    )
    # The reporter is also told on their own group (a `notification` frame): the room gets one.
    ((group, frame),) = [(g, f) for g, f in frames if g == group_of(thread.room)]
    assert (group, frame["type"], frame["message"]["hidden"], frame["message"]["body"]) == (
        group_of(thread.room),
        "message.hidden",
        True,
        "",
    )


def test_message_hide_member_refused(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread)

    with pytest.raises(PermissionDenied):
        moderation.message_hide(message=message, actor=member, reason="I dislike it")

    message.refresh_from_db()
    assert message.hidden_at is None


def test_message_hide_without_reason_invalid(thread: Thread, chair: User) -> None:
    message = MessageFactory(thread=thread)

    with pytest.raises(ValidationError) as invalid:
        moderation.message_hide(message=message, actor=chair, reason="   ")

    assert list(invalid.value.message_dict) == ["reason"]


def test_message_unhide_publishes_with_body(
    thread: Thread, chair: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    message = MessageFactory(thread=thread, body="Fine after all", hidden_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        moderation.message_unhide(message=message, actor=chair)

    message.refresh_from_db()
    assert (message.hidden_at, [f["message"]["body"] for _g, f in frames]) == (
        None,
        ["Fine after all"],
    )
    assert frames[0][1]["type"] == "message.unhidden"


def test_message_hide_page_hides_for_chair(thread: Thread, chair: User) -> None:
    message = MessageFactory(thread=thread)

    response = signed_in(chair).post(
        reverse("message_hide", args=[message.pk]), {"reason": "Off topic"}
    )

    message.refresh_from_db()
    assert (response.status_code, message.hidden_reason) == (302, "Off topic")


def test_message_hide_page_member_forbidden(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread)

    response = signed_in(member).get(reverse("message_hide", args=[message.pk]))

    assert response.status_code == 403


# --- Mutes ------------------------------------------------------------------------------------


def test_member_mute_then_check_not_muted_refuses(
    room: Room, member: User, chair: User, frames: Frames, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        mute = moderation.member_mute(
            room=room, member=member, actor=chair, minutes=60, reason="Spam"
        )

    with pytest.raises(moderation.Muted) as muted:
        moderation.check_not_muted(member=member, room=room)

    assert (muted.value.until, services.error_code(muted.value)) == (mute.until, "forbidden")
    assert frames == [
        (
            f"user.{member.pk}",
            {
                "type": "member.muted",
                "room": "wg1-a",
                "until": mute.until.isoformat(),
                "reason": "Spam",
            },
        )
    ]


def test_check_not_muted_other_room_allowed(room: Room, member: User, chair: User) -> None:
    moderation.member_mute(room=room, member=member, actor=chair, minutes=60, reason="Spam")

    result = moderation.check_not_muted(member=member, room=Room.objects.get(slug="wg1-b"))

    assert result is None


def test_check_not_muted_expired_mute_allowed(room: Room, member: User, chair: User) -> None:
    RoomMute.objects.create(
        room=room, member=member, by=chair, reason="Old", until=timezone.now() - timedelta(1)
    )

    result = moderation.check_not_muted(member=member, room=room)

    assert result is None


def test_member_mute_moderator_cannot_be_muted(room: Room, chair: User, secretariat: User) -> None:
    with pytest.raises(ValidationError) as invalid:
        moderation.member_mute(room=room, member=chair, actor=secretariat, minutes=60, reason="x")

    assert list(invalid.value.message_dict) == ["member"]


def test_member_mute_by_member_refused(room: Room, member: User) -> None:
    other = member_in("wg1")

    with pytest.raises(PermissionDenied):
        moderation.member_mute(room=room, member=other, actor=member, minutes=60, reason="x")

    assert RoomMute.objects.count() == 0


def test_mute_lift_ends_mute(room: Room, member: User, chair: User) -> None:
    mute = moderation.member_mute(room=room, member=member, actor=chair, minutes=60, reason="x")

    moderation.mute_lift(mute=mute, actor=chair)

    assert moderation.active_mute(member=member, room=room) is None


def test_message_post_muted_member_refused(thread: Thread, member: User, chair: User) -> None:
    moderation.member_mute(room=thread.room, member=member, actor=chair, minutes=60, reason="x")

    with pytest.raises(PermissionDenied):
        services.message_post(thread=thread, author=member, body="Hi", client_id=uuid.uuid4())

    assert Message.objects.filter(thread=thread).count() == 0


def test_thread_page_muted_member_sees_no_form(thread: Thread, member: User, chair: User) -> None:
    moderation.member_mute(room=thread.room, member=member, actor=chair, minutes=60, reason="Spam")

    response = signed_in(member).get(reverse("thread_detail", args=[thread.pk]))

    html = response.content.decode()
    assert ("data-compose" in html, "muted you in this room" in html) == (False, True)


def test_message_mute_page_mutes_author(thread: Thread, member: User, chair: User) -> None:
    message = MessageFactory(thread=thread, author=member)

    response = signed_in(chair).post(
        reverse("message_mute", args=[message.pk]), {"minutes": "60", "reason": "Flooding"}
    )

    mute = RoomMute.objects.get()
    assert (response.status_code, mute.member, mute.reason) == (302, member, "Flooding")


# --- Reports ----------------------------------------------------------------------------------


def test_report_create_twice_is_one_open_report(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))

    first = moderation.report_create(message=message, reporter=member, reason="Spam")
    second = moderation.report_create(message=message, reporter=member, reason="Spam again")

    assert (first.pk, Report.objects.count()) == (second.pk, 1)


def test_report_create_own_message_invalid(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member)

    with pytest.raises(ValidationError):
        moderation.report_create(message=message, reporter=member, reason="Oops")

    assert Report.objects.count() == 0


def test_report_create_observer_may_report(thread: Thread, observer: User) -> None:
    message = MessageFactory(thread=thread)

    report = moderation.report_create(message=message, reporter=observer, reason="Wrong data")

    assert (report.reporter, report.resolved_at) == (observer, None)


def test_report_resolve_dismissed_keeps_message(thread: Thread, member: User, chair: User) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))
    report = moderation.report_create(message=message, reporter=member, reason="Meh")

    resolved = moderation.report_resolve(report=report, actor=chair, outcome="dismissed")

    message.refresh_from_db()
    assert (resolved.outcome, resolved.resolved_by, message.hidden_at) == ("dismissed", chair, None)


def test_report_resolve_member_refused(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))
    report = moderation.report_create(message=message, reporter=member, reason="Meh")

    with pytest.raises(PermissionDenied):
        moderation.report_resolve(report=report, actor=member, outcome="dismissed")

    report.refresh_from_db()
    assert report.resolved_at is None


def test_message_report_page_creates_report(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))

    response = signed_in(member).post(
        reverse("message_report", args=[message.pk]), {"reason": "Personal data"}
    )

    assert (response.status_code, list(Report.objects.values_list("reason", flat=True))) == (
        302,
        ["Personal data"],
    )


def test_message_report_page_empty_reason_shows_error(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread)

    response = signed_in(member).post(reverse("message_report", args=[message.pk]), {"reason": ""})

    assert (response.status_code, Report.objects.count()) == (400, 0)


def test_moderation_queue_lists_open_reports_for_chair(
    thread: Thread, member: User, chair: User
) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"), body="Buy cheap watches")
    open_report = moderation.report_create(message=message, reporter=member, reason="Spam")
    closed = moderation.report_create(
        message=MessageFactory(thread=thread, author=chair), reporter=member, reason="Old"
    )
    moderation.report_resolve(report=closed, actor=chair, outcome="dismissed")

    response = signed_in(chair).get(reverse("room_moderation", args=["wg1-a"]))

    assert [r.pk for r in response.context["reports"]] == [open_report.pk]
    assert "Buy cheap watches" in response.content.decode()


@pytest.mark.parametrize("who", ["member", "observer"])
def test_moderation_queue_forbidden_to_non_moderators(
    request: pytest.FixtureRequest, room: Room, who: str
) -> None:
    user = request.getfixturevalue(who)

    response = signed_in(user).get(reverse("room_moderation", args=[room.slug]))

    assert response.status_code == 403


def test_moderation_queue_resolve_hides_message(thread: Thread, member: User, chair: User) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))
    report = moderation.report_create(message=message, reporter=member, reason="Insult")

    signed_in(chair).post(reverse("report_resolve", args=[report.pk]), {"outcome": "hidden"})

    message.refresh_from_db()
    assert (message.hidden_at is not None, message.hidden_reason) == (True, "Insult")


def test_moderation_queue_room_settings_form_saves(room: Room, chair: User) -> None:
    response = signed_in(chair).post(
        reverse("room_moderation", args=[room.slug]),
        {"state": "locked", "slow_mode_seconds": "15"},
    )

    room.refresh_from_db()
    assert (response.status_code, room.state, room.slow_mode_seconds) == (302, "locked", 15)


def test_moderation_queue_vice_chair_allowed(room: Room) -> None:
    vice = member_in("wg1", role=Role.VICE_CHAIR)

    response = signed_in(vice).get(reverse("room_moderation", args=[room.slug]))

    assert response.status_code == 200


def test_moderation_queue_chair_of_other_group_forbidden(room: Room) -> None:
    other_chair = member_in("wg2", role=Role.CHAIR)

    response = signed_in(other_chair).get(reverse("room_moderation", args=[room.slug]))

    assert response.status_code == 403


@pytest.mark.parametrize("count", [1, 3])
def test_moderation_queue_query_count_constant(
    thread: Thread, chair: User, count: int, django_assert_num_queries: Any
) -> None:
    for _ in range(count):
        reporter = member_in("wg1")
        moderation.report_create(
            message=MessageFactory(thread=thread), reporter=reporter, reason="Spam"
        )
    client = signed_in(chair)

    # session, user, room, verified email, memberships, reports, report counts, mutes,
    # the notification bell's count.
    with django_assert_num_queries(9):
        response = client.get(reverse("room_moderation", args=[thread.room.slug]))

    assert len(response.context["reports"]) == count
