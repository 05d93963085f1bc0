"""Publishing from synchronous code: on the calling thread through the production layer's
`publish_sync`; a batch the fan-out overlaps with its next one, on the process's one publisher
loop (outside a server, `async_to_sync` would make a new event loop per call, and channels_redis
a new layer and a new Redis connection with it).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from notifications import bus


def _in_a_plain_thread(fn: Any) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert errors == []


def _listen(layer: Any, groups: list[str], count: int) -> tuple[threading.Thread, list[str]]:
    """A listener on `layer` in a thread of its own (as another process's hub would be), joined
    to `groups`; it collects the texts of `count` frames. Returns once it is subscribed."""
    received: list[str] = []
    ready = threading.Event()

    async def listen() -> None:
        channel = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, channel)
        ready.set()
        try:
            for _ in range(count):
                message = await asyncio.wait_for(layer.receive(channel), 5)
                received.append(message["text"])
        finally:
            await layer.flush()

    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    assert ready.wait(5)
    return listener, received


@pytest.mark.redis
def test_publishes_from_a_plain_thread_go_on_its_own_connection_in_order(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import get_channel_layer  # noqa: TID251 - the test listens on the layer

    monkeypatch.setattr(bus, "_publisher", None)
    layer = get_channel_layer()
    listener, received = _listen(layer, ["user.4242"], 3)

    def publish() -> None:
        for n in (1, 2, 3):
            bus.publish_rollback_unsafe(bus.user_group(4242), {"type": "notification", "n": n})

    _in_a_plain_thread(publish)
    listener.join(10)

    assert received == [f'{{"type":"notification","n":{n}}}' for n in (1, 2, 3)]
    # On the thread, through the layer's blocking client: no publisher loop was started.
    assert bus._publisher is None


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_batch_on_commit_arrives_in_order_in_one_pipelined_round_trip(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import get_channel_layer  # noqa: TID251 - the test listens on the layer
    from django.db import transaction
    from redis.client import Pipeline

    layer = get_channel_layer()
    listener, received = _listen(layer, ["user.1", "user.2"], 3)
    executed: list[int] = []
    execute = Pipeline.execute

    def counted(pipe: Pipeline, *args: Any, **kwargs: Any) -> Any:
        executed.append(len(pipe.command_stack))
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted)
    items = [
        (bus.user_group(u), {"type": "notification", "n": n}) for u, n in ((1, 1), (2, 2), (1, 3))
    ]
    with transaction.atomic():
        bus.publish_many_on_commit(items)
        assert executed == []  # nothing before the commit
    listener.join(10)

    assert sorted(received) == [f'{{"type":"notification","n":{n}}}' for n in (1, 2, 3)]
    assert [r for r in received if '"n":1' in r or '"n":3' in r] == [
        '{"type":"notification","n":1}',
        '{"type":"notification","n":3}',
    ]
    assert executed == [3]


@pytest.mark.redis
def test_publish_sync_takes_the_shard_channels_redis_takes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards, the second a Redis that refuses connections: a group channels_redis puts on
    the first arrives, one it puts on the second fails there, as its own group_send would."""
    from channels_redis.utils import _consistent_hash
    from minga import breaker
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer, RedisUnavailableError

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=[redis_url, "redis://127.0.0.1:1/0"], prefix="shards")
    on: dict[int, list[str]] = {0: [], 1: []}
    for n in range(40):
        on[_consistent_hash(f"shards__group__user.{n}", 2)].append(f"user.{n}")
    first, second = on[0][0], on[1][0]
    # Listening on the first Redis alone (a two-shard listener's own channel may hash to the
    # second): what arrives there was published on the shard the library chose for it.
    listening = BoundedPubSubChannelLayer(hosts=[redis_url], prefix="shards")
    listener, received = _listen(listening, [first], 1)

    layer.publish_sync([(first, {"type": "bus.event", "text": "on the first"})])
    listener.join(10)
    with pytest.raises(RedisUnavailableError):
        layer.publish_sync([(second, {"type": "bus.event", "text": "on the second"})])

    assert received == ["on the first"]


@pytest.mark.redis
def test_publish_sync_after_redis_restarted_reconnects_and_delivers(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's connection from before the restart is broken: the publish goes out on a new
    one instead of failing and tripping the breaker."""
    from minga import breaker
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer

    from tests.reliability.faults import PrivateRedis

    monkeypatch.setattr(breaker, "_by_server", {})
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    try:
        layer = BoundedPubSubChannelLayer(hosts=[redis_server.url])
        layer.publish_sync([("room.1", {"type": "bus.event", "text": "before"})])  # pooled
        redis_server.kill()
        redis_server.start()
        listening = BoundedPubSubChannelLayer(hosts=[redis_server.url])
        listener, received = _listen(listening, ["room.1"], 1)

        layer.publish_sync([("room.1", {"type": "bus.event", "text": "after"})])
        listener.join(10)

        assert received == ["after"]
        assert not layer.breaker.open
    finally:
        redis_server.stop()


def test_publish_sync_trips_the_breaker_then_skips_redis_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from minga import breaker
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer, RedisUnavailableError

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    frame = {"type": "bus.event", "text": "{}"}

    with pytest.raises(RedisUnavailableError, match="publish failed"):
        layer.publish_sync([("room.1", frame)])
    assert layer.breaker.open
    monkeypatch.setattr(layer, "_sync_clients", lambda: pytest.fail("Redis was called"))
    with pytest.raises(RedisUnavailableError, match="a moment ago"):
        layer.publish_sync([("room.1", frame)])


def test_a_failed_publish_is_logged_and_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from minga import breaker
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    monkeypatch.setattr(bus, "get_channel_layer", lambda: layer)

    bus.publish_rollback_unsafe("room.1", {"type": "typing"})

    assert [r.getMessage() for r in caplog.records] == ["publish failed"]


@pytest.mark.redis
def test_publish_many_soon_runs_on_the_one_publisher_loop(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fan-out goes on with its next batch while this one is published: on the process's
    publisher loop, one for every call."""
    from channels.layers import get_channel_layer  # noqa: TID251 - the test listens on the layer

    monkeypatch.setattr(bus, "_publisher", None)
    layer = get_channel_layer()
    listener, received = _listen(layer, ["user.4242"], 2)
    loops: list[Any] = []

    def publish_twice() -> None:
        for n in (1, 2):
            future = bus.publish_many_soon(
                [(bus.user_group(4242), {"type": "notification", "n": n})]
            )
            assert future is not None
            future.result(5)
            loops.append(bus._publisher)

    _in_a_plain_thread(publish_twice)
    listener.join(10)

    assert received == ['{"type":"notification","n":1}', '{"type":"notification","n":2}']
    assert loops[0] is not None and loops[0][2] is layer and loops[1][1] is loops[0][1]


def test_the_in_memory_layer_keeps_async_to_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    from channels.layers import InMemoryChannelLayer

    called: list[str] = []

    async def send(group: str, message: dict[str, Any]) -> None:
        called.append(group)

    layer = InMemoryChannelLayer()
    monkeypatch.setattr(layer, "group_send", send)

    _in_a_plain_thread(lambda: bus.run_sync(layer, layer.group_send, "room.1", {}))

    assert called == ["room.1"]
    assert not bus._is_redis_layer(layer)
