"""Pytest plugin (loaded with `-p minga.pytest_plugin`, before pytest-django reads settings).

It decides which real servers the suite uses: PostgreSQL through DATABASE_URL, else
127.0.0.1:5432 (database `test`) when it answers, else SQLite with the `postgres` tests skipped;
Redis through REDIS_URL, else 127.0.0.1:6379, else the `redis` tests skipped. Under CI=true a
missing service fails the run instead. It must run before Django's settings are imported, which
is why it is a plugin and not tests/conftest.py.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minga.settings")
os.environ["MINGA_TESTING"] = "1"
# Tests start from the embedded default, whatever the developer's shell exports.
for _name in (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "EMAIL_URL",
    "HTTPS",
    "TRUSTED_PROXY_COUNT",
    "MINGA_SIGNUP_DOMAINS",
):
    os.environ.pop(_name, None)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _address(url: str, default_port: int) -> tuple[str, int] | str:
    """Where `url`'s server listens: (host, port), or the path of its unix socket (a Redis
    `unix:///path` URL; a PostgreSQL URL whose host is the socket's directory, percent-encoded)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host, _, port = parts.netloc.rpartition("@")[2].partition(":")
    host = unquote(host)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port or default_port}"
    return (parts.hostname or "127.0.0.1", parts.port or default_port)


def _answers(url: str, default_port: int) -> bool:
    address = _address(url, default_port)
    try:
        if isinstance(address, str):
            with socket.socket(socket.AF_UNIX) as unix:
                unix.settimeout(1)
                unix.connect(address)
        else:
            socket.create_connection(address, 1).close()
    except OSError:
        return False
    return True


POSTGRES_URL = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/test"
POSTGRES_UP = _answers(POSTGRES_URL, 5432)
REDIS_URL = os.environ.pop("REDIS_URL", None) or "redis://127.0.0.1:6379/0"
REDIS_UP = _answers(REDIS_URL, 6379)

if POSTGRES_UP:
    os.environ["DATABASE_URL"] = POSTGRES_URL
else:
    os.environ.pop("DATABASE_URL", None)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    lines.append(
        f"PostgreSQL: {'using ' + POSTGRES_URL if POSTGRES_UP else 'not reachable: suite on SQLite, postgres tests skipped'}"
    )
    lines.append(
        f"Redis: {'using ' + REDIS_URL if REDIS_UP else 'not reachable: redis tests skipped'}"
    )
    return lines


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name, up in (("PostgreSQL", POSTGRES_UP), ("Redis", REDIS_UP)) if not up]
    if IN_CI and missing:
        pytest.exit(
            f"CI=true and {' and '.join(missing)} did not answer: CI must run against the real "
            "servers (set DATABASE_URL / REDIS_URL or start them on the standard ports).",
            returncode=3,
        )


# Written by post_migrate from the models alone: the same rows before and after any test.
KEPT_BY_FLUSH = frozenset({"django_content_type", "auth_permission"})


@pytest.fixture(scope="session", autouse=True)
def _flush_with_delete() -> Iterator[None]:
    """A transactional test's flush DELETEs rows instead of Django's TRUNCATE on PostgreSQL.

    pytest-django empties the database after every `django_db(transaction=True)` test with
    `flush`, which PostgreSQL answers with one TRUNCATE of all 46 tables: new files for every
    table and index, 1.2-1.6 s per test on the shared machine against 0.03-0.05 s for DELETEs
    of the few rows a test leaves. The result is the same empty tables: Django's foreign keys
    are DEFERRABLE INITIALLY DEFERRED and `execute_sql_flush` runs in one transaction, so the
    order does not matter; sequences are not reset by either (`reset_sequences=False`). A
    flush that resets sequences or cascades keeps Django's TRUNCATE.

    Content types and permissions stay: flush's post_migrate signal would only write the same
    rows again (0.1-0.25 s a test), and they are what `migrate` left, as every other test sees.
    """
    try:
        from django.db.backends.postgresql.operations import DatabaseOperations
    except ImportError:  # no psycopg: the suite runs on SQLite, which DELETEs already
        yield
        return
    truncate = DatabaseOperations.sql_flush

    def sql_flush(
        self: DatabaseOperations,
        style: Any,
        tables: list[str],
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if reset_sequences or allow_cascade or not tables:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [
            "SET CONSTRAINTS ALL DEFERRED;",
            *(
                f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(t))};"
                for t in tables
                if t not in KEPT_BY_FLUSH
            ),
        ]

    DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        DatabaseOperations.sql_flush = truncate  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="PostgreSQL not reachable (DATABASE_URL or 127.0.0.1:5432)")
    skip_redis = pytest.mark.skip(reason="Redis not reachable (REDIS_URL or 127.0.0.1:6379)")
    for item in items:
        if "postgres" in item.keywords and not POSTGRES_UP:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not REDIS_UP:
            item.add_marker(skip_redis)

    # Browser tests last: Playwright's sync API keeps an event loop on the main thread while its
    # session-scoped browser lives, and async tests collected after it would fail to start theirs.
    items.sort(key=lambda item: "browser" in item.keywords)


# --- The reliability families' figure lines ---------------------------------------------------

# tests/reliability/support.report appends each family's `FAMILY: figure` line here; the line
# travels with its test's report (as a user property), so the run's end lists every figure
# line in one `figures` section, also from xdist's workers, whose own output is not shown.
FIGURES: list[str] = []
_REPORTED: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    while FIGURES:
        report.user_properties.append(("figure", FIGURES.pop(0)))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _REPORTED.extend(value for name, value in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORTED:
        terminalreporter.section("figures")
        for line in _REPORTED:
            terminalreporter.write_line(line)
