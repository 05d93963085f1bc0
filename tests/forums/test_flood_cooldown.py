"""The posting cooldown (forums.services, FLOOD_COOLDOWN_MAX_SECONDS): after the posting limit or
slow mode refused a member in a room, their next posts there are refused before the room's row
lock, over the API and the socket alike, until the window frees; a repeat client_id still gets its
stored message; a cache that cannot answer leaves the decision to the locked check (fail open).
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from community.models import User
from community.services import api_token_create
from forums import services
from forums.models import Message, Room, Thread
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.spies import record_calls

pytestmark = pytest.mark.django_db

ORIGIN = (b"origin", b"http://localhost")


def _api(member: User) -> Client:
    _token, key = api_token_create(member=member, name="tests")
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def _api_post(client: Client, thread: Thread, body: str, client_id: uuid.UUID | None = None) -> Any:
    return client.post(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"body": body, "client_id": str(client_id or uuid.uuid4())},
        content_type="application/json",
    )


def _post(thread: Thread, author: User, body: str, client_id: uuid.UUID | None = None) -> Message:
    message, _created = services.message_post(
        thread=thread, author=author, body=body, client_id=client_id or uuid.uuid4()
    )
    return message


def _locks(queries: CaptureQueriesContext) -> list[str]:
    """The statements that lock a row: SELECT ... FOR UPDATE, and the room's seq UPDATE."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if "FOR UPDATE" in q["sql"] or q["sql"].startswith('UPDATE "forums_room"')
    ]


def _refusal(thread: Thread, author: User) -> ValidationError:
    with pytest.raises(ValidationError) as excinfo:
        _post(thread, author, "refused")
    return excinfo.value


def _frozen_at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """timezone.now() answers `moment` (the services read the clock through it)."""
    monkeypatch.setattr(timezone, "now", lambda: moment)


# --- The API ----------------------------------------------------------------------------------


def test_api_post_during_cooldown_is_429_without_the_room_lock(
    thread: Thread, member: User, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    client = _api(member)
    assert _api_post(client, thread, "one").status_code == 201
    with CaptureQueriesContext(connection) as first:
        refused = _api_post(client, thread, "two")

    with CaptureQueriesContext(connection) as queries:
        response = _api_post(client, thread, "three")

    # The first refusal was decided under the lock; the next one before it, in three queries:
    # the token with the member's verified email, the thread with its room, the repeat check.
    assert (refused.status_code, len(_locks(first))) == (429, 1)
    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert response.json()["detail"] == refused.json()["detail"]
    assert (_locks(queries), len(queries)) == ([], 3)
    assert list(Message.objects.values_list("body", flat=True)) == ["one"]


def test_api_repeat_during_cooldown_gets_the_stored_message(
    thread: Thread, member: User, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    client = _api(member)
    client_id = uuid.uuid4()
    first = _api_post(client, thread, "one", client_id)
    assert _api_post(client, thread, "two").status_code == 429

    with CaptureQueriesContext(connection) as queries:
        repeat = _api_post(client, thread, "one again", client_id)

    assert (repeat.status_code, repeat.json()) == (201, first.json())
    assert _locks(queries) == []
    assert Message.objects.count() == 1


def test_api_thread_create_during_cooldown_is_429_and_a_repeat_gets_its_thread(
    room: Room, member: User, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    client = _api(member)
    client_id = uuid.uuid4()
    url = f"/api/v1/rooms/{room.slug}/threads/"
    opened = client.post(
        url, {"title": "A", "body": "a", "client_id": str(client_id)}, "application/json"
    )
    assert client.post(url, {"title": "B", "body": "b"}, "application/json").status_code == 429

    with CaptureQueriesContext(connection) as queries:
        again = client.post(url, {"title": "C", "body": "c"}, "application/json")
        repeat = client.post(
            url, {"title": "A", "body": "a", "client_id": str(client_id)}, "application/json"
        )

    assert (again.status_code, again.json()["code"]) == (429, "rate_limited")
    assert (repeat.status_code, repeat.json()["id"]) == (201, opened.json()["id"])
    assert _locks(queries) == []
    assert list(Thread.objects.values_list("title", flat=True)) == ["A"]


# --- The service ------------------------------------------------------------------------------


def test_post_during_cooldown_costs_one_query_and_the_same_text(
    thread: Thread, member: User, settings: Any, django_assert_num_queries: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    _post(thread, member, "one")
    under_lock = _refusal(thread, member)

    with django_assert_num_queries(1):  # the repeat check; no lock, no count
        before_lock = _refusal(thread, member)

    assert (services.error_code(before_lock), before_lock.messages) == (
        "rate_limited",
        under_lock.messages,
    )


def test_cooldown_is_per_member_and_room(
    thread: Thread, member: User, chair: User, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    _post(thread, member, "one")
    _refusal(thread, member)
    other_room = Room.objects.get(slug="wg1-b")
    elsewhere = Thread.objects.create(room=other_room, author=member, title="Elsewhere")

    by_chair = _post(thread, chair, "chair")
    in_other_room = _post(elsewhere, member, "other room")

    assert (by_chair.author_id, in_other_room.room_id) == (chair.pk, other_room.pk)


def test_slow_mode_refusal_before_the_lock_says_the_same_wait(
    thread: Thread, member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    Room.objects.filter(pk=thread.room_id).update(slow_mode_seconds=60)
    _frozen_at(monkeypatch, timezone.now())
    _post(thread, member, "first")
    under_lock = _refusal(thread, member)

    with CaptureQueriesContext(connection) as queries:
        before_lock = _refusal(thread, member)

    assert before_lock.messages == under_lock.messages
    assert "60" in under_lock.messages[0]
    assert _locks(queries) == []


def test_cooldown_ends_when_the_window_frees(
    thread: Thread, member: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 2)
    start = timezone.now()
    _frozen_at(monkeypatch, start)
    _post(thread, member, "one")
    _refusal(thread, member)
    _frozen_at(monkeypatch, start + timedelta(seconds=1.9))
    with CaptureQueriesContext(connection) as cooling:
        _refusal(thread, member)

    _frozen_at(monkeypatch, start + timedelta(seconds=2.1))
    later = _post(thread, member, "later")

    assert _locks(cooling) == []
    assert later.body == "later"


def test_cooldown_lasts_at_most_its_bound_then_the_lock_decides_again(
    thread: Thread, member: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 3600)
    start = timezone.now()
    _frozen_at(monkeypatch, start)
    _post(thread, member, "one")
    _refusal(thread, member)
    bound = services.FLOOD_COOLDOWN_MAX_SECONDS

    _frozen_at(monkeypatch, start + timedelta(seconds=bound - 0.1))
    with CaptureQueriesContext(connection) as cooling:
        _refusal(thread, member)
    _frozen_at(monkeypatch, start + timedelta(seconds=bound + 0.1))
    with CaptureQueriesContext(connection) as expired:
        refused = _refusal(thread, member)

    # Past the bound the locked count refuses again (the hour is not over), and cools down anew.
    assert (len(_locks(cooling)), len(_locks(expired))) == (0, 1)
    assert services.error_code(refused) == "rate_limited"
    assert cache.get(f"forums:flood:{member.pk}:{thread.room_id}") is not None


def test_unreachable_cache_fails_open_to_the_locked_check(
    thread: Thread,
    member: User,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    django_assert_num_queries: Any,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: every cache call raises
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "minga.cache.ResilientRedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    member.is_verified  # noqa: B018 - warm the per-request cache as in test_message_post_query_count
    member.organization  # noqa: B018

    with caplog.at_level(logging.WARNING, logger="minga.cache"):
        with django_assert_num_queries(5):  # as many as with a cache: no marker, no extra query
            first = _post(thread, member, "one")
        with CaptureQueriesContext(connection) as queries:
            refused = [services.error_code(_refusal(thread, member)) for _ in range(2)]

    # No marker could be kept: each refusal is decided under the lock, none is a 500.
    assert (first.body, refused, len(_locks(queries))) == ("one", ["rate_limited"] * 2, 2)
    assert {r.getMessage() for r in caplog.records} == {"cache unavailable"}
    assert Message.objects.count() == 1


# --- The socket -------------------------------------------------------------------------------


def _session_headers(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@asynccontextmanager
async def _socket(user: User) -> AsyncIterator[WebsocketCommunicator]:
    from minga.asgi import application

    headers = await database_sync_to_async(_session_headers)(user)
    ws = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _subprotocol = await ws.connect(timeout=5)
    assert connected
    try:
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "room": "wg1-a"}))
        while (await ws.receive_json_from(timeout=5))["type"] != "subscribed":
            pass
        yield ws
    finally:
        await ws.disconnect()


async def _answer(ws: WebsocketCommunicator, thread: Thread, body: str, client_id: str) -> Any:
    """Send a `message.send`; its ack or error (live frames skipped)."""
    frame = {"type": "message.send", "room": "wg1-a", "thread": thread.pk, "body": body}
    await ws.send_to(text_data=json.dumps({**frame, "client_id": client_id}))
    while True:
        answer = await ws.receive_json_from(timeout=5)
        if answer["type"] in {"ack", "error"}:
            return answer


@pytest.mark.django_db(transaction=True)
async def test_socket_sends_during_cooldown_are_refused_without_the_lock_on_every_tab(
    thread: Thread, member: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    locks = record_calls(monkeypatch, services, "_take_seq")
    # Posted over the API (or another process): the socket never acked it itself.
    stored = await database_sync_to_async(_post)(thread, member, "one", uuid.UUID(int=1))

    async with _socket(member) as tab, _socket(member) as other_tab:
        refused = [await _answer(tab, thread, f"flood {n}", str(uuid.uuid4())) for n in range(3)]
        on_other_tab = await _answer(other_tab, thread, "flood", str(uuid.uuid4()))
        repeat = await _answer(tab, thread, "one", str(uuid.UUID(int=1)))

    # One lock for "one", one for the first refusal; none for the rest.
    assert locks == [thread.room_id, thread.room_id]
    assert [f["code"] for f in [*refused, on_other_tab]] == ["rate_limited"] * 4
    assert (repeat["type"], repeat["message_id"], repeat["seq"]) == ("ack", stored.pk, stored.seq)
    assert await database_sync_to_async(Message.objects.count)() == 1
