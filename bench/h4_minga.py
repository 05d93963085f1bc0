"""H4 on Minga's side, under bench.minga_settings: `python -m bench.h4_minga seed|announce ...`.

- `seed MEMBERS ONLINE SALT`: MEMBERS + 1 members of one working group that has nobody yet (the
  first after wg1), in bulk SQL: each table's row of the seeded member bench0 is copied with
  `INSERT ... SELECT ... FROM generate_series` (users, verified primary EmailAddress, the
  membership, an ApiToken whose key_hash is the SHA-256 of `mga_h4<SALT>x<n>` computed by
  PostgreSQL). Member 0 is the group's chair (the announcer); members 1..ONLINE get tokens.
  Then ANALYZE of those four tables (autovacuum is off on the bench's PostgreSQL).
  Prints JSON {"working_group", "chair", "recipients", "tokens"}.
- `announce`: `notifications.services.announce` by the chair, as the announcements page does.
  A group this big goes to `notify_task`; this process runs Celery eagerly, so the task runs
  here right after the commit, as a worker would (the fan-out's code, batches, pushes and email
  enqueueing unchanged), with the task modules loaded, Celery's registry finalized, its
  producer pool made and the start-up garbage collected before the clock starts, as in a
  running worker. Prints JSON with monotonic start/end and what was written, the trace of its
  statements and commits (`statements`), and `raw_real_insert_s`: one `INSERT ... SELECT` of
  the same rows (the announcement's own values, actor included) into the inbox table itself,
  committed (then deleted), the floor for Minga's rows; then
  `raw_real_insert_null_actor_s` (the first harness's rows, without an actor) and
  `raw_real_insert_again_s` (the same rows again).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any


def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.minga_settings")
    django.setup()


def _copy_sql(table: str, columns: list[str], subs: dict[str, str], where: str) -> str:
    """INSERT INTO table (every column but id) SELECT the template's values or a substitute."""
    cols = [c for c in columns if c != "id"]
    values = [subs.get(c, f't."{c}"') for c in cols]
    names = ", ".join(f'"{c}"' for c in cols)
    # Names come from Django's _meta and this module, values are parameters: no user input.
    return (
        f'INSERT INTO "{table}" ({names}) SELECT {", ".join(values)} '  # noqa: S608
        f'FROM "{table}" t, generate_series(%(first)s::bigint, %(last)s::bigint) AS g WHERE {where}'
    )


def seed(members: int, online: int, salt: str) -> dict[str, Any]:
    from allauth.account.models import EmailAddress
    from django.db import connection, transaction

    from community.models import ApiToken, Membership, Role, User, WorkingGroup

    template = User.objects.get(email="bench0@example.org")
    group = (
        WorkingGroup.objects.exclude(slug="wg1")
        .exclude(memberships__isnull=False)
        .order_by("number")
        .first()
    )
    if group is None:
        raise SystemExit("no working group without members to announce to")
    prefix = f"h4{salt}x"

    def columns(model: Any) -> list[str]:
        return [f.column for f in model._meta.concrete_fields]

    user_t, email_t = User._meta.db_table, EmailAddress._meta.db_table
    member_t, token_t = Membership._meta.db_table, ApiToken._meta.db_table
    email_expr = f"'h4-{salt}-' || g || '@h4.example.org'"
    new_user = f'(SELECT id FROM "{user_t}" WHERE email = {email_expr})'  # noqa: S608
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        params = {"first": 0, "last": members, "tid": template.pk}
        cur.execute(
            _copy_sql(
                user_t,
                columns(User),
                {
                    "email": email_expr,
                    "handle": f"'h4{salt}' || g",
                    "name": "'H4 Member ' || g",
                    "last_login": "NULL",
                },
                "t.id = %(tid)s",
            ),
            params,
        )
        cur.execute(
            _copy_sql(
                email_t,
                columns(EmailAddress),
                {
                    "user_id": new_user,
                    "email": email_expr,
                    "verified": "TRUE",
                    "primary": "TRUE",
                },
                "t.user_id = %(tid)s AND t.verified",
            ),
            params,
        )
        member_cols = ", ".join(f'"{c}"' for c in _member_cols(Membership))
        cur.execute(
            f'INSERT INTO "{member_t}" ({member_cols}) '  # noqa: S608
            f"SELECT {_member_values(Membership, new_user)} "
            "FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g",
            {**params, "wg": group.pk, "chair": Role.CHAIR, "member": Role.MEMBER},
        )
        cur.execute(
            _copy_sql(
                token_t,
                columns(ApiToken),
                {
                    "member_id": new_user,
                    "key_hash": "encode(sha256(convert_to(%(prefix)s || g, 'UTF8')), 'hex')",
                    "hint": "right(%(prefix)s || g, 4)",
                    "last_used_at": "NULL",
                },
                "t.member_id = %(tid)s AND t.revoked_at IS NULL",
            ),
            {**params, "first": 1, "last": online, "prefix": ApiToken.PREFIX + prefix},
        )
    seconds = time.perf_counter() - started
    # The PostgreSQL the bench runs on has autovacuum off: without this the planner would see
    # these tables as they were before 10,000 rows each were loaded (estimates of 7-30 rows,
    # sorts of all 10,000 for a LIMIT 201; EXPLAIN, 2026-11-25), which no production database
    # sees for long. As an operator does after a bulk load; not timed.
    with connection.cursor() as cur:
        for table in (user_t, email_t, member_t, token_t):
            cur.execute(f'ANALYZE "{table}"')
    chair = User.objects.get(email=f"h4-{salt}-0@h4.example.org")
    return {
        "working_group": group.pk,
        "working_group_slug": group.slug,
        "chair": chair.pk,
        "recipients": Membership.objects.filter(working_group=group).count() - 1,
        "tokens": [f"{ApiToken.PREFIX}{prefix}{n}" for n in range(1, online + 1)],
        "seed_seconds": round(seconds, 2),
    }


def _member_cols(model: Any) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if f.column != "id"]


def _member_values(model: Any, new_user: str) -> str:
    """Membership values: the new member, the group, chair for member 0 and member otherwise;
    every other column its field's default."""
    from django.db import connection

    out = []
    for f in model._meta.concrete_fields:
        if f.column == "id":
            continue
        if f.column == "member_id":
            out.append(new_user)
        elif f.column == "working_group_id":
            out.append("%(wg)s")
        elif f.name == "role":
            out.append("CASE WHEN g = 0 THEN %(chair)s ELSE %(member)s END")
        elif getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
            out.append("now()")
        elif f.has_default():
            value = f.get_db_prep_save(f.get_default(), connection)
            out.append(_literal(value))
        elif f.null:
            out.append("NULL")
        else:
            raise SystemExit(f"Membership.{f.name} has no default: the H4 seed needs one")
    return ", ".join(out)


def _literal(value: Any) -> str:
    import datetime as dt

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _timed(into: list[tuple[float, float, str]], origin: float) -> Any:
    """A Django execute wrapper noting each statement's start and duration (ms from `origin`)
    and its first words: where an announcement's time goes, in the run's JSON."""

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        begun = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            done = time.monotonic()
            into.append(
                (
                    round((begun - origin) * 1000, 1),
                    round((done - begun) * 1000, 1),
                    " ".join(sql.split())[:48],
                )
            )

    return wrapper


def announce(chair_id: int, group_id: int) -> dict[str, Any]:
    from django.db import connection, transaction
    from minga.celery import app

    from community.models import User, WorkingGroup
    from notifications.models import Notification
    from notifications.services import announce as minga_announce

    app.conf.task_always_eager = True  # the worker's part runs here, right after the commit
    # Loaded before the clock starts, as in a running worker: the task modules (imported lazily
    # by the services) and Celery's task registry (finalized on first use). A cold process
    # spent about 0.5 s on these inside the timing (cProfile, 2026-11-25).
    from notifications import fanout, tasks

    app.finalize(auto=True)
    assert tasks.notify_task.name and fanout.Sender  # evaluated, not just imported
    # Celery takes a producer from its pool even to run a task eagerly: the first one imports
    # kombu's transport and builds the pool (cProfile, 2026-11-25: 0.1-0.3 s inside the timing
    # in a cold process), which a running worker, or a web process that queued before, has.
    with app.producer_or_acquire():
        pass
    chair = User.objects.get(pk=chair_id)
    group = WorkingGroup.objects.get(pk=group_id)
    statements: list[tuple[float, float, str]] = []
    # Commits are not statements: the connection's own commit is timed for the trace.
    connection.ensure_connection()
    real_commit = connection._commit

    def commit() -> None:
        begun = time.monotonic()
        real_commit()
        statements.append(
            (
                round((begun - started) * 1000, 1),
                round((time.monotonic() - begun) * 1000, 1),
                "COMMIT",
            )
        )

    connection._commit = commit  # type: ignore[method-assign]
    # A process that has just imported Django, Celery and kombu has its first full garbage
    # collection ahead: measured at 130-180 ms, inside the announce, in every cold run
    # (gc.callbacks, 2026-11-25). A running worker has had it; so has this one, now.
    gc.collect()
    started = time.monotonic()
    # The wrapper outlives the transaction: the task runs on its commit, and is traced too.
    with connection.execute_wrapper(_timed(statements, started)), transaction.atomic():
        minga_announce(
            actor=chair,
            working_group=group,
            title="Plenary moved to Thursday",
            body="The plenary of the working group moves to Thursday, 10:00, room B. " * 2,
            url=f"/groups/{group.slug}/",
        )
    ended = time.monotonic()
    connection._commit = real_commit  # type: ignore[method-assign]
    rows = Notification.objects.filter(kind="announcement", target_id=group_id)
    modes: dict[str, int] = {}
    for mode in rows.values_list("email_mode", flat=True):
        modes[mode] = modes.get(mode, 0) + 1
    recipients = list(rows.order_by("recipient_id").values_list("recipient_id", flat=True))
    key = rows.values_list("occurrence_key", flat=True).first()
    return {
        "started": started,
        "ended": ended,
        "rows": rows.count(),
        "email_modes": modes,
        "email_pending": rows.filter(email_state="pending").count(),
        # The same rows (the announcement's own values) by one raw INSERT ... SELECT, and the
        # first harness's constant rows (no actor), then the same rows again: the machine is
        # shared, so the first and the last show how much it moved meanwhile.
        "raw_real_insert_s": _raw_real_insert(recipients, like=key),
        "raw_real_insert_null_actor_s": _raw_real_insert(recipients),
        "raw_real_insert_again_s": _raw_real_insert(recipients, like=key),
        # (ms from the start, ms, statement or COMMIT) of the announce and its task.
        "statements": statements,
    }


def _raw_real_insert(recipient_ids: list[int], *, like: str | None = None) -> float:
    """Seconds for one `INSERT ... SELECT` of the same recipients' rows into the inbox table
    itself (every column, its indexes, its foreign keys, logged), committed, then deleted.

    With `like` (an occurrence_key Minga wrote), every row carries that row's values (actor,
    title, snippet, note, email columns...): the same rows, by one plain statement. Without,
    the constants this harness used first (no actor: one foreign-key check fewer per row).
    The ceiling in the JSON (`ceilings.pg_insert_10k`) is a TEMP table with 8 columns and 2
    indexes, which PostgreSQL does not write to its WAL; this is the floor for Minga's rows.
    """
    import uuid

    from django.db import connection, transaction

    from notifications.models import Notification

    table = connection.ops.quote_name(Notification._meta.db_table)
    cols = [f.column for f in Notification._meta.concrete_fields if f.column != "id"]
    values = {
        "recipient_id": "r",
        "kind": "'announcement'",
        "actor_id": "NULL",
        "target_type": "'bench.raw'",
        "target_id": "-1",
        "url": "'/'",
        "group_label": "'WG2'",
        "title": "'Announcement: Plenary moved to Thursday'",
        "snippet": "'The plenary of the working group moves to Thursday, 10:00, room B.'",
        "note": "''",
        "created": "now()",
        "read_at": "NULL",
        "in_app": "TRUE",
        "email_mode": "'daily'",
        "email_state": "'pending'",
        "email_due_at": "NULL",
        "email_attempts": "0",
        "emailed_at": "NULL",
        "email_error": "''",
        "occurrence_key": "%(key)s",
    }
    params: dict[str, Any] = {}
    if like is not None:
        row = (
            Notification.objects.filter(occurrence_key=like, recipient_id=recipient_ids[0])
            .values(*[f.attname for f in Notification._meta.concrete_fields])
            .get()
        )
        for field in Notification._meta.concrete_fields:
            if field.column not in {"id", "recipient_id", "occurrence_key"}:
                values[field.column] = f"%(v_{field.column})s"
                params[f"v_{field.column}"] = row[field.attname]
    names = ", ".join(connection.ops.quote_name(c) for c in cols)
    sql = (
        f"INSERT INTO {table} ({names}) "  # noqa: S608 - names from _meta, values parameters
        f"SELECT {', '.join(values[c] for c in cols)} FROM unnest(%(ids)s::bigint[]) AS r"
    )
    key = f"bench-raw-{uuid.uuid4().hex}"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, {**params, "key": key, "ids": recipient_ids})
    seconds = time.perf_counter() - started
    Notification.objects.filter(occurrence_key=key).delete()
    return round(seconds, 4)


if __name__ == "__main__":
    _setup()
    command = sys.argv[1]
    if command == "seed":
        out = seed(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif command == "announce":
        out = announce(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {command!r}: seed or announce")
    print(json.dumps(out))
