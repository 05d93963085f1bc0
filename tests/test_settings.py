"""Settings from the environment: the embedded default, production's refusals, the deploy check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-production-test-key-with-enough-entropy-1234567890",
    "ALLOWED_HOSTS": "minga.example.org",
}
PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "debug": settings.DEBUG,
    "db": settings.DATABASES["default"]["ENGINE"],
    "db_options": settings.DATABASES["default"].get("OPTIONS", {}),
    "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "eager": settings.CELERY_TASK_ALWAYS_EAGER,
    "broker": settings.CELERY_BROKER_URL,
    "mailer": settings.MAILERS["default"],
    "hosts": settings.ALLOWED_HOSTS,
    "ssl_redirect": getattr(settings, "SECURE_SSL_REDIRECT", False),
    "hsts": getattr(settings, "SECURE_HSTS_SECONDS", 0),
    "session_secure": settings.SESSION_COOKIE_SECURE,
    "csp": {k: list(v) for k, v in settings.SECURE_CSP.items()},
    "secret_len": len(settings.SECRET_KEY),
}, default=str))
"""


def run_settings(env: dict[str, str], code: str = PROBE) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "DATABASE_URL",
            "REDIS_URL",
            "EMAIL_URL",
            "HTTPS",
            "MINGA_TESTING",
            "DATABASE_PREPARED_STATEMENTS",
        }
    }
    clean.update(
        {"PYTHONPATH": str(ROOT / "platform"), "DJANGO_SETTINGS_MODULE": "minga.settings"}, **env
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def probe(env: dict[str, str]) -> dict[str, object]:
    result = run_settings(env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_default_needs_no_server() -> None:
    found = probe({})

    assert found["debug"] is True
    assert found["db"] == "django.db.backends.sqlite3"
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert found["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert found["eager"] is True
    assert found["mailer"] == {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    assert found["secret_len"] >= 50


def test_database_url_selects_postgresql_with_the_pool() -> None:
    found = probe({"DATABASE_URL": "postgres://minga:pw@db.internal:5433/minga"})

    assert found["db"] == "django.db.backends.postgresql"
    assert "pool" in found["db_options"]
    assert (
        found["conn_max_age"] == 0
    )  # persistent connections leak under ASGI; the pool replaces them


def test_postgresql_prepares_statements_unless_turned_off() -> None:
    url = {"DATABASE_URL": "postgres://minga:pw@db.internal:5433/minga"}

    on = probe(url)["db_options"]
    off = probe({**url, "DATABASE_PREPARED_STATEMENTS": "0"})["db_options"]

    # Server-side binding, and a statement prepared once a connection has run it 5 times.
    assert isinstance(on, dict) and isinstance(off, dict)
    assert (on["server_side_binding"], on["prepare_threshold"]) == (True, 5)
    # Off (PgBouncer before 1.21): Django's defaults, client-side binding and no prepares.
    assert "server_side_binding" not in off and "prepare_threshold" not in off
    assert "pool" in off


@pytest.mark.postgres
@pytest.mark.django_db
def test_iterating_a_queryset_declares_no_server_side_cursor(plan: None) -> None:
    # A form's choices iterate their queryset (ModelChoiceIterator): on PostgreSQL with server
    # cursors on, a DECLARE ... WITH HOLD, which PgBouncer's transaction pooling breaks.
    from django import forms
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from community.models import WorkingGroup

    field = forms.ModelChoiceField(queryset=WorkingGroup.objects.all())
    with CaptureQueriesContext(connection) as queries:
        choices = list(field.choices)

    assert len(choices) == 1 + WorkingGroup.objects.count()  # the empty choice, then each group
    assert [q["sql"] for q in queries if "DECLARE" in q["sql"].upper()] == []
    assert len(queries) == 2  # list() asks the length (a COUNT), then the rows in one SELECT


SWITCH_PROBE = """
import sys
before = sys.getswitchinterval()
import minga.asgi
print(before, sys.getswitchinterval())
"""


@pytest.mark.parametrize(
    ("configured", "expected"), [({}, 0.0005), ({"GIL_SWITCH_INTERVAL_US": "2000"}, 0.002)]
)
def test_the_web_process_takes_the_configured_gil_switch_interval(
    configured: dict[str, str], expected: float
) -> None:
    result = run_settings(configured, SWITCH_PROBE)

    assert result.returncode == 0, result.stderr
    before, after = (float(x) for x in result.stdout.strip().splitlines()[-1].split())
    assert (before, after) == (0.005, pytest.approx(expected))  # Python's default, then ours


@pytest.mark.parametrize("bad", ["0", "-5", "100001", "half"])
def test_a_bad_gil_switch_interval_is_refused_with_its_name(bad: str) -> None:
    result = run_settings({"GIL_SWITCH_INTERVAL_US": bad})

    assert result.returncode != 0
    assert "GIL_SWITCH_INTERVAL_US must be" in result.stderr


def test_redis_url_selects_channels_redis_celery_and_the_cache() -> None:
    found = probe({"REDIS_URL": "redis://cache.internal:6379/2"})

    assert found["layer"] == "minga.channels_redis_bounded.BoundedPubSubChannelLayer"
    assert found["cache"] == "minga.cache.ResilientRedisCache"
    assert found["broker"] == "redis://cache.internal:6379/2"
    assert found["eager"] is False


@pytest.mark.parametrize(
    ("redis_url", "broker"),
    [
        ("unix:///run/redis/redis.sock", "redis+socket:///run/redis/redis.sock?virtual_host=0"),
        ("unix:///run/redis.sock?db=2", "redis+socket:///run/redis.sock?virtual_host=2"),
        (
            "unix://:s%40cret@/run/redis.sock?db=1",
            "redis+socket://:s%40cret@/run/redis.sock?virtual_host=1",
        ),
        (
            "unix:///run/redis.sock?password=pw&health_check_interval=5",
            "redis+socket://:pw@/run/redis.sock?health_check_interval=5&virtual_host=0",
        ),
        ("redis://cache.internal:6379/2", "redis://cache.internal:6379/2"),
        ("rediss://cache.internal:6380/0", "rediss://cache.internal:6380/0"),
    ],
)
def test_celery_gets_the_redis_url_in_kombus_words(redis_url: str, broker: str) -> None:
    from minga.settings import celery_broker_url

    assert celery_broker_url(redis_url) == broker


@pytest.mark.parametrize(
    ("redis_url", "message"),
    [("unix://", "names no socket"), ("unix:///run/redis.sock?db=two", "db must be a number")],
)
def test_a_bad_unix_redis_url_is_refused_with_a_reason(redis_url: str, message: str) -> None:
    result = run_settings({"REDIS_URL": redis_url})

    assert result.returncode != 0
    assert message in result.stderr


BROKER_ROUND_TRIP = """
import django
django.setup()
from minga.celery import app
with app.connection_for_write() as conn:
    queue = conn.SimpleQueue("minga-settings-test")
    queue.put({"over": "the socket"})
    message = queue.get(timeout=5)
    message.ack()
    queue.close()
    print(conn.as_uri(), message.payload["over"])
"""


@pytest.mark.redis
def test_a_unix_socket_redis_url_carries_the_brokers_messages(tmp_path: Path) -> None:
    from tests.reliability.faults import PrivateRedis

    redis = PrivateRedis(tmp_path, unix_socket=True)
    redis.start()
    try:
        result = run_settings({"REDIS_URL": redis.url}, code=BROKER_ROUND_TRIP)
    finally:
        redis.stop()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"redis+socket://{redis.socket}", "the", "socket"]


def test_email_url_selects_smtp_with_starttls() -> None:
    found = probe({"EMAIL_URL": "smtp+tls://mailer:s%40cret@smtp.example.org:2525"})

    assert found["mailer"] == {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": "smtp.example.org",
            "port": 2525,
            "username": "mailer",
            "password": "s@cret",
            "use_tls": True,
            "use_ssl": False,
            "timeout": 20,
        },
    }


def test_email_url_with_unknown_scheme_is_refused() -> None:
    result = run_settings({"EMAIL_URL": "imap://x@y"})

    assert result.returncode != 0
    assert "EMAIL_URL must start with smtp://" in result.stderr


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ({"SECRET_KEY"}, "need SECRET_KEY in the environment"),
        ({"ALLOWED_HOSTS"}, "need ALLOWED_HOSTS in the environment"),
        ({"SECRET_KEY", "ALLOWED_HOSTS"}, "need SECRET_KEY and ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_to_start_without_secrets(missing: set[str], message: str) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k not in missing}

    result = run_settings(env)

    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("hosts", ["*", "minga.example.org,*"])
def test_wildcard_host_is_refused_in_every_mode(hosts: str) -> None:
    for env in ({"ALLOWED_HOSTS": hosts}, {**PRODUCTION, "ALLOWED_HOSTS": hosts}):
        result = run_settings(env)
        assert result.returncode != 0
        assert "ALLOWED_HOSTS must not contain '*'" in result.stderr


def test_production_turns_on_https_protections() -> None:
    found = probe(PRODUCTION)

    assert found["debug"] is False
    assert found["ssl_redirect"] is True
    assert found["hsts"] == 31536000
    assert found["session_secure"] is True
    assert found["csp"]["script-src"] == ["'self'"]
    assert found["csp"]["frame-ancestors"] == ["'none'"]


def test_https_off_runs_plain_http_for_loopback_tests() -> None:
    found = probe({**PRODUCTION, "HTTPS": "0"})

    assert found["ssl_redirect"] is False
    assert found["session_secure"] is False


def test_bad_boolean_is_named() -> None:
    result = run_settings({"DEBUG": "maybe"})

    assert result.returncode != 0
    assert "DEBUG must be 1 or 0, not 'maybe'" in result.stderr


def test_check_deploy_passes_under_production_settings() -> None:
    code = (
        "import django, sys; django.setup(); from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING')"
    )

    result = run_settings(PRODUCTION, code)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout + result.stderr
