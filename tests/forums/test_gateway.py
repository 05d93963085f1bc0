"""The realtime protocol over the full ASGI application (Origin check, session or token, gateway).

Every client frame, every server frame the gateway writes and every error code; idempotency,
catch-up, resync, revocation. docs/realtime-protocol.md is the specification these check.
"""

from __future__ import annotations

import gc
import json
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from minga import realtime
from minga.asgi import application

from community import policy
from community.models import Membership, Role, User
from community.services import api_token_create, api_token_revoke
from forums import consumers, replay
from forums.models import Message, Room, Thread
from notifications import bus
from tests.factories import UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def _session_headers(user: User) -> list[tuple[bytes, bytes]]:
    return _logged_in(user)[1]


def _token_headers(key: str) -> list[tuple[bytes, bytes]]:
    return [ORIGIN, (b"authorization", f"Token {key}".encode())]


async def _program_headers(member: User) -> list[tuple[bytes, bytes]]:
    """A program's handshake: a new API token of the member's."""
    _token, key = await database_sync_to_async(api_token_create)(member=member, name="bot")
    return _token_headers(key)


def _logged_in(user: User) -> tuple[Client, list[tuple[bytes, bytes]]]:
    client = Client()
    client.force_login(user)
    return client, [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@asynccontextmanager
async def socket(
    user: User | None = None, *, headers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[WebsocketCommunicator]:
    if headers is None:
        assert user is not None
        headers = await database_sync_to_async(_session_headers)(user)
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _subprotocol = await communicator.connect(timeout=5)
    assert connected
    try:
        # A round trip: connect() returns at accept, before the gateway joined the member's
        # group; after the pong it has.
        await communicator.send_to(text_data='{"type": "ping"}')
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        yield communicator
    finally:
        await communicator.disconnect()


async def send(ws: WebsocketCommunicator, frame: dict[str, Any]) -> None:
    await ws.send_to(text_data=json.dumps(frame))


async def recv(ws: WebsocketCommunicator) -> dict[str, Any]:
    return await ws.receive_json_from(timeout=5)


async def subscribe(
    ws: WebsocketCommunicator, room: str = "wg1-a", after: int | None = None
) -> dict[str, Any]:
    """Subscribe and return the `subscribed` frame. The replay (if any) and then the own
    `presence` frame of a first arrival (live traffic) stay in the queue."""
    await send(ws, {"type": "subscribe", "room": room, "after": after})
    return await recv(ws)


async def closed_with(ws: WebsocketCommunicator) -> int:
    output = await ws.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    return output.get("code", 1000)


def me(user: User) -> dict[str, Any]:
    return {
        "id": user.pk,
        "name": user.name,
        "organization": user.organization.name if user.organization else None,
        "handle": user.handle,
    }


@pytest.fixture
def thread(plan: None, member: User) -> Thread:
    return ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=member, title="Inspection")


@pytest.fixture
def colleague(plan: None) -> User:
    return member_in("wg1", email="carla@trabajo.example", name="Carla Díaz", handle="carla")


@database_sync_to_async
def make_messages(thread: Thread, count: int) -> list[Message]:
    return [MessageFactory(thread=thread, author=thread.author) for _ in range(count)]


# --- Connecting -------------------------------------------------------------------------------


async def test_connect_without_credentials_closes_4401(plan: None) -> None:
    communicator = WebsocketCommunicator(application, "/ws/", headers=[ORIGIN])
    connected, _ = await communicator.connect(timeout=5)

    code = await closed_with(communicator) if connected else None

    assert (connected, code) == (True, 4401)
    await communicator.disconnect()


async def test_connect_unverified_member_closes_4401(plan: None) -> None:
    user = await database_sync_to_async(UserFactory)(verified=False)
    headers = await database_sync_to_async(_session_headers)(user)
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    await communicator.connect(timeout=5)

    code = await closed_with(communicator)

    assert code == 4401
    await communicator.disconnect()


async def test_connect_after_the_password_changed_closes_4401(member: User) -> None:
    """A session signed in before a password change no longer authenticates (Django's session
    hash check, as Channels' `get_user` makes it)."""
    headers = await database_sync_to_async(_session_headers)(member)

    def change_password() -> None:
        member.set_password("a new and long passphrase")
        member.save(update_fields=["password"])

    await database_sync_to_async(change_password)()
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    await communicator.connect(timeout=5)

    assert await closed_with(communicator) == 4401
    await communicator.disconnect()


def _counting_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions run in database hops from now on, by the gateway or by
    minga.realtime (where the handshake's middleware made its hop before ADR 0018)."""
    hops: list[str] = []
    real = realtime.db_hop

    def db_hop(fn: Any) -> Any:
        hop = real(fn)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            hops.append(fn.__name__)
            return await hop(*args, **kwargs)

        return counted

    monkeypatch.setattr(consumers, "db_hop", db_hop)
    monkeypatch.setattr(realtime, "db_hop", db_hop)
    return hops


async def test_a_browser_connect_makes_one_database_hop(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's user and the gateway's question about them (a participant? which
    language? which credential?) are answered together, as a token's are: one hop."""
    headers = await database_sync_to_async(_session_headers)(member)
    hops = _counting_hops(monkeypatch)

    async with socket(headers=headers) as ws:
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}

    assert hops == ["authenticate"]


async def test_a_program_connect_makes_one_database_hop_and_resolves_no_session(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_session(*args: Any) -> None:
        raise AssertionError("a program's handshake has no session to resolve")

    headers = await _program_headers(member)
    monkeypatch.setattr(realtime, "handshake_session", no_session)
    hops = _counting_hops(monkeypatch)

    async with socket(headers=headers) as ws:
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}

    assert hops == ["authenticate"]


def _connected_scopes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each gateway's scope once its connect is done."""
    scopes: list[dict[str, Any]] = []
    real = consumers.GatewayConsumer.connect

    async def spy(self: consumers.GatewayConsumer) -> None:
        await real(self)
        scopes.append(self.scope)

    monkeypatch.setattr(consumers.GatewayConsumer, "connect", spy)
    return scopes


async def test_a_browser_socket_scope_holds_its_user_and_session_as_channels_auth_put_them(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await database_sync_to_async(_session_headers)(member)
    key = headers[1][1].decode().partition("=")[2]
    scopes = _connected_scopes(monkeypatch)

    async with socket(headers=headers):
        pass

    [scope] = scopes
    assert (scope["user"].pk, scope["auth"], scope["session"].session_key) == (
        member.pk,
        "session",
        key,
    )


async def test_a_program_socket_scope_holds_its_member_and_no_session(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await _program_headers(member)
    scopes = _connected_scopes(monkeypatch)

    async with socket(headers=headers):
        pass

    [scope] = scopes
    assert (scope["user"].pk, scope["auth"], "session" in scope) == (member.pk, "token", False)


async def test_an_anonymous_socket_scope_holds_the_anonymous_user(
    plan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    scopes = _connected_scopes(monkeypatch)
    communicator = WebsocketCommunicator(application, "/ws/", headers=[ORIGIN])
    await communicator.connect(timeout=5)

    assert await closed_with(communicator) == 4401
    [scope] = scopes
    assert (scope["user"].is_authenticated, scope["auth"]) == (False, "session")
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["session", "token"])
async def test_an_open_socket_keeps_no_routing_or_authentication_frame(
    member: User, kind: str
) -> None:
    """The routing and the handshake's checks return the gateway's coroutine instead of awaiting
    it, so an open socket's task runs the gateway's own `__call__` (ADR 0018): no frame of theirs
    and no scope copy stays alive for as long as the socket is open."""
    if kind == "session":
        headers = await database_sync_to_async(_session_headers)(member)
    else:
        headers = await _program_headers(member)

    async with socket(headers=headers) as ws:
        chain, awaited = [], ws.future.get_coro()
        while hasattr(awaited, "cr_code"):
            chain.append(awaited.cr_code.co_qualname)
            awaited = awaited.cr_await

    assert chain[0] == "GatewayConsumer.__call__"
    assert len(chain) == 2  # and what it awaits: the next message of its input queue


@pytest.mark.parametrize("path", ["/ws", "/ws/other/", "/api/ws/", "/"])
async def test_a_handshake_for_another_path_is_refused_before_any_database_hop(
    plan: None, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = _counting_hops(monkeypatch)
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])

    connected, _ = await communicator.connect(timeout=5)

    assert (connected, hops) == (False, [])
    await communicator.disconnect()


async def test_connect_from_unknown_origin_is_refused(member: User) -> None:
    headers = await database_sync_to_async(_session_headers)(member)
    headers = [(b"origin", b"https://evil.example"), headers[1]]
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)

    connected, _ = await communicator.connect(timeout=5)

    assert connected is False
    await communicator.disconnect()


async def test_connect_with_token_header_answers_ping(member: User) -> None:
    headers = await _program_headers(member)

    async with socket(headers=headers) as ws:
        await send(ws, {"type": "ping"})
        frame = await recv(ws)

    assert frame == {"type": "pong"}


async def test_ping_answers_pong(member: User) -> None:
    async with socket(member) as ws:
        await send(ws, {"type": "ping"})
        frame = await recv(ws)

        assert frame == {"type": "pong"}
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_frames_and_the_close_make_no_thread_hop_to_close_connections(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channels' dispatch closes old connections in a thread before every handler: one hop per
    frame, on the process's one shared thread. The gateway's database work runs in db_hop
    threads, which close their own; frames that need no database make no hop at all."""
    import channels.db

    headers = await _program_headers(member)
    hops: list[str] = []
    async with socket(headers=headers) as ws:
        monkeypatch.setattr(channels.db, "close_old_connections", lambda: hops.append("close"))
        for _ in range(3):
            await send(ws, {"type": "ping"})
            assert await recv(ws) == {"type": "pong"}
    await ws.wait(timeout=5)  # the consumer ran its disconnect and returned

    assert hops == []


def _connections_open_in_other_threads() -> list[Any]:
    """Django connection wrappers of threads other than this one still holding a connection."""
    here = threading.get_ident()
    return [
        wrapper
        for wrapper in gc.get_objects()
        if isinstance(wrapper, BaseDatabaseWrapper)
        and wrapper.connection is not None
        and wrapper._thread_ident != here
    ]


@pytest.mark.postgres
async def test_a_socket_leaves_no_database_connection_open_behind_it(
    member: User, thread: Thread
) -> None:
    """Django keeps connections in context-local storage: the one a hop opened (the session's
    user, the gateway's own hops) goes back with the socket's context, where the hop's own
    closing does not always look. Channels closed it on the socket's next frame, with a thread
    hop per frame; the gateway makes no such hop, so each of its hops closes old connections
    itself, inside the hop (minga.realtime.db_hop). (PostgreSQL: Django never closes an
    in-memory SQLite test database's connections, which would drop the database.)"""
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}

        assert _connections_open_in_other_threads() == []
    await ws.wait(timeout=5)

    assert _connections_open_in_other_threads() == []


# --- Subscribe, catch-up, resync --------------------------------------------------------------


async def test_subscribe_answers_subscribed_then_own_presence(member: User, thread: Thread) -> None:
    await make_messages(thread, 2)
    async with socket(member) as ws:
        subscribed = await subscribe(ws, after=None)
        presence = await recv(ws)

        assert subscribed == {
            "type": "subscribed",
            "room": "wg1-a",
            "online": [me(member)],
            "last_seq": 2,
            "last_change": 0,
        }
        assert presence == {"type": "presence", "room": "wg1-a", "online": [me(member)]}
        # after: null replays nothing.
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_subscribe_after_replays_missed_messages_in_seq_order(
    member: User, thread: Thread
) -> None:
    made = await make_messages(thread, 5)
    async with socket(member) as ws:
        await subscribe(ws, after=2)
        replay = [await recv(ws) for _ in range(3)]
        presence = await recv(ws)  # live frames (own arrival) come after the replay

        assert [(f["type"], f["seq"], f["message"]["id"]) for f in replay] == [
            ("message.created", m.seq, m.pk) for m in made[2:]
        ]
        assert presence["type"] == "presence"
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_subscribe_replay_marks_first_message_of_a_thread(
    member: User, thread: Thread
) -> None:
    await make_messages(thread, 2)
    async with socket(member) as ws:
        await subscribe(ws, after=0)
        first, second = await recv(ws), await recv(ws)

    assert (first["new_thread"]["id"], "new_thread" in second) == (thread.pk, False)


async def test_subscribe_replay_spans_several_batches(
    member: User, thread: Thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "REPLAY_BATCH", 2)
    made = await make_messages(thread, 5)
    async with socket(member) as ws:
        await subscribe(ws, after=0)
        replayed = [await recv(ws) for _ in range(5)]
        await recv(ws)  # own presence

        assert [f["seq"] for f in replayed] == [m.seq for m in made]
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_subscribe_gap_over_limit_sends_resync(
    member: User, thread: Thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "RESYNC_GAP", 2)
    await make_messages(thread, 4)
    async with socket(member) as ws:
        await subscribe(ws, after=1)
        frame = await recv(ws)
        await recv(ws)  # own presence

        assert frame == {"type": "resync", "room": "wg1-a", "last_seq": 4, "last_change": 0}
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_subscribe_after_beyond_last_seq_sends_resync(member: User, thread: Thread) -> None:
    await make_messages(thread, 1)
    async with socket(member) as ws:
        await subscribe(ws, after=7)
        frame = await recv(ws)

    assert frame == {"type": "resync", "room": "wg1-a", "last_seq": 1, "last_change": 0}


async def test_subscribe_unknown_room_is_forbidden(member: User) -> None:
    async with socket(member) as ws:
        frame = await subscribe(ws, room="wg9-z")

        assert frame == {
            "type": "error",
            "code": "forbidden",
            "detail": "You may not do this, or it does not exist.",
            "frame": "subscribe",
            "room": "wg9-z",
        }


async def test_subscribe_unreadable_room_answers_like_unknown_room(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy, "can_read_room", lambda member, room: False)
    async with socket(member) as ws:
        hidden = await subscribe(ws, room="wg1-a")
        unknown = await subscribe(ws, room="wg9-z")

    assert {k: v for k, v in hidden.items() if k != "room"} == {
        k: v for k, v in unknown.items() if k != "room"
    }


async def test_subscribe_more_rooms_than_limit_is_refused(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "MAX_ROOMS_PER_SOCKET", 1)
    async with socket(member) as ws:
        await subscribe(ws, room="wg1-a")
        await recv(ws)
        frame = await subscribe(ws, room="wg1-b")

    assert (frame["type"], frame["code"], frame["room"]) == ("error", "too_many_rooms", "wg1-b")


async def test_live_duplicate_of_replayed_message_is_dropped(member: User, thread: Thread) -> None:
    made = await make_messages(thread, 2)
    room = await database_sync_to_async(Room.objects.get)(slug="wg1-a")
    async with socket(member) as ws:
        await subscribe(ws, after=0)
        await recv(ws)
        await recv(ws)
        await recv(ws)
        # A late live copy of seq 2 (its publish raced the replay) and a new seq 3.
        await bus.apublish(
            bus.room_group(room.pk),
            {"type": "message.created", "room": "wg1-a", "seq": made[1].seq, "message": {}},
        )
        await bus.apublish(
            bus.room_group(room.pk),
            {"type": "message.created", "room": "wg1-a", "seq": 3, "message": {}},
        )
        frame = await recv(ws)

        assert frame["seq"] == 3
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_unsubscribe_stops_room_traffic(member: User, thread: Thread) -> None:
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(ws, {"type": "unsubscribe", "room": "wg1-a"})
        answer = await recv(ws)
        await make_messages(thread, 1)
        await database_sync_to_async(_post_through_service)(thread, thread.author)

        assert answer == {"type": "unsubscribed", "room": "wg1-a"}
        assert await ws.receive_nothing(timeout=0.3) is True


def _post_through_service(thread: Thread, author: User, body: str = "Hello") -> Message:
    from forums import services

    message, _created = services.message_post(
        thread=thread, author=author, body=body, client_id=uuid.uuid4()
    )
    return message


# --- message.send -----------------------------------------------------------------------------


async def test_message_send_acks_and_reaches_every_subscriber(
    member: User, colleague: User, thread: Thread
) -> None:
    client_id = str(uuid.uuid4())
    async with socket(member) as alice, socket(colleague) as carla:
        await subscribe(alice)
        await recv(alice)
        await subscribe(carla)
        await recv(carla)  # carla's arrival, to carla
        await recv(alice)  # ... and to alice
        await send(
            alice,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hola **todos**",
                "client_id": client_id,
                "reply_to": None,
            },
        )
        ack = await recv(alice)
        echo = await recv(alice)
        live = await recv(carla)

    message = await database_sync_to_async(Message.objects.get)(client_id=client_id)
    assert ack == {"type": "ack", "client_id": client_id, "message_id": message.pk, "seq": 1}
    assert (echo, live["type"], live["seq"], live["message"]["body_html"]) == (
        live,
        "message.created",
        1,
        "<p>Hola <strong>todos</strong></p>\n",
    )


async def test_message_send_same_client_id_twice_makes_one_message_and_same_ack(
    member: User, thread: Thread
) -> None:
    frame = {
        "type": "message.send",
        "room": "wg1-a",
        "thread": thread.pk,
        "body": "Once",
        "client_id": str(uuid.uuid4()),
    }
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(ws, frame)
        first = await recv(ws)
        await recv(ws)  # the message.created echo
        await send(ws, frame)
        second = await recv(ws)

        assert second == first
        # The repeat announces nothing new.
        assert await ws.receive_nothing(timeout=0.3) is True
    count = await database_sync_to_async(Message.objects.filter(thread=thread).count)()
    assert count == 1


async def test_message_send_not_subscribed_is_forbidden(member: User, thread: Thread) -> None:
    client_id = str(uuid.uuid4())
    async with socket(member) as ws:
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": client_id,
            },
        )
        frame = await recv(ws)

    assert (frame["code"], frame["client_id"], frame["frame"]) == (
        "forbidden",
        client_id,
        "message.send",
    )


async def test_message_send_to_thread_of_another_room_is_forbidden(
    member: User, thread: Thread
) -> None:
    async with socket(member) as ws:
        await subscribe(ws, room="wg1-b")
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-b",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": str(uuid.uuid4()),
            },
        )
        frame = await recv(ws)

    assert frame["code"] == "forbidden"


async def test_message_send_unknown_thread_answers_like_foreign_thread(
    member: User, thread: Thread
) -> None:
    async with socket(member) as ws:
        await subscribe(ws, room="wg1-b")
        await recv(ws)
        answers = []
        for thread_id in (thread.pk, 999_999):
            await send(
                ws,
                {
                    "type": "message.send",
                    "room": "wg1-b",
                    "thread": thread_id,
                    "body": "Hi",
                    "client_id": "6f1c1d0e-7c2b-4a53-9f43-0d1c8a6b2f11",
                },
            )
            answers.append(await recv(ws))

    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    ("body", "code"),
    [("   ", "invalid"), ("x" * 20_001, "too_long")],
)
async def test_message_send_bad_body_gets_service_code(
    member: User, thread: Thread, body: str, code: str
) -> None:
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": body,
                "client_id": str(uuid.uuid4()),
            },
        )
        frame = await recv(ws)

    assert (frame["type"], frame["code"]) == ("error", code)


async def test_message_send_by_observer_is_forbidden(plan: None, thread: Thread) -> None:
    observer = await database_sync_to_async(member_in)("wg1", role=Role.OBSERVER)
    async with socket(observer) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": str(uuid.uuid4()),
            },
        )
        frame = await recv(ws)

    assert frame["code"] == "forbidden"


async def test_message_send_in_locked_thread_is_thread_locked(member: User, thread: Thread) -> None:
    await database_sync_to_async(Thread.objects.filter(pk=thread.pk).update)(locked=True)
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": str(uuid.uuid4()),
            },
        )
        frame = await recv(ws)

    assert frame["code"] == "thread_locked"


async def test_message_send_in_locked_room_is_room_locked(member: User, thread: Thread) -> None:
    await database_sync_to_async(Room.objects.filter(slug="wg1-a").update)(state="locked")
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": str(uuid.uuid4()),
            },
        )
        frame = await recv(ws)

    assert frame["code"] == "room_locked"


async def test_message_send_over_flood_limit_is_rate_limited_and_not_stored(
    member: User, thread: Thread, settings: Any
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        for body in ("one", "two"):
            await send(
                ws,
                {
                    "type": "message.send",
                    "room": "wg1-a",
                    "thread": thread.pk,
                    "body": body,
                    "client_id": str(uuid.uuid4()),
                },
            )
        first, _echo, second = await recv(ws), await recv(ws), await recv(ws)

    bodies = await database_sync_to_async(
        lambda: list(Message.objects.filter(thread=thread).values_list("body", flat=True))
    )()
    assert (first["type"], second["code"], bodies) == ("ack", "rate_limited", ["one"])


async def test_sends_within_the_limits_window_are_refused_without_the_database_and_repeats_acked(
    member: User, thread: Thread, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: a limit of one message; count what reaches the database side.
    settings.FORUMS_FLOOD_LIMIT = (1, 60)
    calls: list[str] = []
    real_post = consumers._post

    def counting_post(member_id: int, room_id: int, data: dict[str, Any]) -> dict[str, Any]:
        calls.append(data["body"])
        return real_post(member_id, room_id, data)

    monkeypatch.setattr(consumers, "_post", counting_post)
    first_id = str(uuid.uuid4())

    def post(body: str, client_id: str | None = None) -> dict[str, Any]:
        return {
            "type": "message.send",
            "room": "wg1-a",
            "thread": thread.pk,
            "body": body,
            "client_id": client_id or str(uuid.uuid4()),
        }

    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(ws, post("one", first_id))
        ack, _echo = await recv(ws), await recv(ws)
        # Act: the limit refuses "two"; the flood after it; then a retry of the acked "one".
        for body in ("two", "three", "four"):
            await send(ws, post(body))
        refusals = [await recv(ws) for _ in range(3)]
        await send(ws, post("one", first_id))
        repeat = await recv(ws)

    # Assert: one database call per answer the service had to give, none for the flood.
    bodies = await database_sync_to_async(
        lambda: list(Message.objects.filter(thread=thread).values_list("body", flat=True))
    )()
    # The service said when the window frees (60 s here, capped at its 5 s cooldown).
    assert calls == ["one", "two"]
    assert [f["code"] for f in refusals] == ["rate_limited"] * 3
    assert len({f["detail"] for f in refusals}) == 1
    assert (repeat, bodies) == (ack, ["one"])


async def test_message_send_reply_to_unknown_message_is_refused(
    member: User, thread: Thread
) -> None:
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Re",
                "client_id": str(uuid.uuid4()),
                "reply_to": 999_999,
            },
        )
        frame = await recv(ws)

    assert (frame["type"], frame["code"] in {"invalid", "not_found"}) == ("error", True)


# --- typing and read --------------------------------------------------------------------------


async def test_typing_broadcasts_once_per_interval(
    member: User, colleague: User, thread: Thread
) -> None:
    async with socket(member) as alice, socket(colleague) as carla:
        await subscribe(alice)
        await recv(alice)
        await subscribe(carla)
        await recv(carla)
        await recv(alice)
        for _ in range(3):
            await send(alice, {"type": "typing", "room": "wg1-a", "thread": thread.pk})
        frame = await recv(carla)

        assert frame == {
            "type": "typing",
            "room": "wg1-a",
            "thread": thread.pk,
            "member": me(member),
        }
        assert await carla.receive_nothing(timeout=0.3) is True


async def test_typing_not_subscribed_is_forbidden(member: User, thread: Thread) -> None:
    async with socket(member) as ws:
        await send(ws, {"type": "typing", "room": "wg1-a", "thread": thread.pk})
        frame = await recv(ws)

    assert (frame["code"], frame["frame"]) == ("forbidden", "typing")


async def test_read_publishes_read_to_every_tab_of_the_member(member: User, thread: Thread) -> None:
    made = await make_messages(thread, 2)
    async with socket(member) as tab1, socket(member) as tab2:
        await subscribe(tab1)
        await recv(tab1)
        await send(
            tab1, {"type": "read", "room": "wg1-a", "thread": thread.pk, "message_id": made[1].pk}
        )
        on_tab1, on_tab2 = await recv(tab1), await recv(tab2)

    assert (
        on_tab1
        == on_tab2
        == {
            "type": "read",
            "room": "wg1-a",
            "thread": thread.pk,
            "message_id": made[1].pk,
            "seq": made[1].seq,
        }
    )


async def test_read_of_message_outside_thread_is_not_found(member: User, thread: Thread) -> None:
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await send(ws, {"type": "read", "room": "wg1-a", "thread": thread.pk, "message_id": 987})
        frame = await recv(ws)

    assert (frame["code"], frame["frame"]) == ("not_found", "read")


# --- Bad frames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{nope", "invalid_json"),
        ("[" * 30_000 + "]" * 30_000, "invalid_json"),
        ("[1, 2]", "bad_frame"),
        ('{"room": "wg1-a"}', "bad_frame"),
        ('{"type": 7}', "bad_frame"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"type": "subscribe"}', "missing_field"),
        ('{"type": "subscribe", "room": 12}', "wrong_type"),
        ('{"type": "subscribe", "room": "wg1-a", "after": "3"}', "wrong_type"),
        ('{"type": "subscribe", "room": "wg1-a", "after": true}', "wrong_type"),
        ('{"type": "subscribe", "room": "wg1-a", "after": -1}', "invalid"),
        ('{"type": "subscribe", "room": "../etc"}', "invalid"),
        ('{"type": "subscribe", "room": "wg1-\\ud800"}', "invalid_utf8"),
        (
            '{"type": "message.send", "room": "wg1-a", "thread": 1, "body": "x", "client_id": "nope"}',
            "invalid",
        ),
        ('{"type": "read", "room": "wg1-a", "thread": 1, "message_id": 1.5}', "wrong_type"),
    ],
)
async def test_bad_frame_gets_error_code_and_socket_stays_open(
    member: User, text: str, code: str
) -> None:
    async with socket(member) as ws:
        await ws.send_to(text_data=text)
        error = await recv(ws)
        await send(ws, {"type": "ping"})
        after = await recv(ws)

    assert (error["type"], error["code"], after) == ("error", code, {"type": "pong"})


async def test_binary_frame_gets_error_and_socket_stays_open(member: User) -> None:
    async with socket(member) as ws:
        await ws.send_to(bytes_data=b'{"type": "ping"}')
        error = await recv(ws)
        await send(ws, {"type": "ping"})
        after = await recv(ws)

    assert (error["code"], after) == ("binary_frame", {"type": "pong"})


async def test_frame_over_64_kib_closes_1009(member: User) -> None:
    async with socket(member) as ws:
        await send(ws, {"type": "ping", "pad": "x" * (64 * 1024)})
        code = await closed_with(ws)

    assert code == 1009


async def test_binary_frame_over_64_kib_closes_1009(member: User) -> None:
    async with socket(member) as ws:
        await ws.send_to(bytes_data=b"x" * (64 * 1024 + 1))
        code = await closed_with(ws)

    assert code == 1009


async def test_too_many_frames_get_rate_limited(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The burst is 3 and nothing refills it: the helper's ping takes one, two pongs, then no.
    monkeypatch.setattr(consumers, "FRAME_BURST", 3)
    monkeypatch.setattr(consumers, "FRAME_RATE", 0.0)
    async with socket(member) as ws:
        for _ in range(3):
            await send(ws, {"type": "ping"})
        frames = [await recv(ws) for _ in range(3)]

    assert [f.get("code", f["type"]) for f in frames] == ["pong", "pong", "rate_limited"]


async def test_unexpected_failure_answers_server_error_and_socket_stays_open(
    member: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(consumers, "_room_state", boom)
    async with socket(member) as ws:
        error = await subscribe(ws)
        await send(ws, {"type": "ping"})
        after = await recv(ws)

    assert (error["code"], after) == ("server_error", {"type": "pong"})


# --- Presence ---------------------------------------------------------------------------------


async def test_presence_is_broadcast_on_join_and_leave(member: User, colleague: User) -> None:
    async with socket(member) as alice:
        await subscribe(alice)
        await recv(alice)
        async with socket(colleague) as carla:
            subscribed = await subscribe(carla)
            joined = await recv(alice)
        left = await recv(alice)

    together = sorted([me(member), me(colleague)], key=lambda m: m["name"].lower())
    assert (subscribed["online"], joined["online"], left["online"]) == (
        together,
        together,
        [me(member)],
    )


async def test_second_tab_of_same_member_broadcasts_no_presence(member: User) -> None:
    async with socket(member) as tab1:
        await subscribe(tab1)
        await recv(tab1)
        async with socket(member) as tab2:
            await subscribe(tab2)
            assert await tab1.receive_nothing(timeout=0.3) is True
        # Closing the second tab leaves the member online: still nothing.
        assert await tab1.receive_nothing(timeout=0.3) is True


# --- Bus relay and revocation -----------------------------------------------------------------


async def test_other_bus_frames_are_relayed_verbatim(member: User) -> None:
    async with socket(member) as ws:
        await bus.apublish(bus.user_group(member.pk), {"type": "notification", "unread_count": 3})
        frame = await recv(ws)

    assert frame == {"type": "notification", "unread_count": 3}


async def test_logout_closes_that_sessions_sockets_only(member: User) -> None:
    client, headers = await database_sync_to_async(_logged_in)(member)
    async with socket(headers=headers) as leaving, socket(member) as staying:
        await database_sync_to_async(client.logout)()
        code = await closed_with(leaving)
        await send(staying, {"type": "ping"})
        still = await recv(staying)

    assert (code, still) == (4403, {"type": "pong"})


async def test_deactivation_closes_every_socket_of_the_member(member: User) -> None:
    async with socket(member) as tab1, socket(member) as tab2:

        def deactivate() -> None:
            member.is_active = False
            member.save()

        await database_sync_to_async(deactivate)()
        codes = [await closed_with(tab1), await closed_with(tab2)]

    assert codes == [4403, 4403]


async def test_token_revocation_closes_that_tokens_sockets_only(member: User) -> None:
    token, key = await database_sync_to_async(api_token_create)(member=member, name="bot")
    _other, other_key = await database_sync_to_async(api_token_create)(member=member, name="b2")
    async with (
        socket(headers=_token_headers(key)) as revoked,
        socket(headers=_token_headers(other_key)) as kept,
    ):
        await database_sync_to_async(api_token_revoke)(member=member, token_id=token.pk)
        code = await closed_with(revoked)
        await send(kept, {"type": "ping"})
        still = await recv(kept)

    assert (code, still) == (4403, {"type": "pong"})


async def test_revocation_of_another_session_is_not_relayed(member: User) -> None:
    async with socket(member) as ws:
        await bus.apublish(
            bus.user_group(member.pk),
            {"type": "session.revoked", "reason": "logged_out", "credential": "0" * 32},
        )
        assert await ws.receive_nothing(timeout=0.3) is True


async def test_access_change_drops_rooms_the_member_may_no_longer_read(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        monkeypatch.setattr(policy, "can_read_room", lambda member, room: False)
        await database_sync_to_async(Membership.objects.filter(member=member).delete)()
        frame = await recv(ws)

        assert frame == {"type": "unsubscribed", "room": "wg1-a", "reason": "forbidden"}


async def test_muted_member_can_neither_type_nor_post(
    member: User, chair: User, thread: Thread
) -> None:
    from forums import moderation

    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await database_sync_to_async(moderation.member_mute)(
            room=thread.room, member=member, actor=chair, minutes=10, reason="Off topic"
        )
        muted = await recv(ws)
        await send(ws, {"type": "typing", "room": "wg1-a", "thread": thread.pk})
        typing = await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": str(uuid.uuid4()),
            },
        )
        posting = await recv(ws)

    assert (muted["type"], typing["code"], posting["code"]) == (
        "member.muted",
        "forbidden",
        "forbidden",
    )


async def test_role_change_counts_on_the_next_frame_without_reconnecting(
    member: User, thread: Thread
) -> None:
    async with socket(member) as ws:
        await subscribe(ws)
        await recv(ws)
        await database_sync_to_async(Membership.objects.filter(member=member).update)(
            role=Role.OBSERVER
        )
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "Hi",
                "client_id": str(uuid.uuid4()),
            },
        )
        frame = await recv(ws)

    assert (frame["type"], frame["code"]) == ("error", "forbidden")
