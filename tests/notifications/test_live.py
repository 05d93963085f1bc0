"""Live delivery through the full ASGI application: the bell's frames reach every tab."""

from __future__ import annotations

import io
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import Client
from minga.asgi import application

from community.models import User
from notifications import services
from notifications.models import Notification
from tests.factories import UserFactory

ORIGIN = (b"origin", b"http://localhost")


def _session_headers(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def _setup() -> tuple[User, User]:
    call_command("seed_plan_of_action", stdout=io.StringIO())
    return UserFactory(handle="rosa"), UserFactory(handle="ana")


def _mention(member: User, key: str) -> Notification:
    services.notify(
        kind="mention",
        actor=None,
        target_type="forums.message",
        target_id=1,
        url="/rooms/wg1-a/threads/1/#message-1",
        occurrence_key=key,
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": "Data", "body": "Hello"},
    )
    return Notification.objects.get(occurrence_key=key, recipient=member)


async def _open(user: User) -> WebsocketCommunicator:
    headers = await database_sync_to_async(_session_headers)(user)
    socket = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await socket.connect()
    assert connected is True
    # A ping round-trip proves the gateway joined `user.<id>` before we publish.
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    return socket


async def _notification_reaches_every_tab_without_subscribing() -> None:
    rosa, ana = await database_sync_to_async(_setup)()
    tab_one, tab_two, other = await _open(rosa), await _open(rosa), await _open(ana)
    try:
        row = await database_sync_to_async(_mention)(rosa, "message:1")
        first = await tab_one.receive_json_from(timeout=5)
        second = await tab_two.receive_json_from(timeout=5)
        nothing_for_ana = await other.receive_nothing(timeout=0.3)
    finally:
        for socket in (tab_one, tab_two, other):
            await socket.disconnect()

    expected = {
        "type": "notification",
        "notification": {
            "id": row.pk,
            "kind": "mention",
            "title": "Ana mentioned you in “Data”",
            "snippet": "Hello",
            "url": "/rooms/wg1-a/threads/1/#message-1",
            "created_at": row.created.isoformat(),
            "read": False,
        },
        "unread_count": 1,
    }
    assert (first, second, nothing_for_ana) == (expected, expected, True)


@pytest.mark.django_db(transaction=True)
async def test_notification_frame_reaches_every_tab_of_recipient() -> None:
    await _notification_reaches_every_tab_without_subscribing()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_notification_frame_through_redis_layer(redis_layer: str) -> None:
    await _notification_reaches_every_tab_without_subscribing()


@pytest.mark.django_db(transaction=True)
async def test_mark_read_in_one_tab_updates_the_other() -> None:
    # Arrange
    rosa, _ana = await database_sync_to_async(_setup)()
    first_row = await database_sync_to_async(_mention)(rosa, "message:1")
    await database_sync_to_async(_mention)(rosa, "message:2")
    tab_one, tab_two = await _open(rosa), await _open(rosa)

    # Act
    try:
        await database_sync_to_async(services.notifications_mark_read)(
            member=rosa, ids=[first_row.pk]
        )
        frames: list[Any] = [
            await tab_one.receive_json_from(timeout=5),
            await tab_two.receive_json_from(timeout=5),
        ]
    finally:
        await tab_one.disconnect()
        await tab_two.disconnect()

    # Assert
    expected = {"type": "notification.read", "ids": [first_row.pk], "unread_count": 1}
    assert frames == [expected, expected]
