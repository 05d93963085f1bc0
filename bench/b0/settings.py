"""Settings of the tutorial peer: nothing but what the Channels tutorial needs.

Sessions are signed cookies and there is no database: the load generator's clients send no
cookie, so the auth middleware never touches storage, as in the earlier measurement. For H5 the
tutorial's chat pages (part 2: `chat/<room>/`) are served with `startproject`'s middleware and
templates, as the tutorial's project has them.
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
    "django.contrib.messages",
    "channels",
    "bench.b0",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
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
