"""/healthz: 200 with the parts that answered, 503 naming the part that did not."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import channel_layers
from django.db import OperationalError
from django.test import AsyncClient
from minga import health

pytestmark = pytest.mark.django_db(transaction=True)


async def test_healthz_ok_when_database_and_layer_answer() -> None:
    response = await AsyncClient().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "channel_layer": "ok"},
        "failing": [],
    }
    assert response["Cache-Control"] == "no-store"


@pytest.mark.redis
async def test_healthz_ok_with_real_redis_layer(redis_layer: str) -> None:
    response = await AsyncClient().get("/healthz")

    assert response.status_code == 200


async def test_healthz_names_an_unreachable_channel_layer(settings: Any) -> None:
    # Nothing listens on port 1: the real channels_redis client fails to connect.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}]
            },
        }
    }
    channel_layers.backends.clear()

    response = await AsyncClient().get("/healthz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["channel_layer"]
    assert response.json()["checks"]["database"] == "ok"


async def test_healthz_names_a_failing_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_database_answers", broken)

    response = await AsyncClient().get("/healthz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
