"""minga.cache.ReusedClient: one redis.Redis per server for the cache, not one per call."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import caches
from minga.pytest_plugin import REDIS_URL


def _cache(settings: Any, location: str | list[str]) -> Any:
    settings.CACHES = {
        "default": {
            "BACKEND": "minga.cache.ResilientRedisCache",
            "LOCATION": location,
            "KEY_PREFIX": f"test-cache-{uuid.uuid4().hex[:8]}",
        }
    }
    return caches["default"]


@pytest.mark.redis
def test_the_cache_keeps_one_client_and_still_reads_and_writes(settings: Any) -> None:
    backend = _cache(settings, REDIS_URL)

    backend.set("agenda", {"item": 2}, 30)
    added = backend.add("agenda", "other", 30)
    read = backend.get("agenda")
    backend.delete("agenda")

    assert (added, read, backend.get("agenda", "gone")) == (False, {"item": 2}, "gone")
    client = backend._cache.get_client("agenda", write=True)
    assert backend._cache.get_client("agenda") is client  # one server: reads share it
    assert client.connection_pool is backend._cache._pools[0]


def test_reads_keep_django_s_choice_of_replica_with_a_client_for_each(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = ["redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0", "redis://10.0.0.3:6379/0"]
    cache_client = _cache(settings, servers)._cache
    monkeypatch.setattr("random.randint", lambda low, high: high)  # Django draws the replica

    write, read = cache_client.get_client(write=True), cache_client.get_client()

    def host(client: Any) -> str:
        return client.connection_pool.connection_kwargs["host"]

    assert (host(write), host(read)) == ("10.0.0.1", "10.0.0.3")
    assert cache_client.get_client() is read  # nothing connected: pools connect on use
    assert cache_client.get_client(write=True) is write
