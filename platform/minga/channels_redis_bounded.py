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

`publish_sync` is the same publish for synchronous code (every write's frames after its commit:
a request's, a gateway hop's, a worker's), on the calling thread over a blocking connection of
its own: handing it to an event loop and waiting cost 310-430 us of CPU against 90-110
(docs/performance.md, "A publish from synchronous code, on the calling thread").

The subscriptions come back sooner after Redis did, and say so. channels_redis' receive loop
sleeps a second after every failed read, so a process stayed deaf for up to a second after
Redis was back, and nothing told it which frames it had missed; a Redis paused, or a network
that drops packets without closing the connection, failed no read at all. Here the loop tries
again after 50 ms, doubling to a second, PINGs its connection every 2 s and counts it lost
when 2 s pass without the answer or any frame, and `watch_subscriptions` callbacks hear when a shard's
subscriptions were lost and when they are back (the hub then replays what its sockets missed:
notifications.bus.Hub, docs/realtime-protocol.md, "How it works").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis
from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
    _wrap_close,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.sentinel import Sentinel, SentinelConnectionPool

from minga.breaker import Breaker, for_server

logger = logging.getLogger("minga.channels_redis_bounded")

RECEIVE_RETRY_FIRST = 0.05  # seconds after a failed read before the next; doubles each time
RECEIVE_RETRY_MAX = 1.0  # channels_redis' own wait, after every failure
LIVENESS_PING_SECONDS = 2.0  # a PING on each subscribed connection this often
LIVENESS_PONG_SECONDS = 2.0  # unanswered this long: the connection is counted lost

Watcher = tuple[asyncio.AbstractEventLoop, Callable[[], None], Callable[[], None]]


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
        # publish_sync's: channels_redis' own group names and choice of shard (a loop layer
        # opens no connection until it is used), and a blocking client per shard.
        self._names: RedisPubSubLoopLayer | None = None
        self._clients: list[redis.Redis] = []
        self._clients_lock = threading.Lock()
        self._watchers: list[Watcher] = []

    def _get_layer(self) -> RedisPubSubLoopLayer:
        """The base class's per-event-loop layer, with shards whose receive loop retries sooner
        and reports (`_Shard`)."""
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = RedisPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            layer._shards = [_Shard(shard.host, layer) for shard in layer._shards]
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer

    def watch_subscriptions(self, lost: Callable[[], None], back: Callable[[], None]) -> None:
        """Call `lost()` when a shard of this event loop's layer loses its subscriptions (a
        failed read, or a connection that went silent: `_Shard`), and `back()` once Redis
        answered a PING sent after they were made again on a new connection. Both run on the
        loop, in the shard's receive task: they must not block. When the first shard is back,
        the layer's breaker is closed before `back()` runs (`_subscriptions`)."""
        self._watchers.append((asyncio.get_running_loop(), lost, back))

    def unwatch_subscriptions(self, lost: Callable[[], None]) -> None:
        self._watchers = [w for w in self._watchers if w[1] != lost]

    def _subscriptions(self, state: str, first_shard: bool = False) -> None:
        """Tell this loop's watchers that a shard lost its subscriptions or has them back. Back
        on the first shard, whose Redis the breaker stands for (`__init__`), that Redis answered
        a PING: the breaker, shared by every client of it in this process and maybe still open
        for up to a second from the outage's last failure, closes first, so the watchers'
        recovery (presence's beat) and the next post's publish are not dropped in that second."""
        if state == "back" and first_shard:
            self.breaker.close()
        loop = asyncio.get_running_loop()
        for watched, lost, back in list(self._watchers):
            if watched is loop:
                try:
                    (lost if state == "lost" else back)()
                except Exception:
                    logger.exception("subscription watcher failed")

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

    def publish_sync(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """`group_send` each `(group, message)` from synchronous code, in order, on this thread.

        The same PUBLISH as `group_send` (channels_redis' group name, serializer and shard), over
        a blocking connection of this process's pool for the shard (redis-py's pools are
        thread-safe and start afresh in a forked child); several messages go in one pipelined
        round trip per shard. The host's socket and connect timeouts bound the wait. Raises
        RedisUnavailableError, and trips the breaker, as `group_send` does.
        """
        if not items:
            return
        if self.breaker.open:
            raise RedisUnavailableError("Redis did not answer a moment ago; publish skipped")
        names, clients = self._sync_clients()
        by_shard: dict[int, list[tuple[str, bytes]]] = {}
        for group, message in items:
            channel = names._get_group_channel_name(group)
            index = names._shards.index(names._get_shard(channel))
            by_shard.setdefault(index, []).append((channel, self.serialize(message)))
        try:
            for index, messages in by_shard.items():
                if len(messages) == 1:
                    clients[index].publish(*messages[0])
                    continue
                with clients[index].pipeline(transaction=False) as pipe:
                    for channel, data in messages:
                        pipe.publish(channel, data)
                    pipe.execute()
        except (OSError, RedisError) as exc:
            self.breaker.trip()
            raise RedisUnavailableError(f"publish failed: {exc!r}") from exc

    def _sync_clients(self) -> tuple[RedisPubSubLoopLayer, list[redis.Redis]]:
        with self._clients_lock:
            if self._names is None:
                self._names = RedisPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
                self._clients = [
                    redis.Redis(connection_pool=_pool(s.host)) for s in self._names._shards
                ]
            return self._names, self._clients


class _Shard(RedisSingleShardConnection):
    """channels_redis' connection to one Redis shard, with a receive loop that

    - waits 50 ms after a failed read, doubling to a second (channels_redis waits a second
      every time);
    - sends a PING on the subscribed connection every LIVENESS_PING_SECONDS and counts the
      connection lost when nothing at all came within LIVENESS_PONG_SECONDS of it (frames
      arriving prove it alive while the answer waits behind them in a busy process): a Redis
      that is paused, or a network that drops packets without closing the connection, fails no
      read, and the process would stay deaf without knowing it (until TCP gave up, hours
      later);
    - reports losing its subscriptions to the layer's watchers, and their return once Redis
      answered a PING sent after them on the new connection (so the SUBSCRIBEs were handled).
    """

    async def _do_receiving(self) -> None:
        clock = asyncio.get_running_loop().time
        failures, lost = 0, False
        ping_due, pinged = clock() + LIVENESS_PING_SECONDS, None  # pinged: the unanswered one
        heard = 0.0  # when the last message came
        while True:
            try:
                if not (self._pubsub and self._pubsub.subscribed):
                    await asyncio.sleep(0.1)
                    continue
                now = clock()
                if pinged is None and (lost or now >= ping_due):
                    await self._pubsub.ping()  # connects (and subscribes again) when it must
                    pinged = now
                elif pinged is not None and now - max(pinged, heard) > LIVENESS_PONG_SECONDS:
                    raise ConnectionError(
                        f"nothing from Redis {LIVENESS_PONG_SECONDS} s after a PING"
                    )
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=0.1
                )
                failures = 0
                if message is not None:
                    heard = clock()
                if message is not None and message.get("type") == "pong":
                    pinged, ping_due = None, clock() + LIVENESS_PING_SECONDS
                    if lost:
                        lost = False
                        logger.warning("Redis subscriptions are back")
                        self._report("back")
                    continue
                self._receive_message(message)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                if not lost:
                    lost = True
                    logger.warning("Redis subscriptions lost: %r", exc)
                    self._report("lost")
                pinged = None
                failures += 1
                await self._drop_connection()
                await asyncio.sleep(_retry_delay(failures))

    async def publish(self, channel: str, message: bytes) -> None:
        """channels_redis' publish, sent once more on a new connection when a restarted Redis
        had closed the pooled one (minga.redis_retry). By hand: the pool is shared with the
        subscribed connection, which must not carry redis-py's retry (it would subscribe again
        silently, and the loss would go unreported)."""
        try:
            await super().publish(channel, message)
        except RedisConnectionError:
            await super().publish(channel, message)

    async def _drop_connection(self) -> None:
        """Close the subscribed connection (a failed read closed it already; a silent one is
        still open): the next command opens a new one and subscribes again on it."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        if connection is not None:
            # Closing a broken connection may fail, or wait on a peer that does not answer (with
            # no connect timeout configured): the reconnect decides.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(RECEIVE_RETRY_MAX):
                    await connection.disconnect()

    def _report(self, state: str) -> None:
        proxy = getattr(self.channel_layer, "channel_layer", None)
        if isinstance(proxy, BoundedPubSubChannelLayer):
            shards = getattr(self.channel_layer, "_shards", None) or [None]
            proxy._subscriptions(state, first_shard=shards[0] is self)


def _retry_delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th failed read in a row: 50 ms, doubling to 1 s."""
    return min(RECEIVE_RETRY_FIRST * 2 ** (failures - 1), RECEIVE_RETRY_MAX)


def _pool(host: dict[str, Any]) -> redis.ConnectionPool:
    """A blocking connection pool for a channels_redis host entry, as `channels_redis.utils.
    create_pool` makes the asyncio one: an address (URL) with options, a Sentinel master, or
    connection keyword arguments."""
    options = dict(host)
    if "address" in options:
        return redis.ConnectionPool.from_url(options.pop("address"), **options)
    master = options.pop("master_name", None)
    if master is not None:
        sentinels = Sentinel(
            options.pop("sentinels"), sentinel_kwargs=options.pop("sentinel_kwargs", None)
        )
        return SentinelConnectionPool(master, sentinels, **options)
    return redis.ConnectionPool(**options)
