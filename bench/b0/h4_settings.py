"""B0's settings plus a database, for the H4 loop only (`bench.b0.h4_loop`); the servers keep
bench.b0.settings. The table lives in the benchmark's own database (`BENCH_B0_DB_*`)."""

from __future__ import annotations

import os

from bench.b0.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["BENCH_B0_DB_NAME"],
        "HOST": os.environ.get("BENCH_B0_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_B0_DB_PORT", "5432"),
        "USER": os.environ.get("BENCH_B0_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("BENCH_B0_DB_PASSWORD", ""),
    }
}
