"""The breaker in front of Redis: after one failure, the next second's calls take their fallback
at once (the cache, the task enqueue of a post's notifications)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.cache import caches
from minga import breaker, cache


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(breaker.time, "monotonic", lambda: now[0])
    return now


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_after_a_failure_the_cache_answers_its_fallback_without_calling_redis(
    settings: Any, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "minga.cache.ResilientRedisCache",
            "LOCATION": f"redis://127.0.0.1:{_dead_port()}/0",
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
    monkeypatch.setattr(breaker, "_by_server", {})
    backend = caches["default"]
    calls: list[str] = []
    real_get = cache.RedisCache.get

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("get")
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(cache.RedisCache, "get", counted)

    answers = [backend.get("k", "fallback")]  # refused: the breaker trips
    clock[0] += 0.5
    answers.append(backend.get("k", "fallback"))  # within the second: no call
    assert backend.add("k", 1) is True  # add fails open, also from the breaker
    clock[0] += 0.6
    answers.append(backend.get("k", "fallback"))  # the second is over: tried again

    assert answers == ["fallback"] * 3
    assert calls == ["get", "get"]


@pytest.mark.django_db
def test_a_post_after_the_broker_failed_notifies_inline_without_waiting(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifications import receivers

    tripped = breaker.Breaker(1.0)
    monkeypatch.setattr(receivers, "_broker", lambda: tripped)
    conf = receivers.message_posted_task.app.conf
    monkeypatch.setitem(conf, "task_always_eager", False)
    enqueued: list[dict[str, Any]] = []
    inline: list[dict[str, Any]] = []

    def refuse(**work: Any) -> None:
        enqueued.append(work)
        raise ConnectionError("broker away")

    monkeypatch.setattr(receivers.message_posted_task, "delay", refuse)
    monkeypatch.setattr(receivers, "message_posted_notify", lambda **work: inline.append(work))

    class Posted:
        deleted_at = hidden_at = reply_to_id = None

        def __init__(self, pk: int) -> None:
            self.pk = pk

    receivers.on_message_posted(None, message=Posted(1), mentioned_ids=[])
    clock[0] += 0.5
    receivers.on_message_posted(None, message=Posted(2), mentioned_ids=[7])
    clock[0] += 0.6
    receivers.on_message_posted(None, message=Posted(3), mentioned_ids=[])

    assert [w["message_id"] for w in enqueued] == [1, 3]
    assert inline == [
        {"message_id": 1, "mentioned_ids": []},
        {"message_id": 2, "mentioned_ids": [7]},
        {"message_id": 3, "mentioned_ids": []},
    ]


def test_clients_of_one_server_share_its_breaker(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=[{"address": "redis://10.0.0.9:6379/0"}])

    breaker.for_server("redis://10.0.0.9:6379/1").trip()  # the cache, on another database

    assert layer.breaker.open
    assert breaker.for_server("10.0.0.9:6379") is layer.breaker
    assert not breaker.for_server("redis://10.0.0.9:6380/0").open
    clock[0] += 1.1
    assert not layer.breaker.open


async def test_a_tripped_breaker_skips_the_publish_at_once(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from minga.channels_redis_bounded import BoundedPubSubChannelLayer, RedisUnavailableError

    monkeypatch.setattr(breaker, "_by_server", {})
    layer = BoundedPubSubChannelLayer(hosts=[{"address": "redis://10.0.0.9:6379/0"}])
    breaker.for_server("redis://10.0.0.9:6379/0").trip()

    with pytest.raises(RedisUnavailableError):
        await layer.group_send("room.1", {"type": "bus.event", "text": "{}"})
