"""Rooms readable by their working group only (`Room.visibility == "working_group"`).

Every transport asks community.policy.can_read_room; these tests check the policy, then each
derived read (pages, API, search, attachments, follows, notifications, the socket), and that a
denial looks like a missing room.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.admin.sites import AdminSite
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import Http404
from django.test import Client, RequestFactory

from community import policy
from community.models import Membership, Role, User, WorkingGroup
from forums import search, selectors, services
from forums.admin import RoomAdmin
from forums.models import Attachment, Follow, Room, Thread
from notifications.models import Notification
from tests.factories import UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory, member_in
from tests.reliability.support import member_socket, recv, recv_until, send

pytestmark = pytest.mark.django_db


def group_room(slug: str = "wg1-private", group: str = "wg1") -> Room:
    room = Room(
        slug=slug,
        title="Private room",
        working_group=WorkingGroup.objects.get(slug=group),
        visibility=Room.Visibility.WORKING_GROUP,
    )
    room.full_clean()
    room.save()
    return room


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def outsider() -> User:
    """A verified participant of no working group."""
    return UserFactory()


# --- Model and policy -------------------------------------------------------------------------


def test_room_visibility_defaults_to_network_for_topic_rooms(plan: None) -> None:
    assert set(Room.objects.values_list("visibility", flat=True)) == {Room.Visibility.NETWORK}


def test_room_working_group_visibility_without_group_refused(plan: None) -> None:
    room = Room(slug="nowhere", title="Nowhere", visibility=Room.Visibility.WORKING_GROUP)

    with pytest.raises(ValidationError) as caught:
        room.full_clean()

    assert [e.code for e in caught.value.error_dict["visibility"]] == ["visibility_needs_group"]


def test_room_unknown_visibility_refused(plan: None) -> None:
    room = Room(slug="odd", title="Odd", visibility="everyone")

    with pytest.raises(ValidationError) as caught:
        room.full_clean()

    assert [e.code for e in caught.value.error_dict["visibility"]] == ["invalid_choice"]


def test_can_read_group_room_by_role(plan: None, secretariat: User) -> None:
    room = group_room()
    people = {
        "observer": member_in("wg1", role=Role.OBSERVER),
        "member": member_in("wg1"),
        "chair": member_in("wg1", role=Role.CHAIR),
        "other group": member_in("wg2"),
        "outsider": outsider(),
        "secretariat": secretariat,
    }

    reads = {name: policy.can_read_room(who, room) for name, who in people.items()}
    posts = {name: policy.can_post_in_room(who, room) for name, who in people.items()}

    assert reads == {
        "observer": True,
        "member": True,
        "chair": True,
        "other group": False,
        "outsider": False,
        "secretariat": True,
    }
    assert posts == {
        "observer": False,
        "member": True,
        "chair": True,
        "other group": False,
        "outsider": False,
        "secretariat": True,
    }


def test_can_read_network_room_asks_no_roles(
    plan: None, member: User, django_assert_num_queries: Any
) -> None:
    room = Room.objects.get(slug="wg1-a")
    policy.forget_roles(member)
    member.__dict__["is_verified"] = True  # the cached_property, pre-filled

    with django_assert_num_queries(0):
        assert policy.can_read_room(member, room)


# --- Pages, API, search, attachments ----------------------------------------------------------


def test_group_room_page_denied_like_a_missing_room(plan: None, member: User) -> None:
    room = group_room()
    stranger = signed_in(member_in("wg2"))

    denied = stranger.get(f"/rooms/{room.slug}/")
    missing = stranger.get("/rooms/wg9-z/")
    allowed = signed_in(member).get(f"/rooms/{room.slug}/")

    assert (denied.status_code, missing.status_code, allowed.status_code) == (404, 404, 200)
    assert "Working group only" in allowed.text


def test_room_list_shows_group_room_with_badge_to_members_only(plan: None, member: User) -> None:
    group_room()

    own = signed_in(member).get("/rooms/").text
    other = signed_in(member_in("wg2")).get("/rooms/").text

    assert ("wg1-private" in own, "Working group only" in own) == (True, True)
    assert ("wg1-private" in other, "Working group only" in other) == (False, False)


def test_room_page_shows_visibility_to_moderators(plan: None, member: User) -> None:
    room = group_room()
    chair = member_in("wg1", role=Role.CHAIR)

    for_chair = signed_in(chair).get(f"/rooms/{room.slug}/").text
    for_member = signed_in(member).get(f"/rooms/{room.slug}/").text

    assert "Who reads this room: Working group only" in for_chair
    assert "Who reads this room" not in for_member


def test_api_rooms_and_threads_of_group_room(plan: None, member: User) -> None:
    room = group_room()
    thread = ThreadFactory(room=room, author=member)
    MessageFactory(thread=thread, author=member)
    stranger = signed_in(member_in("wg2"))

    own = {r["slug"]: r for r in signed_in(member).get("/api/v1/rooms/").json()}
    other = {r["slug"] for r in stranger.get("/api/v1/rooms/").json()}
    denied = [
        stranger.get(f"/api/v1/rooms/{room.slug}/threads/"),
        stranger.get(f"/api/v1/threads/{thread.pk}/messages/"),
    ]
    missing = [
        stranger.get("/api/v1/rooms/wg9-z/threads/"),
        stranger.get("/api/v1/threads/999999/messages/"),
    ]

    assert own["wg1-private"]["visibility"] == "working_group"
    assert own["wg1-a"]["visibility"] == "network"
    assert "wg1-private" not in other
    assert [(r.status_code, r.json()["code"]) for r in denied] == [
        (r.status_code, r.json()["code"]) for r in missing
    ]


def test_api_post_in_group_room_denied_to_outsider(plan: None, member: User) -> None:
    room = group_room()
    thread = ThreadFactory(room=room, author=member)

    response = signed_in(member_in("wg2")).post(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"body": "let me in", "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )

    assert response.status_code == 404
    assert thread.messages.count() == 0


def test_search_does_not_find_group_room_messages_for_outsiders(plan: None, member: User) -> None:
    thread = ThreadFactory(room=group_room(), author=member, title="Budget")
    message = MessageFactory(thread=thread, author=member, body="inspection quarterly figures")

    mine = search.search(member=member, filters=search.Filters(q="quarterly"))
    theirs = search.search(member=member_in("wg2"), filters=search.Filters(q="quarterly"))

    assert ([m.pk for m in mine.messages], [m.pk for m in theirs.messages]) == ([message.pk], [])


def test_attachment_of_group_room_missing_for_outsiders(
    plan: None, member: User, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    room = group_room()
    message = MessageFactory(thread=ThreadFactory(room=room, author=member), author=member)
    name = default_storage.save(f"attachments/t/{uuid.uuid4().hex}", ContentFile(b"x" * 10))
    attachment = Attachment.objects.create(
        message=message,
        room=room,
        uploader=member,
        file=name,
        original_name="plan.txt",
        content_type="text/plain",
        size=10,
        sha256="0" * 64,
    )

    with pytest.raises(Http404):
        selectors.attachment_for_member(attachment_id=attachment.pk, member=member_in("wg2"))
    assert selectors.attachment_for_member(attachment_id=attachment.pk, member=member) == attachment


def test_rooms_readable_query_count_same_for_1_and_3_group_rooms(
    plan: None, member: User, django_assert_num_queries: Any
) -> None:
    counts = []
    for slug in ("wg1-p1", "wg1-p2", "wg1-p3"):
        group_room(slug)
        fresh = User.objects.get(pk=member.pk)
        fresh.__dict__["is_verified"] = True
        with django_assert_num_queries(3):  # rooms, roles (once), unread counts
            rooms = selectors.rooms_readable(member=fresh)
        counts.append(len([r for r in rooms if r.visibility == Room.Visibility.WORKING_GROUP]))
    assert counts == [1, 2, 3]


# --- Follows and notifications ----------------------------------------------------------------


def test_follow_group_room_refused_to_outsider(plan: None) -> None:
    room = group_room()

    with pytest.raises(services.Refused):
        services.follow_set(member=member_in("wg2"), level="follow", room=room)

    assert Follow.objects.count() == 0


def test_follower_removed_from_group_gets_nothing_from_its_room(
    plan: None, member: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    room = group_room()
    follower = member_in("wg1")
    leaver = member_in("wg1")
    for who in (follower, leaver):
        services.follow_set(member=who, level="follow", room=room)
    Membership.objects.filter(member=leaver).delete()

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        thread = services.thread_create(room=room, author=member, title="Budget", body="Draft")

    # Assert
    told = list(
        Notification.objects.filter(target_id=thread.messages.get().pk).values_list(
            "recipient_id", flat=True
        )
    )
    assert told == [follower.pk]


# --- The socket -------------------------------------------------------------------------------


def _make_socket_world() -> tuple[Room, Thread, User, User]:
    room = group_room()
    author = member_in("wg1")
    removed = member_in("wg1")
    return room, ThreadFactory(room=room, author=author), author, removed


def _remove(member: User) -> None:
    Membership.objects.filter(member=member).delete()


def _post(thread: Thread, author: User, body: str) -> None:
    services.message_post(thread=thread, author=author, body=body, client_id=uuid.uuid4())


@pytest.mark.django_db(transaction=True)
async def test_socket_subscribe_to_group_room_forbidden_like_missing(plan: None) -> None:
    await database_sync_to_async(group_room)()
    stranger = await database_sync_to_async(member_in)("wg2")

    async with member_socket(stranger) as ws:
        await send(ws, {"type": "subscribe", "room": "wg1-private", "after": None})
        denied = await recv(ws)
        await send(ws, {"type": "subscribe", "room": "wg9-z", "after": None})
        missing = await recv(ws)

    assert (denied["type"], denied["code"]) == ("error", "forbidden")
    assert {k: v for k, v in denied.items() if k != "room"} == {
        k: v for k, v in missing.items() if k != "room"
    }


@pytest.mark.django_db(transaction=True)
async def test_socket_of_member_removed_from_group_leaves_group_room(plan: None) -> None:
    room, thread, author, removed = await database_sync_to_async(_make_socket_world)()

    async with member_socket(removed) as victim, member_socket(author) as other:
        for ws in (victim, other):
            await send(ws, {"type": "subscribe", "room": room.slug, "after": None})
            await recv_until(ws, "subscribed")
        await database_sync_to_async(_remove)(removed)
        gone = await recv_until(victim, "unsubscribed", seconds=5)
        await database_sync_to_async(_post)(thread, author, "after removal")
        seen_by_other = (await recv_until(other, "message.created"))["message"]["body"]
        later = []
        while not await victim.receive_nothing(timeout=0.5):
            later.append(await recv(victim, 1))

    assert gone == {"type": "unsubscribed", "room": room.slug, "reason": "forbidden"}
    assert seen_by_other == "after removal"
    assert [f for f in later if f.get("room") == room.slug] == []


@pytest.mark.django_db(transaction=True)
async def test_socket_leaves_room_made_group_only_by_the_admin(
    plan: None, secretariat: User
) -> None:
    outsider_member = await database_sync_to_async(member_in)("wg2")

    def make_private() -> None:
        room = Room.objects.get(slug="wg1-a")
        request = RequestFactory().post("/admin/")
        request.user = secretariat
        admin = RoomAdmin(Room, AdminSite())
        form_class = admin.get_form(request, room, change=True)
        data = {
            "slug": room.slug,
            "title": room.title,
            "description": room.description,
            "working_group": room.working_group_id,
            "topic": room.topic_id,
            "state": room.state,
            "visibility": Room.Visibility.WORKING_GROUP,
            "slow_mode_seconds": room.slow_mode_seconds,
        }
        form = form_class(data, instance=room)
        assert form.is_valid(), form.errors
        admin.save_model(request, form.save(commit=False), form, change=True)

    async with member_socket(outsider_member) as ws:
        await send(ws, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(ws, "subscribed")
        await database_sync_to_async(make_private)()
        gone = await recv_until(ws, "unsubscribed", seconds=5)

    assert gone == {"type": "unsubscribed", "room": "wg1-a", "reason": "forbidden"}


# --- The service ------------------------------------------------------------------------------


def test_room_visibility_set_without_group_refused_and_changes_nothing(
    plan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = services.room_create(slug="network-wide", title="Network-wide")
    published: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        services.bus, "publish_on_commit", lambda g, f: published.append((g, dict(f)))
    )

    with pytest.raises(ValidationError) as caught:
        services.room_visibility_set(room=room, visibility=Room.Visibility.WORKING_GROUP)

    assert [e.code for e in caught.value.error_dict["visibility"]] == ["visibility_needs_group"]
    assert (Room.objects.get(pk=room.pk).visibility, published) == (Room.Visibility.NETWORK, [])


def test_room_visibility_set_publishes_access_changed_after_commit_only(
    plan: None, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = Room.objects.get(slug="wg1-a")
    sent: list[tuple[str, str]] = []

    class Layer:
        async def group_send(self, group: str, envelope: dict[str, Any]) -> None:
            sent.append((group, envelope["text"]))

    monkeypatch.setattr("notifications.bus.get_channel_layer", Layer)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.room_visibility_set(
            room=room, visibility=Room.Visibility.WORKING_GROUP, working_group=room.working_group
        )
    before_commit = list(sent)
    for callback in callbacks:
        callback()

    assert Room.objects.get(pk=room.pk).visibility == Room.Visibility.WORKING_GROUP
    assert (before_commit, sent) == ([], [(f"room.{room.pk}", '{"type":"access.changed"}')])


async def test_frames_queued_for_a_room_taken_away_are_dropped() -> None:
    # Frames of the room that waited in the socket's backlog while the access re-check ran: the
    # gateway drops them once the re-check took the room away.
    from tests.forums.test_hub import bare_gateway

    gateway, sent = bare_gateway()
    gateway.forbidden_rooms = frozenset({"wg1-private"})
    frames = [
        '{"type":"message.created","room":"wg1-private","seq":7}',
        '{"type":"typing","room":"wg1-private"}',
        '{"type":"message.created","room":"wg1-a","seq":3}',
        '{"type":"notification","unread_count":1}',
    ]
    for text in frames:
        await gateway.relay(text)

    assert sent == frames[2:]
