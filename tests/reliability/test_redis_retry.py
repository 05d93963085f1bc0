"""A restarted Redis closed every pooled connection: each client's next command goes on a new one
(redis-py's blocking pools check at checkout; the asyncio ones retry once: minga.redis_retry),
and nothing trips the breaker the process shares, so the cache, the publishes and presence work
at once. A Redis that does not answer costs one wait, not two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.layers import channel_layers
from minga import breaker
from minga.cache import ResilientRedisCache
from minga.channels_redis_bounded import BoundedPubSubChannelLayer
from redis import asyncio as aioredis

from forums import presence
from tests.reliability.faults import PrivateRedis


@pytest.fixture
def redis_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateRedis]:
    monkeypatch.setattr(breaker, "_by_server", {})  # this Redis's breaker, closed
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _restart(server: PrivateRedis) -> None:
    server.kill()
    server.start()


def _layer(url: str) -> BoundedPubSubChannelLayer:
    host = {"address": url, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    return BoundedPubSubChannelLayer(hosts=[host], prefix="minga-retry-test")


async def _listen(url: str, layer: BoundedPubSubChannelLayer, group: str) -> aioredis.client.PubSub:
    """A subscriber of the test's own to the channel the layer publishes `group` to."""
    names = layer._get_layer()
    client = aioredis.from_url(url)
    listener = client.pubsub()
    await listener.subscribe(names._get_group_channel_name(group))
    await listener.get_message(timeout=1)  # the subscribe's confirmation
    return listener


async def _published(listener: aioredis.client.PubSub) -> int:
    """How many messages reach `listener` within a second."""
    got = 0
    while await listener.get_message(ignore_subscribe_messages=True, timeout=1) is not None:
        got += 1
    return got


def test_the_cache_writes_and_reads_at_once_after_a_restart(redis_server: PrivateRedis) -> None:
    cache = ResilientRedisCache(redis_server.url, {"OPTIONS": {"socket_timeout": 1.0}})
    cache.set("agenda", "before")
    assert cache.get("agenda") == "before"

    _restart(redis_server)  # empty, and the pooled connection closed at its end
    cache.set("agenda", "after")

    assert cache.get("agenda") == "after"
    assert not cache.breaker.open


def test_a_publish_from_synchronous_code_reaches_redis_at_once_after_a_restart(
    redis_server: PrivateRedis,
) -> None:
    layer = _layer(redis_server.url)
    layer.publish_sync([("room.1", {"type": "minga.frame", "text": "before"})])

    _restart(redis_server)

    async def publish_and_count() -> int:
        listener = await _listen(redis_server.url, layer, "room.1")
        try:
            layer.publish_sync([("room.1", {"type": "minga.frame", "text": "after"})])
            return await _published(listener)
        finally:
            await listener.aclose()

    assert asyncio.run(publish_and_count()) == 1
    assert not layer.breaker.open


async def test_a_publish_from_the_event_loop_reaches_redis_at_once_after_a_restart(
    redis_server: PrivateRedis,
) -> None:
    layer = _layer(redis_server.url)
    try:
        await layer.group_send("room.1", {"type": "minga.frame", "text": "before"})

        _restart(redis_server)
        listener = await _listen(redis_server.url, layer, "room.1")
        try:
            await layer.group_send("room.1", {"type": "minga.frame", "text": "after"})
            published = await _published(listener)
        finally:
            await listener.aclose()
    finally:
        await layer.flush()
        channel_layers.backends.clear()

    assert published == 1
    assert not layer.breaker.open


async def test_presence_writes_at_once_after_a_restart(redis_server: PrivateRedis) -> None:
    store = presence.RedisStore(redis_server.url, "minga:test:retry:")
    try:
        await store.add(1, "7:tab-1", expires=1e12, at=1.0)

        _restart(redis_server)
        seen = await store.add(1, "7:tab-1", expires=1e12, at=2.0)
    finally:
        await store.aclose()

    assert seen.online.ids == [7]
    assert not store.breaker.open


async def test_a_redis_that_does_not_answer_is_waited_for_once() -> None:
    """A timeout is not retried: a paused Redis (it accepts, never answers) costs the cache one
    connection and one wait, then its fallback, and trips the breaker."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    breaker._by_server.pop(f"127.0.0.1:{port}", None)
    cache = ResilientRedisCache(f"redis://127.0.0.1:{port}/0", {"OPTIONS": {"socket_timeout": 0.3}})
    try:
        got = await asyncio.to_thread(cache.get, "agenda", "fallback")
        assert got == "fallback"
        assert cache.breaker.open
        assert len(accepted) == 1
    finally:
        server.close()
        for writer in accepted:
            writer.close()
