"""Publishing from synchronous code outside a server (a worker, a script): on one publisher loop.

`async_to_sync` there makes a new event loop per call, and channels_redis a new layer and a new
Redis connection with it; the bus runs those publishes on one loop of the process instead.
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


@pytest.mark.redis
def test_publishes_from_a_plain_thread_share_one_loop_and_arrive(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import get_channel_layer  # noqa: TID251 - the test listens on the layer

    monkeypatch.setattr(bus, "_publisher", None)
    layer = get_channel_layer()
    received: list[str] = []

    async def listen() -> None:
        channel = await layer.new_channel()
        await layer.group_add("user.4242", channel)
        ready.set()
        for _ in range(2):
            message = await asyncio.wait_for(layer.receive(channel), 5)
            received.append(message["text"])
        await layer.flush()

    ready = threading.Event()
    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    assert ready.wait(5)
    loops: list[Any] = []

    def publish_twice() -> None:
        for n in (1, 2):
            bus.publish_rollback_unsafe(bus.user_group(4242), {"type": "notification", "n": n})
            loops.append(bus._publisher)

    _in_a_plain_thread(publish_twice)
    listener.join(10)

    assert received == ['{"type":"notification","n":1}', '{"type":"notification","n":2}']
    # The first publish started the publisher loop for this layer; the second used it again.
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
