"""One retry, at once, of a Redis command whose pooled connection the server had closed.

When Redis restarts, every idle connection in a process's pools is closed at the server's end.
redis-py's blocking pools notice at checkout (the socket reads as closed) and connect again; its
asyncio pools do not, and the next command on each connection fails with `ConnectionError`
("Connection closed by server"). That one failure trips the process's breaker (minga.breaker):
for the next second the cache answers its fallback, publishes are dropped (the post is
committed, its frame reaches no one live) and presence shows only the member, although Redis is
up again (tests/reliability/test_redis_retry.py).

redis-py connects again and sends the command once more when the connection carries a `Retry`.
Its own client default is three retries with backoff on connection errors and timeouts; this is
one retry, without waiting, on connection errors only: a timeout is a Redis that does not
answer, and a second wait would double what a request pays for it (the breaker's reason). A
refused connection is tried twice, a few microseconds apart.

Not for a connection that carries subscriptions: redis-py's pub/sub would subscribe again on
the retry, silently, and the gateway would not know that it missed what was published meanwhile
(minga.channels_redis_bounded watches that connection itself, and retries its publishes by hand).
"""

from __future__ import annotations

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

RETRIES = 1


def for_asyncio() -> Retry:
    """The retry for an asyncio client's connection pool (`retry=`)."""
    return Retry(NoBackoff(), RETRIES, supported_errors=(RedisConnectionError,))
