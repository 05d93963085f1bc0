"""Test set-up: real PostgreSQL and Redis where they answer, a clear line where they do not.

PostgreSQL: DATABASE_URL, else 127.0.0.1:5432 (database `test`) when it answers; otherwise the
suite runs on SQLite and the `postgres` tests are skipped. Redis: REDIS_URL, else
127.0.0.1:6379; otherwise the `redis` tests are skipped. Under CI=true a missing service fails
the run instead: CI must exercise the real servers.
"""

from __future__ import annotations

import pytest
from minga.pytest_plugin import REDIS_UP, REDIS_URL


@pytest.fixture
def redis_url() -> str:
    if not REDIS_UP:
        pytest.skip("Redis not reachable")
    return REDIS_URL


@pytest.fixture
def redis_layer(settings: pytest.FixtureRequest, redis_url: str) -> str:
    """Switch the channel layer to channels_redis (pub/sub) for this test, as in production."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    yield redis_url
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _fresh_channel_layers() -> None:
    """Each test gets new channel-layer instances (the in-memory one keeps state otherwise)."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture
def plan(db: None) -> None:
    """The Plan of Action: wg1 and wg2, their coordinators, 25 topics and 25 rooms."""
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_plan_of_action", stdout=StringIO())


from tests.factories import *  # noqa: E402, F403 - fixtures and factories for every test module
