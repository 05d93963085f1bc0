"""Settings of the tutorial peer: nothing but what the Channels tutorial needs.

Sessions are signed cookies and there is no database: the load generator's clients send no
cookie, so the auth middleware never touches storage, as in the earlier measurement.
"""

from __future__ import annotations

import os

SECRET_KEY = "bench-only-not-secret-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "bench.b0",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.b0.urls"
ASGI_APPLICATION = "bench.b0.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

_REDIS = ("127.0.0.1", int(os.environ.get("BENCH_REDIS_PORT", "6390")))
_LAYER = os.environ.get("BENCH_LAYER", "core")
if _LAYER not in {"core", "pubsub"}:
    raise ValueError(f"BENCH_LAYER must be core or pubsub, not {_LAYER!r}")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": (
            "channels_redis.core.RedisChannelLayer"
            if _LAYER == "core"
            else "channels_redis.pubsub.RedisPubSubChannelLayer"
        ),
        "CONFIG": {"hosts": [_REDIS]},
    }
}
