"""A Redis cache that degrades instead of failing while Redis is away.

Rate limits (allauth), and everything else that uses the cache, then fail open for the length
of the outage: a delegate can still log in and post while Redis restarts. Each failure is logged,
and for a second after one the calls answer their fallback at once (minga.breaker).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from minga.breaker import Breaker, for_server

logger = logging.getLogger("minga.cache")
# After a failed call, the calls of this many seconds answer their fallback at once.
BREAKER_SECONDS = 1.0
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class ReusedClient(RedisCacheClient):
    """Django's Redis cache client, with one `redis.Redis` per connection pool. Django makes a
    new one for every call (`get_client`), and redis-py fills a case-insensitive table of ~170
    response callbacks for each: a `get` cost 133 us of CPU, 72 us with the client kept
    (docs/performance.md, "The write path"). A `redis.Redis` over a pool holds no connection of
    its own and is safe to share; the pools and the choice of server are Django's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}  # id(pool) -> its client

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # Django's choice of server, and its pool
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class ResilientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClient

    @property
    def breaker(self) -> Breaker:
        # Per server and process: Django makes a cache instance per thread, and the channel
        # layer and the broker on the same Redis share it (minga.breaker.for_server).
        return for_server(self._servers[0], BREAKER_SECONDS)

    def _guard(self, operation: str, default: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
        breaker = self.breaker
        if breaker.open:
            return default  # Redis failed a moment ago: do not wait for another timeout
        try:
            return call(*args, **kwargs)
        except _UNAVAILABLE as exc:
            breaker.trip()
            logger.warning("cache unavailable", extra={"operation": operation, "error": str(exc)})
            return default

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._guard("get", default, super().get, key, default, version)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        self._guard("set", None, super().set, key, value, timeout, version)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        # Outage: "added". allauth's rate limit takes its lock with add(); answering False
        # would refuse every sign-in while Redis restarts (fail closed, not open).
        return self._guard("add", True, super().add, key, value, timeout, version)

    def delete(self, key: Any, version: Any = None) -> bool:
        return self._guard("delete", False, super().delete, key, version)

    def get_many(self, keys: Any, version: Any = None) -> dict[Any, Any]:
        return self._guard("get_many", {}, super().get_many, keys, version)

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list[Any]:
        return self._guard("set_many", list(data), super().set_many, data, timeout, version)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        return self._guard("incr", delta, super().incr, key, delta, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return self._guard("touch", False, super().touch, key, timeout, version)
