"""channels_redis' pub/sub layer with a bound on how long a publish may wait for Redis.

A publish waits for one lock per Redis shard (channels_redis serialises publishes and
subscribes on one connection), then for Redis. While Redis is paused or overloaded each publish
times out after the socket timeout, but those waiting behind it queue up: a request that
publishes after its commit then waits for every publish ahead of it, so its wait grows with the
length of the outage (measured: 9.8 s for a 10 s SIGSTOP, tests/reliability/test_faults.py,
REDIS-PAUSE soak). Here each `group_send` gives up after PUBLISH_TIMEOUT seconds in all, lock
included, and for BREAKER_SECONDS after a publish failed the next ones fail at once instead of
joining the queue. A failed publish raises; the bus logs and drops it, and clients catch up from
the database by `seq` (docs/operations.md, "Redis faults").
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.exceptions import RedisError

from minga.breaker import Breaker, for_server


class RedisUnavailableError(ConnectionError):
    """A publish was not attempted or did not finish in time: Redis is not answering."""


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    def __init__(
        self, *args: Any, publish_timeout: float = 2.0, breaker_seconds: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.publish_timeout = publish_timeout
        # Shared with the cache and the broker on the same Redis (minga.breaker.for_server).
        hosts = self._kwargs.get("hosts") or [""]
        address = hosts[0].get("address", "") if isinstance(hosts[0], dict) else hosts[0]
        self.breaker = for_server(str(address), breaker_seconds) if address else Breaker()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.breaker.open:
            raise RedisUnavailableError("Redis did not answer a moment ago; publish skipped")
        try:
            # The base class proxies group_send to its per-event-loop layer (no method to
            # call through super()).
            layer = self._get_layer()
            await asyncio.wait_for(layer.group_send(group, message), self.publish_timeout)
        except (TimeoutError, OSError, RedisError) as exc:
            # wait_for's timeout also cancels the wait for the shard's lock.
            self.breaker.trip()
            raise RedisUnavailableError(f"publish failed: {exc!r}") from exc
