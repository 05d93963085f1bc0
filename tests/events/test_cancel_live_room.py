"""Cancelling an event makes its own live room read-only for delegates (locked), once committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from community.models import Role, User
from events import services
from events.models import Event
from forums import services as forum_services
from forums.models import Room
from notifications import bus
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


class FakeLayer:
    """Records what the bus sends: group_send is only reached after commit."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, json.loads(message["text"])))


@pytest.fixture
def layer(monkeypatch: pytest.MonkeyPatch) -> FakeLayer:
    fake = FakeLayer()
    monkeypatch.setattr(bus, "get_channel_layer", lambda: fake)
    return fake


def room_frames(layer: FakeLayer, room: Room) -> list[dict[str, Any]]:
    return [
        f for g, f in layer.sent if g == bus.room_group(room.pk) and f["type"] == "room.updated"
    ]


def test_event_cancel_locks_own_live_room_after_commit(
    workshop: Event,
    chair: User,
    layer: FakeLayer,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    # Arrange
    room = services.live_room_create(event=workshop, actor=chair)
    delegate = MembershipFactory(member=UserFactory(), role=Role.MEMBER).member

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        services.event_cancel(event=workshop, actor=chair, message="Postponed")

    # Assert: locked, readable, a delegate may no longer post, sockets told once.
    room.refresh_from_db()
    assert room.state == Room.State.LOCKED
    assert room_frames(layer, room) == [
        {
            "type": "room.updated",
            "room": room.slug,
            "seq": room.last_seq,
            "state": "locked",
            "slow_mode_seconds": 0,
        }
    ]
    with pytest.raises(forum_services.Refused) as refused:
        forum_services.thread_create(room=room, author=delegate, title="Still on?", body="?")
    assert refused.value.code == "room_locked"


def test_event_cancel_rolled_back_leaves_room_open_and_sends_nothing(
    workshop: Event, chair: User, layer: FakeLayer
) -> None:
    # Arrange
    room = services.live_room_create(event=workshop, actor=chair)

    # Act: the cancellation's transaction rolls back.
    with pytest.raises(RuntimeError), transaction.atomic():
        services.event_cancel(event=workshop, actor=chair)
        raise RuntimeError

    # Assert
    room.refresh_from_db()
    assert room.state == Room.State.OPEN
    assert room_frames(layer, room) == []


def test_event_cancel_leaves_linked_topic_room_open(
    make_event: Callable[..., Event], chair: User, layer: FakeLayer
) -> None:
    # Arrange: a topic room shared with the rest of the group, linked to the event.
    topic_room = Room.objects.get(slug="wg1-a")
    event = make_event(room=topic_room)

    # Act
    services.event_cancel(event=event, actor=chair)

    # Assert
    topic_room.refresh_from_db()
    assert topic_room.state == Room.State.OPEN
    assert room_frames(layer, topic_room) == []


def test_event_cancel_without_live_room_still_cancels(workshop: Event, chair: User) -> None:
    cancelled = services.event_cancel(event=workshop, actor=chair)

    assert (cancelled.status, cancelled.room_id) == (Event.Status.CANCELLED, None)
