"""Test set-up: real PostgreSQL and Redis where they answer, a clear line where they do not.

PostgreSQL: DATABASE_URL, else 127.0.0.1:5432 (database `test`) when it answers; otherwise the
suite runs on SQLite and the `postgres` tests are skipped. Redis: REDIS_URL, else
127.0.0.1:6379; otherwise the `redis` tests are skipped. Under CI=true a missing service fails
the run instead: CI must exercise the real servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from minga.pytest_plugin import REDIS_UP, REDIS_URL

if TYPE_CHECKING:
    from tests.forums.test_multiprocess import Cluster


@pytest.fixture
def redis_url() -> str:
    if not REDIS_UP:
        pytest.skip("Redis not reachable")
    return REDIS_URL


@pytest.fixture
def redis_layer(settings: pytest.FixtureRequest, redis_url: str) -> str:
    """Switch the channel layer to channels_redis (pub/sub) for this test, as in production:
    through minga's bounded subclass, whose `publish_sync` carries the publishes of synchronous
    code."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "minga.channels_redis_bounded.BoundedPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()


@pytest.fixture(autouse=True, scope="session")
def _one_gateway_database_thread() -> None:
    """In-process sockets make their database hops on Channels' one thread: a connection that a
    pool thread (minga.realtime.db_hop) still holds when the run ends keeps the test database
    from being dropped. The servers the fault, browser and client families start run with the
    threads, as production does. (Not through the `settings` fixture: an autouse use of it
    would restore settings after every module's own fixtures are torn down.)"""
    from django.conf import settings

    settings.GATEWAY_DB_THREADS = 0


@pytest.fixture(autouse=True)
def _closed_breakers() -> None:
    """A test starts with every server's breaker closed: one that tripped it (a broker or a
    cache made to fail) does not make the next test skip its calls (minga.breaker)."""
    from minga import breaker

    breaker._by_server.clear()


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """A test starts with an empty cache. Flood counters, cooldown markers and throttles are
    keyed by ids, and on SQLite a rolled-back test's ids come again (PostgreSQL's sequences
    never repeat): without this, the suite on SQLite refused posts as rate limited."""
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> None:
    """Each test gets new channel-layer instances (the in-memory one keeps state otherwise)."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def mp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two daphne processes, a Celery worker and a database of their own, on the shared Redis;
    started once for tests/forums/test_multiprocess.py and tests/notifications/ (see there)."""
    from tests.forums.test_multiprocess import start_cluster

    with start_cluster(tmp_path_factory) as cluster:
        yield cluster


@pytest.fixture
def plan(db: None) -> None:
    """The Plan of Action: wg1 and wg2, their coordinators, 25 topics and 25 rooms."""
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_plan_of_action", stdout=StringIO())


from tests.factories import *  # noqa: E402, F403 - fixtures and factories for every test module
