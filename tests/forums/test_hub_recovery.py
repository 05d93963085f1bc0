"""What a process's subscriptions missed while Redis was away, replayed once they are back.

A frame published while Redis is down is lost to every subscriber, and a process's subscriptions
come back only once Redis does: a message committed meanwhile in a quiet room reached nobody
until the next one showed the gap. The hub keeps how far each group's sockets got (its marks),
and when the layer reports its subscriptions back (minga.channels_redis_bounded), it delivers
what the database holds past them (forums.consumers.recover_rooms).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from minga import breaker, channels_redis_bounded
from minga.asgi import application
from minga.channels_redis_bounded import _Shard

from community.models import User
from forums import consumers, services
from forums.models import Room, Thread
from notifications import bus
from tests.forums.factories import ThreadFactory, member_in
from tests.forums.test_hub import Collector, CountingLayer, _frame, _until
from tests.reliability.faults import PrivateRedis

ORIGIN = (b"origin", b"http://localhost")


# --- The hub's marks and its recovery ----------------------------------------------------------


async def test_the_hub_replays_past_the_marks_it_had_when_the_subscriptions_were_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: two groups' sockets; room.1 got seq 3 live and a subscribe read (5, 2) in
    # room.2; then a frame after the loss, which must not move the marks asked about.
    hub = bus.Hub(CountingLayer())
    ones, twos = Collector(), Collector()
    await hub.join("room.1", ones)
    await hub.join("room.2", twos)
    await hub.deliver(bus._envelope("room.1", _frame(3)))
    hub.mark("room.2", 5, 2)
    asked: list[dict[str, tuple[int, int]]] = []

    async def recoverer(lost_at: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
        asked.append(lost_at)
        return [{"group": "room.1", "text": "four", "seq": 4}, {"group": "room.2", "text": "six"}]

    monkeypatch.setattr(bus, "_recoverer", recoverer)

    # Act
    hub._lost()
    await hub.deliver(bus._envelope("room.1", _frame(9)))
    hub._lost()  # a second shard, or a second failure: the first marks stay
    hub._back()
    await _until(lambda: "six" in twos.got)

    # Assert
    assert asked == [{"room.1": (3, 0), "room.2": (5, 2)}]
    assert ones.got[-1] == "four" and twos.got == ["six"]
    assert hub.marks == {"room.1": (9, 0), "room.2": (5, 2)}
    await hub.aclose()


async def test_back_without_a_loss_recovers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = bus.Hub(CountingLayer())
    await hub.join("room.1", Collector())

    async def recoverer(lost_at: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
        raise AssertionError("asked")

    monkeypatch.setattr(bus, "_recoverer", recoverer)

    hub._back()

    assert hub.recovering == set()
    await hub.aclose()


def test_the_envelope_carries_the_marks_of_a_room_frame_and_no_others() -> None:
    created = bus._envelope("room.1", {"type": "message.created", "seq": 7, "room": "wg1-a"})
    edited = bus._envelope("room.1", {"type": "message.edited", "seq": 9, "change": 4})
    presence = bus._envelope("room.1", {"type": "presence", "room": "wg1-a"})

    assert (created["seq"], "change" in created) == (7, False)
    assert ("seq" in edited, edited["change"]) == (False, 4)  # a change's seq is the room's
    assert {"seq", "change"} & set(presence) == set()


# --- The shard's receive loop ------------------------------------------------------------------


class FlakyPubSub:
    """redis-py's PubSub as the receive loop sees it: fails `failures` reads, then answers."""

    subscribed = True

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def get_message(self, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Connection refused")


async def test_the_receive_loop_retries_sooner_and_reports_lost_then_back_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a shard of the bounded layer whose reads fail five times.
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    shard = layer._get_layer()._shards[0]
    assert isinstance(shard, _Shard)
    shard._pubsub = FlakyPubSub(failures=5)
    events: list[str] = []
    layer.watch_subscriptions(lambda: events.append("lost"), lambda: events.append("back"))
    failures: list[int] = []

    def delay(count: int) -> float:
        failures.append(count)
        return 0.0

    monkeypatch.setattr(channels_redis_bounded, "_retry_delay", delay)

    # Act
    task = asyncio.ensure_future(shard._do_receiving())
    await _until(lambda: events == ["lost", "back"])
    task.cancel()

    # Assert: one wait after each failure in a row, the count going up.
    assert failures == [1, 2, 3, 4, 5]


def test_the_retry_waits_50_ms_doubling_to_a_second() -> None:
    # channels_redis waits a second after every failure.
    waits = [channels_redis_bounded._retry_delay(n) for n in range(1, 8)]

    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


# --- Through the gateway, on a Redis killed and restarted ------------------------------------


def _session_headers(user: User) -> list[tuple[bytes, bytes]]:
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    return [ORIGIN, (b"cookie", f"sessionid={cookie}".encode())]


def _post(member: User, thread: Thread, body: str) -> int:
    message, _created = services.message_post(
        thread=thread, author=member, body=body, client_id=uuid.uuid4()
    )
    return int(message.seq)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("recovery", [True, False], ids=["recovered", "without-recovery"])
async def test_a_message_committed_while_redis_was_down_reaches_the_socket_once_it_is_back(
    plan: None,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recovery: bool,
) -> None:
    # Arrange: a socket subscribed to wg1-a over a Redis of the test's own, and a message
    # there live (seq 1).
    monkeypatch.setattr(breaker, "_by_server", {})
    if not recovery:
        monkeypatch.setattr(bus, "_recoverer", None)
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "minga.channels_redis_bounded.BoundedPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_server.url]},
        }
    }
    channel_layers.backends.clear()
    member, thread, headers = await database_sync_to_async(_arrange)()
    ws = WebsocketCommunicator(application, "/ws/", headers=headers)
    try:
        assert (await ws.connect(timeout=5))[0]
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "room": "wg1-a"}))
        assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
        first = await database_sync_to_async(_post)(member, thread, "before")
        assert await _next_message(ws, 5) == first

        # Act: Redis killed; a message committed (its publish fails and is logged); Redis back.
        redis_server.kill()
        hub = bus._hubs[asyncio.get_running_loop()]
        await _until(lambda: hub.lost_at is not None, 10)
        second = await database_sync_to_async(_post)(member, thread, "while Redis was down")
        redis_server.start()

        # Assert: the socket gets it, without asking, once the subscriptions are back; or
        # never, before this change.
        got = await _next_message(ws, 6 if recovery else 3)
    finally:
        await ws.disconnect()
        redis_server.stop()
        channel_layers.backends.clear()

    assert got == (second if recovery else None)


def _arrange() -> tuple[User, Thread, list[tuple[bytes, bytes]]]:
    member = member_in("wg1", email="ana@trabajo.example")
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=member)
    return member, thread, _session_headers(member)


async def _next_message(ws: WebsocketCommunicator, seconds: float) -> int | None:
    """The seq of the next `message.created` within `seconds` (other frames skipped)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                frame = await ws.receive_json_from(timeout=seconds)
                if frame["type"] == "message.created":
                    return int(frame["seq"])
    except TimeoutError:
        return None


def test_the_recoverer_is_the_gateways() -> None:
    assert bus._recoverer is consumers.recover_rooms
