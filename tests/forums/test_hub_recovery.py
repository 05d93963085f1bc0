"""What a process's subscriptions missed while Redis was away, replayed once they are back.

A frame published while Redis is down is lost to every subscriber, and a process's subscriptions
come back only once Redis does: a message committed meanwhile in a quiet room reached nobody
until the next one showed the gap. The hub keeps how far each group's sockets got (its marks),
and when the layer reports its subscriptions back (minga.channels_redis_bounded), it delivers
what the database holds past them (forums.replay.recover_rooms).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from forums import presence, services
from forums.models import Room, Thread
from notifications import bus
from tests.forums.factories import ThreadFactory, member_in
from tests.forums.test_gateway import _session_headers
from tests.forums.test_hub import Collector, CountingLayer, _frame, _until
from tests.reliability.faults import PrivateRedis

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

    async def recoverer(lost_at: dict[str, bus.Marks]) -> list[dict[str, Any]]:
        asked.append({group: (marks.seq, marks.change) for group, marks in lost_at.items()})
        return [{"group": "room.1", "text": "four", "seq": 4}, {"group": "room.2", "text": "six"}]

    async def failing(lost_at: dict[str, bus.Marks]) -> list[dict[str, Any]]:
        raise RuntimeError("this recoverer broke")

    monkeypatch.setattr(bus, "_recoverers", [failing, recoverer])

    # Act
    hub._lost()
    await hub.deliver(bus._envelope("room.1", _frame(9)))
    hub._lost()  # a second shard, or a second failure: the first marks stay
    hub._back()
    await _until(lambda: "six" in twos.got)

    # Assert: asked once, with the marks of the loss; a failing recoverer stops no other.
    assert asked == [{"room.1": (3, 0), "room.2": (5, 2)}]
    assert ones.got[-1] == "four" and twos.got == ["six"]
    assert hub.marks == {"room.1": (9, 0), "room.2": (5, 2)}
    await hub.aclose()


async def test_live_frames_wait_for_the_replay_so_each_socket_gets_them_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a recovery whose database read is slow, and a live frame published meanwhile.
    layer = CountingLayer()
    hub = bus.Hub(layer)
    socket = Collector()
    await hub.join("room.1", socket)
    gate = asyncio.Event()

    async def recoverer(lost_at: dict[str, bus.Marks]) -> list[dict[str, Any]]:
        await gate.wait()
        return [{"group": "room.1", "text": "replayed"}]

    monkeypatch.setattr(bus, "_recoverers", [recoverer])
    hub._lost()
    hub._back()
    await layer.group_send("room.1", bus._envelope("room.1", _frame(9)))
    await asyncio.sleep(0.05)
    held = list(socket.got)

    # Act
    gate.set()
    await _until(lambda: len(socket.got) == 2)

    # Assert: nothing went out while the replay was read; then the replay, then the live one.
    assert held == []
    assert socket.got == ["replayed", '{"type":"message.created","room":"wg1-a","seq":9}']
    assert hub.held is None
    await hub.aclose()


async def test_back_without_a_loss_recovers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = bus.Hub(CountingLayer())
    await hub.join("room.1", Collector())

    async def recoverer(lost_at: dict[str, bus.Marks]) -> list[dict[str, Any]]:
        raise AssertionError("asked")

    monkeypatch.setattr(bus, "_recoverers", [recoverer])

    hub._back()

    assert hub.recovering == set()
    await hub.aclose()


def test_the_envelope_carries_the_marks_of_a_frame_and_no_others() -> None:
    created = bus._envelope("room.1", {"type": "message.created", "seq": 7, "room": "wg1-a"})
    edited = bus._envelope("room.1", {"type": "message.edited", "seq": 9, "change": 4})
    presence = bus._envelope("room.1", {"type": "presence", "room": "wg1-a"})
    notified = bus._envelope("user.3", {"type": "notification", "notification": {"id": 12}})

    assert (created["seq"], "change" in created) == (7, False)
    assert ("seq" in edited, edited["change"]) == (False, 4)  # a change's seq is the room's
    assert {"seq", "change"} & set(presence) == set()
    assert notified["seq"] == 12  # a member's mark: the newest notification's id


# --- The shard's receive loop ------------------------------------------------------------------


class FlakyPubSub:
    """redis-py's PubSub as the receive loop sees it: fails `failures` reads, then answers,
    a pong for each PING sent; `silent` swallows PINGs (a paused Redis)."""

    subscribed = True
    connection = None

    def __init__(self, failures: int = 0, *, silent: bool = False, chatty: bool = False) -> None:
        self.failures = failures
        self.silent = silent
        self.chatty = chatty  # a frame on every read: a busy process
        self.pings = 0
        self.unanswered = 0

    async def ping(self) -> None:
        self.pings += 1
        if not self.silent:
            self.unanswered += 1

    async def get_message(self, **kwargs: Any) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Connection refused")
        if self.unanswered:
            self.unanswered -= 1
            return {"type": "pong", "channel": None, "data": b""}
        if self.chatty:
            return {"type": "message", "channel": b"elsewhere", "data": b""}
        return None


def _shard(monkeypatch: pytest.MonkeyPatch, pubsub: FlakyPubSub) -> tuple[_Shard, list[str]]:
    """A shard of the bounded layer reading from `pubsub`, and the states it reported."""
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    shard = layer._get_layer()._shards[0]
    assert isinstance(shard, _Shard)
    shard._pubsub = pubsub  # type: ignore[assignment]
    events: list[str] = []
    layer.watch_subscriptions(lambda: events.append("lost"), lambda: events.append("back"))
    return shard, events


async def test_the_receive_loop_retries_sooner_and_reports_lost_then_back_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a shard of the bounded layer whose reads fail five times.
    shard, events = _shard(monkeypatch, FlakyPubSub(failures=5))
    failures: list[int] = []

    def delay(count: int) -> float:
        failures.append(count)
        return 0.0

    monkeypatch.setattr(channels_redis_bounded, "_retry_delay", delay)

    # Act
    task = asyncio.ensure_future(shard._do_receiving())
    await _until(lambda: events == ["lost", "back"])
    task.cancel()

    # Assert: one wait after each failure in a row, the count going up; back once Redis
    # answered a PING sent on the new connection.
    assert failures == [1, 2, 3, 4, 5]
    assert shard._pubsub.pings >= 1


async def test_back_closes_the_breaker_the_outage_tripped_before_the_watchers_hear_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a shard whose reads fail twice; while its subscriptions are lost a publish fails
    # and trips the breaker this Redis shares (as the outage's last failure does).
    shard, _events = _shard(monkeypatch, FlakyPubSub(failures=2))
    monkeypatch.setattr(channels_redis_bounded, "_retry_delay", lambda count: 0.0)
    layer = shard.channel_layer.channel_layer
    heard: list[tuple[str, bool]] = []

    def lost() -> None:
        layer.breaker.trip()
        heard.append(("lost", layer.breaker.open))

    layer.watch_subscriptions(lost, lambda: heard.append(("back", layer.breaker.open)))

    # Act
    task = asyncio.ensure_future(shard._do_receiving())
    await _until(lambda: len(heard) == 2)
    task.cancel()

    # Assert: open while lost, closed by the time the recovery runs, well within the second
    # the trip began (the shard's retries wait nothing here).
    assert heard == [("lost", True), ("back", False)]
    assert not layer.breaker.open


async def test_back_on_another_shard_leaves_the_breaker_of_the_first_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: two shards; the breaker stands for the first one's Redis, and is open.
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0"])
    layer.breaker.trip()

    # Act: the second shard is back; then the first.
    layer._subscriptions("back", first_shard=False)
    after_second = layer.breaker.open
    layer._subscriptions("back", first_shard=True)

    # Assert
    assert (after_second, layer.breaker.open) == (True, False)


async def test_a_connection_that_answers_no_ping_is_counted_lost_and_back_when_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: reads that never fail and PINGs that get no answer (Redis paused), checked
    # every 10 ms with 50 ms to answer.
    pubsub = FlakyPubSub(silent=True)
    shard, events = _shard(monkeypatch, pubsub)
    monkeypatch.setattr(channels_redis_bounded, "LIVENESS_PING_SECONDS", 0.01)
    monkeypatch.setattr(channels_redis_bounded, "LIVENESS_PONG_SECONDS", 0.05)
    monkeypatch.setattr(channels_redis_bounded, "_retry_delay", lambda count: 0.01)

    # Act: silent, then answering again.
    task = asyncio.ensure_future(shard._do_receiving())
    await _until(lambda: events == ["lost"])
    pings_while_lost = pubsub.pings
    await asyncio.sleep(0.2)
    stayed = list(events)
    pubsub.silent = False
    await _until(lambda: events == ["lost", "back"])
    task.cancel()

    # Assert: lost once, PINGed again while lost, back only once a PING was answered.
    assert (stayed, pubsub.pings > pings_while_lost) == (["lost"], True)


async def test_frames_arriving_keep_a_connection_alive_while_its_answer_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a busy connection whose PING answer never comes within the wait (it queues
    # behind the frames), checked every 10 ms with 50 ms to answer.
    pubsub = FlakyPubSub(silent=True, chatty=True)
    shard, events = _shard(monkeypatch, pubsub)
    monkeypatch.setattr(channels_redis_bounded, "LIVENESS_PING_SECONDS", 0.01)
    monkeypatch.setattr(channels_redis_bounded, "LIVENESS_PONG_SECONDS", 0.05)

    # Act
    task = asyncio.ensure_future(shard._do_receiving())
    await _until(lambda: pubsub.pings >= 1)
    await asyncio.sleep(0.3)
    task.cancel()

    # Assert: never counted lost while frames came.
    assert events == []


def test_the_retry_waits_50_ms_doubling_to_a_second() -> None:
    # channels_redis waits a second after every failure.
    waits = [channels_redis_bounded._retry_delay(n) for n in range(1, 8)]

    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


# --- Through the gateway, on a Redis killed and restarted, or paused and resumed -------------


def _post(member: User, thread: Thread, body: str) -> int:
    message, _created = services.message_post(
        thread=thread, author=member, body=body, client_id=uuid.uuid4()
    )
    return int(message.seq)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "case",
    [("kill", True), ("pause", True), ("kill", False)],
    ids=["killed", "paused", "killed-without-recovery"],
)
async def test_a_message_committed_while_redis_was_away_reaches_the_socket_once_it_is_back(  # noqa: PLR0917 - fixtures
    plan: None,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, bool],
) -> None:
    fault, recovery = case
    # Arrange: a socket subscribed to wg1-a over a Redis of the test's own (with the
    # production timeouts, and a PING every 0.2 s with 0.5 s to answer), and a message there
    # live.
    monkeypatch.setattr(breaker, "_by_server", {})
    monkeypatch.setattr(channels_redis_bounded, "LIVENESS_PING_SECONDS", 0.2)
    monkeypatch.setattr(channels_redis_bounded, "LIVENESS_PONG_SECONDS", 0.5)
    if not recovery:
        monkeypatch.setattr(bus, "_recoverers", [])
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    host = {"address": redis_server.url, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "minga.channels_redis_bounded.BoundedPubSubChannelLayer",
            "CONFIG": {"hosts": [host]},
        }
    }
    channel_layers.backends.clear()
    member, colleague, thread, headers = await database_sync_to_async(_arrange)()
    ws = WebsocketCommunicator(application, "/ws/", headers=headers)
    try:
        assert (await ws.connect(timeout=5))[0]
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "room": "wg1-a"}))
        assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
        first = await database_sync_to_async(_post)(member, thread, "before")
        assert await _next_frames(ws, 5, seq=first, notified=False) == (first, None)

        # Act: Redis killed or paused, and the process knows; a message committed (its
        # publish fails and is logged); Redis back.
        redis_server.kill() if fault == "kill" else redis_server.pause()
        hub = bus._hubs[asyncio.get_running_loop()]
        await _until(lambda: hub.lost_at is not None, 10)
        second = await database_sync_to_async(_post)(colleague, thread, "@ana while away")
        redis_server.start() if fault == "kill" else redis_server.resume()

        # Assert: the socket gets the message and the mention's notification, without asking,
        # once the subscriptions are back; or neither, without the recovery.
        got = await _next_frames(ws, 8 if recovery else 3, seq=second, notified=True)
        # And the member is online in Redis again (killed: emptied), without waiting for the
        # heartbeat (20 s).
        back_online = await _online_within(thread.room_id, member.pk, 6)
    finally:
        await ws.disconnect()
        redis_server.resume()  # a paused server cannot act on the stop's SIGTERM
        redis_server.stop()
        channel_layers.backends.clear()

    assert got == ((second, "mention") if recovery else (None, None))
    assert back_online is (recovery or fault == "pause")
    # The first beat took: the subscriptions' return closed the breaker the outage had tripped.
    assert "presence beat after Redis came back failed" not in caplog.text


async def _online_within(room_id: int, member_id: int, seconds: float) -> bool:
    """Whether Redis lists the member among the room's online ids within `seconds`, read by
    a client of the test's own (the store's pool is the process's, and its calls would trip
    the breaker the process shares)."""
    import redis.asyncio as aioredis

    store = presence.get().store
    assert isinstance(store, presence.RedisStore)
    ids_key = store.keys(room_id)[2]
    client = aioredis.from_url(presence.redis_url() or "", socket_timeout=1)
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(OSError, aioredis.RedisError):
                if await client.zscore(ids_key, member_id) is not None:
                    return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await client.aclose()


def _arrange() -> tuple[User, User, Thread, list[tuple[bytes, bytes]]]:
    member = member_in("wg1", email="ana@trabajo.example", handle="ana")
    colleague = member_in("wg1", email="carla@trabajo.example", handle="carla")
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=member)
    return member, colleague, thread, _session_headers(member)


async def _next_frames(
    ws: WebsocketCommunicator, seconds: float, *, seq: int, notified: bool
) -> tuple[int | None, str | None]:
    """Within `seconds`: the `message.created` of `seq` (its seq), and the kind of the first
    `notification` when `notified` asks for one; other frames are skipped."""
    seen, kind = None, None
    try:
        async with asyncio.timeout(seconds):
            while seen is None or (notified and kind is None):
                frame = await ws.receive_json_from(timeout=seconds)
                if frame["type"] == "message.created" and frame["seq"] == seq:
                    seen = seq
                elif frame["type"] == "notification":
                    kind = frame["notification"]["kind"]
    except TimeoutError:
        pass
    return seen, kind


def test_the_recoverers_are_the_rooms_presences_and_the_inboxs() -> None:
    from forums import replay
    from notifications import recovery

    # Each registered once, by the apps' ready() at start-up, in either order.
    assert sorted(bus._recoverers, key=id) == sorted(
        [replay.recover_rooms, presence.recover, recovery.recover_members], key=id
    )
