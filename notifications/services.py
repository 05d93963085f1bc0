"""Writes for notifications: fan-out, marking read, preferences.

The fan-out is `notify(...)`: receivers (notifications/receivers.py) and announcements call it
with the recipients already resolved (notifications/recipients.py). It writes inbox rows in
batches under a unique (recipient, occurrence_key), on PostgreSQL with one `INSERT ... SELECT
... ON CONFLICT DO NOTHING RETURNING` per batch (elsewhere `bulk_create(ignore_conflicts=True)`),
so running it twice for the same happening writes nothing new and pushes nothing new.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from community.models import User, WorkingGroup

from . import bus, fanout, recipients, selectors
from .models import (
    EmailMode,
    EmailState,
    Kind,
    Notification,
    NotificationPreference,
    NotificationSettings,
)

# Above this many recipients the fan-out leaves the request for a Celery worker.
INLINE_FANOUT_MAX = 200
# Rows per INSERT and per batch of live frames, recipients given by id.
BATCH_SIZE = 1000
# The same for a fan-out by rule (recipients.Rule, resolved inside the INSERT): larger, as each
# commit costs a WAL flush and the deferred foreign-key checks; docs/performance.md, H4.
RULE_BATCH_SIZE = 10_000
# Immediate emails per `send_emails_task` (one task per recipient made 1,000 publishes for 1,000).
EMAIL_TASK_SIZE = 100
SNIPPET_CHARS = 200
# An organizer's message kept in full on the row (Notification.note) for the email.
NOTE_CHARS = 5000


# --- Rendering ----------------------------------------------------------------------------------


def _local(iso: str | None, tz_name: str) -> str:
    if not iso:
        return ""
    try:
        when = dt.datetime.fromisoformat(iso)
        zone = zoneinfo.ZoneInfo(tz_name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return iso
    local = when.astimezone(zone)
    return f"{date_format(local, 'DATETIME_FORMAT')} ({tz_name})"


def render(kind: str, context: Mapping[str, Any], *, tz_name: str) -> tuple[str, str]:
    """(title, snippet) of a notification in the active language, times in `tz_name`.

    `context` holds JSON-safe names captured when the happening was announced: actor, thread,
    room, event, starts_at (ISO), location, status, position, body, title, outcome (a report's:
    "hidden" or "dismissed"), note (the organizer's message; not part of the snippet,
    see `Notification.note`).
    """
    c = {k: ("" if v is None else v) for k, v in context.items()}
    actor = c.get("actor", "") or _("Someone")
    event = c.get("event", "")
    when = _local(c.get("starts_at"), tz_name)
    event_snippet = " · ".join(p for p in (when, str(c.get("location", ""))) if p)
    titles: dict[str, str] = {
        Kind.MENTION: _("%(actor)s mentioned you in “%(thread)s”"),
        Kind.REPLY: _("%(actor)s replied to you in “%(thread)s”"),
        Kind.NEW_THREAD: _("New thread in %(room)s: “%(thread)s”"),
        Kind.THREAD_MESSAGE: _("%(actor)s wrote in “%(thread)s”"),
        Kind.EVENT_SCHEDULED: _("New event: %(event)s"),
        Kind.EVENT_CHANGED: _("Changed: %(event)s"),
        Kind.EVENT_CANCELLED: _("Cancelled: %(event)s"),
        Kind.EVENT_REMINDER: _("Reminder: %(event)s"),
        Kind.MODERATION: _("A moderator reviewed your report: %(outcome)s"),
        Kind.ANNOUNCEMENT: _("Announcement: %(title)s"),
    }
    if kind == Kind.REGISTRATION:
        status = c.get("status")
        if status == "waitlisted":
            title = _("You are on the waitlist for %(event)s (position %(position)s)")
        elif status == "promoted":
            title = _("A place opened: you are now registered for %(event)s")
        else:
            title = _("You are registered for %(event)s")
    else:
        title = titles.get(kind, "%(title)s")
    params = {
        "actor": actor,
        "thread": c.get("thread", ""),
        "room": c.get("room", ""),
        "event": event,
        "position": c.get("position", ""),
        "outcome": _outcome_label(str(c.get("outcome", ""))),
        "title": c.get("title", ""),
    }
    rendered_title = Truncator(title % params).chars(300)
    if kind in {
        Kind.EVENT_SCHEDULED,
        Kind.EVENT_CHANGED,
        Kind.EVENT_CANCELLED,
        Kind.EVENT_REMINDER,
        Kind.REGISTRATION,
    }:
        snippet = event_snippet
    elif kind == Kind.MODERATION:
        snippet = _moderation_snippet(c)
    else:
        snippet = str(c.get("body", ""))
    return rendered_title, Truncator(" ".join(snippet.split())).chars(SNIPPET_CHARS)


def _outcome_label(outcome: str) -> str:
    labels = {
        "hidden": _("the message is now hidden"),
        "dismissed": _("the message stays as it is"),
    }
    return labels.get(outcome, outcome)


def _moderation_snippet(c: Mapping[str, Any]) -> str:
    return _("“%(thread)s” in %(room)s") % {
        "thread": c.get("thread", ""),
        "room": c.get("room", ""),
    }


# --- Quiet hours --------------------------------------------------------------------------------


def quiet_until(
    *, now: dt.datetime, tz_name: str, start: dt.time | None, end: dt.time | None
) -> dt.datetime | None:
    """The end of the member's quiet hours when `now` falls inside them, else None."""
    if start is None or end is None or start == end:
        return None
    try:
        zone = zoneinfo.ZoneInfo(tz_name)
    except zoneinfo.ZoneInfoNotFoundError:
        zone = zoneinfo.ZoneInfo("UTC")
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date()
    if t >= end:  # the quiet span crosses midnight and ends tomorrow
        end_day += dt.timedelta(days=1)
    return dt.datetime.combine(end_day, end, tzinfo=zone).astimezone(dt.UTC)


# --- Fan-out ------------------------------------------------------------------------------------


def notify(
    *,
    kind: str,
    actor: User | None,
    target_type: str,
    target_id: int,
    url: str,
    occurrence_key: str,
    recipient_ids: Iterable[int] | None = None,
    rule: recipients.Rule | None = None,
    context: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> int:
    """Tell each recipient once about one happening; returns how many rows were written now.

    The recipients are `recipient_ids`, or the members of `rule` (recipients.Rule), one of the
    two. More than INLINE_FANOUT_MAX recipients: the work goes to `notify_task` after commit and
    0 is returned; a rule then travels as the rule, resolved when the task writes the rows (so
    who is told is decided then, as for any fan-out a worker runs later). Side effects: inbox
    rows (one per recipient and occurrence_key, never two); after commit, a `notification` frame
    with the unread count to each new recipient's `user.<id>` group, and `send_emails_task` (one
    per EMAIL_TASK_SIZE rows) for rows to email now.
    """
    if kind not in Kind.values:
        raise ValidationError({"kind": f"Unknown notification kind {kind!r}."}, code="invalid")
    if (recipient_ids is None) == (rule is None):
        raise TypeError("notify() takes recipient_ids or rule, one of the two.")
    if rule is not None:
        # One bounded query: the whole list when it is small enough to write here.
        ids = rule.ids(limit=INLINE_FANOUT_MAX + 1)
    else:
        ids = sorted({int(i) for i in recipient_ids or ()})
    if not ids:
        return 0
    if len(ids) > INLINE_FANOUT_MAX:
        from .tasks import notify_task

        payload = {
            "kind": kind,
            "actor_id": actor.pk if actor else None,
            "target_type": target_type,
            "target_id": target_id,
            "url": url,
            "occurrence_key": occurrence_key,
            "context": dict(context),
        }
        if rule is not None:
            payload["rule"] = rule.payload()
        else:
            payload["recipient_ids"] = ids
        transaction.on_commit(lambda: notify_task.delay(**payload), robust=True)
        return 0
    return write_notifications(
        kind=kind,
        actor_id=actor.pk if actor else None,
        target_type=target_type,
        target_id=target_id,
        url=url,
        occurrence_key=occurrence_key,
        recipient_ids=ids,
        context=context,
        now=now,
    )


@dataclass(frozen=True)
class Occurrence:
    """What happened, once for all the recipients of a fan-out: the columns their rows share."""

    kind: str
    actor_id: int | None
    target_type: str
    target_id: int
    url: str
    occurrence_key: str
    context: Mapping[str, Any]
    now: dt.datetime


class _Written(NamedTuple):
    """One inbox row the batch wrote now: what its frame and its email need."""

    pk: int
    recipient_id: int
    in_app: bool
    email_mode: str
    email_due_at: dt.datetime | None
    title: str
    snippet: str
    unread: int  # the recipient's unread count with this row (0 when not in the app)


def write_notifications(
    *,
    kind: str,
    actor_id: int | None,
    target_type: str,
    target_id: int,
    url: str,
    occurrence_key: str,
    recipient_ids: list[int] | None = None,
    rule: recipients.Rule | None = None,
    context: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> int:
    """The fan-out itself, in batches, each in its own transaction, with the same number of
    queries per batch.

    The recipients are `recipient_ids` (batches of BATCH_SIZE) or the members of `rule`
    (batches of RULE_BATCH_SIZE, taken in id order inside the INSERT), one of the two.
    Side effects: as `notify`. Queries on PostgreSQL, by ids: per batch, the recipients'
    (language, zone, quiet hours) combinations (1), then one INSERT ... SELECT ... ON CONFLICT
    DO NOTHING RETURNING that joins the preferences and returns the new rows with their unread
    counts (1). By rule: the combinations once for the whole rule (1), then per batch the
    INSERT ... SELECT alone (1), whose recipients are the rule's next members (its query,
    keyset on the id). Elsewhere (SQLite, the embedded default) a rule is resolved to its ids
    first (1) and each batch takes the ORM path: recipients (1), preferences (1), rows already
    written (1), the INSERT (1), the new rows back (1), unread counts (1).

    Over INLINE_FANOUT_MAX recipients (or by rule) in its own transactions (`notify_task`), each
    batch hands its frames on commit to a background sender (notifications.fanout) and the next
    batch starts at once; the call returns when the last frames are handed to the channel layer.
    There the INSERT returns no unread counts: one grouped count per batch, after its commit,
    gives them to the frames (PostgreSQL: +1 query per batch, outside the batch's transaction).
    Otherwise each batch's frames go on its commit, or the caller's (`publish_many_on_commit`).
    """
    if (recipient_ids is None) == (rule is None):
        raise TypeError("write_notifications() takes recipient_ids or rule, one of the two.")
    what = Occurrence(
        kind=kind,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        url=url,
        occurrence_key=occurrence_key,
        context=context,
        now=now or timezone.now(),
    )
    if rule is not None and connection.vendor != "postgresql":
        recipient_ids, rule = rule.ids(), None
    # A large fan-out in its own transactions (notify_task) gets the background sender; a small
    # one (inline, after a request's commit) sends on each commit as before, with no thread.
    large = rule is not None or len(recipient_ids or ()) > INLINE_FANOUT_MAX
    background = large and not transaction.get_connection().in_atomic_block
    with fanout.Sender() if background else contextlib.nullcontext() as sender:
        if rule is not None:
            return _write_by_rule(what, rule, sender=sender)
        ids = recipient_ids or []
        written = 0
        for start in range(0, len(ids), BATCH_SIZE):
            # One transaction per batch: a large fan-out holds no lock for long, each batch's
            # frames go out as it commits, and a retry after a crash redoes only what is missing.
            with transaction.atomic():
                rows = _write_batch(what, ids[start : start + BATCH_SIZE], sender=sender)
                _announce_batch(rows, what, sender=sender)
            written += len(rows)
    return written


def _write_by_rule(what: Occurrence, rule: recipients.Rule, *, sender: fanout.Sender | None) -> int:
    """PostgreSQL: the rule's members in id order, RULE_BATCH_SIZE per INSERT and transaction."""
    members = rule.queryset()
    combos = list(
        members.order_by()
        .values_list(
            "language",
            "timezone",
            "notification_settings__quiet_start",
            "notification_settings__quiet_end",
        )
        .distinct()
    )
    rendering = _rendering(what, combos)
    if rendering is None:
        return 0  # the rule has no members
    written, after = 0, None
    while True:
        batch = members if after is None else members.filter(pk__gt=after)
        # (id, language, timezone): the columns, in this order, `_insert_sql` reads from it.
        batch = batch.order_by("pk").values("pk", "language", "timezone").distinct()
        with transaction.atomic():
            fetched, seen, last = _insert_rule_batch_sql(
                what, batch[:RULE_BATCH_SIZE], rendering, unread=sender is None
            )
            count = 0 if not fetched or fetched[0][0] is None else len(fetched)
            if count and sender is not None:
                # Nothing but the INSERT in the batch's transaction: even the rows' tuples are
                # made in the hook, after the commit.
                transaction.on_commit(
                    partial(_announce_committed, fetched, what, sender), robust=True
                )
            elif count:
                _announce_batch(_written(fetched), what, sender=None)
        written += count
        if seen < RULE_BATCH_SIZE or last is None:
            return written
        after = last


def _written(fetched: list[tuple[Any, ...]]) -> list[_Written]:
    """The rows a rule's batch wrote, from its result (each row ends with the batch's bounds;
    one row of NULLs when it wrote none)."""
    return [_Written(*row[:-2]) for row in fetched if row[0] is not None]


def _announce_committed(
    fetched: list[tuple[Any, ...]], what: Occurrence, sender: fanout.Sender
) -> None:
    # After the commit: the hooks `_announce_batch` registers run at once.
    _announce_batch(_written(fetched), what, sender=sender)


def _write_batch(
    what: Occurrence, recipient_ids: list[int], *, sender: fanout.Sender | None
) -> list[_Written]:
    if connection.vendor == "postgresql":
        return _insert_batch_sql(what, recipient_ids, unread=sender is None)
    return _insert_batch_orm(what, recipient_ids)


def _announce_batch(
    rows: list[_Written], what: Occurrence, *, sender: fanout.Sender | None
) -> None:
    """After the batch commits: its frames (to the sender, or on commit) and its emails."""
    if sender is not None:
        # Built in the hook, after the commit: a batch of 10,000 rows commits without waiting
        # for 10,000 frames to be made.
        if any(row.in_app for row in rows):
            transaction.on_commit(partial(_hand_over, rows, what, sender), robust=True)
    else:
        items = _frames(rows, what)
        if items:
            bus.publish_many_on_commit(items)
    immediate = [
        row.pk
        for row in rows
        if row.email_mode == EmailMode.IMMEDIATE
        and row.email_due_at
        and row.email_due_at <= what.now
    ]
    if immediate:
        from .tasks import send_emails_task

        def enqueue() -> None:
            for at in range(0, len(immediate), EMAIL_TASK_SIZE):
                send_emails_task.delay(immediate[at : at + EMAIL_TASK_SIZE])

        transaction.on_commit(enqueue, robust=True)


def _hand_over(rows: list[_Written], what: Occurrence, sender: fanout.Sender) -> None:
    """On the batch's commit: its frames to the background sender. On PostgreSQL the unread
    counts are read here, after the commit (one grouped count; the rows are in it), not per row
    inside the INSERT, which kept the batch's transaction open for them (docs/performance.md,
    H4)."""
    if connection.vendor == "postgresql":
        counts = selectors.unread_counts(
            member_ids=[row.recipient_id for row in rows if row.in_app]
        )
        rows = [row._replace(unread=counts.get(row.recipient_id, 1)) for row in rows]
    sender.submit(_frames(rows, what))


def _frames(rows: list[_Written], what: Occurrence) -> list[tuple[str, Mapping[str, Any]]]:
    """The `notification` frame of each in-app row, to its recipient's group."""
    note = _note(what.context)
    previews: dict[str, str] = {}
    created_at = what.now.astimezone(dt.UTC).isoformat()
    items: list[tuple[str, Mapping[str, Any]]] = []
    for row in rows:
        if not row.in_app:
            continue
        if row.snippet not in previews:
            previews[row.snippet] = Notification(snippet=row.snippet, note=note).preview
        # The contract's notification object, as selectors.notification_payload makes it.
        payload = {
            "id": row.pk,
            "kind": what.kind,
            "title": row.title,
            "snippet": previews[row.snippet],
            "url": what.url,
            "created_at": created_at,
            "read": False,
        }
        items.append(
            (
                bus.user_group(row.recipient_id),
                {"type": "notification", "notification": payload, "unread_count": row.unread},
            )
        )
    return items


def _note(context: Mapping[str, Any]) -> str:
    return str(context.get("note") or "").strip()[:NOTE_CHARS]


def _group_label(context: Mapping[str, Any]) -> str:
    return str(context.get("group_label", ""))[:200]


def _due(*, now: dt.datetime, tz_name: str, quiet_start: Any, quiet_end: Any) -> dt.datetime:
    """When an immediate email may go: now, or the end of the member's quiet hours."""
    return quiet_until(now=now, tz_name=tz_name, start=quiet_start, end=quiet_end) or now


# Columns the SQL path writes, in Notification's field order; a field added to the model and
# not named here fails `_insert_sql` (and every fan-out test) until it is given a value.
_SQL_COLUMNS: dict[str, str] = {
    "recipient_id": "r.member_id",
    "kind": "%(kind)s",
    "actor_id": "%(actor_id)s",
    "target_type": "%(target_type)s",
    "target_id": "%(target_id)s",
    "url": "%(url)s",
    "group_label": "%(group_label)s",
    "title": "COALESCE(c.title, %(fallback_title)s)",
    "snippet": "COALESCE(c.snippet, %(fallback_snippet)s)",
    "note": "%(note)s",
    "created": "%(now)s",
    "read_at": "NULL",
    "in_app": "r.in_app",
    "email_mode": "r.email_mode",
    "email_state": f"CASE WHEN r.email_mode = '{EmailMode.OFF}' THEN '{EmailState.SKIPPED}' "
    f"ELSE '{EmailState.PENDING}' END",
    "email_due_at": f"CASE WHEN r.email_mode = '{EmailMode.IMMEDIATE}' "
    "THEN COALESCE(c.due, %(now)s) END",
    "email_attempts": "0",
    "emailed_at": "NULL",
    "email_error": "''",
    "occurrence_key": "%(occurrence_key)s",
}


# Where a batch's recipients come from: an id array, or a rule's query (its SQL, with the
# keyset and limit, as Django compiles it); either gives (id, language, timezone) per member.
_FROM_IDS = (
    "SELECT u.id, u.language, u.timezone FROM unnest(%(ids)s::bigint[]) AS wanted(id) "
    "JOIN {users} u ON u.id = wanted.id"
)


@cache
def _insert_sql(source: str = _FROM_IDS, *, bounds: bool = False, unread: bool = True) -> str:
    """One batch's INSERT ... SELECT: recipients from `source`, preferences joined (a missing
    row is the kind's default), title and snippet from the rendered combinations, ON CONFLICT
    DO NOTHING on (recipient, occurrence_key), and the new rows back with each recipient's
    unread count (the count the statement's snapshot sees, plus this row; 0 without `unread`,
    when the caller counts after the commit). With `bounds`, each row also carries how many
    recipients the batch had and the last one's id (one row with no inbox row when it wrote
    none), for the next batch's keyset."""
    fields = [f.column for f in Notification._meta.concrete_fields if f.column != "id"]
    missing = set(fields) ^ set(_SQL_COLUMNS)
    if missing:
        raise RuntimeError(f"notifications fan-out SQL does not match the model: {missing}")
    table = connection.ops.quote_name(Notification._meta.db_table)
    users = connection.ops.quote_name(User._meta.db_table)
    prefs = connection.ops.quote_name(NotificationPreference._meta.db_table)
    quiet = connection.ops.quote_name(NotificationSettings._meta.db_table)
    names = ", ".join(connection.ops.quote_name(f) for f in fields)
    values = ", ".join(_SQL_COLUMNS[f] for f in fields)
    columns = "w.id, w.recipient_id, w.in_app, w.email_mode, w.email_due_at, w.title, w.snippet"
    count = f"""CASE WHEN w.in_app THEN 1 + (
           SELECT count(*) FROM {table} n
           WHERE n.recipient_id = w.recipient_id AND n.read_at IS NULL AND n.in_app
       ) ELSE 0 END"""  # noqa: S608
    count = count if unread else "0"
    if bounds:
        result = f"""SELECT {columns}, {count}, b.seen, b.last
FROM (SELECT count(*) AS seen, max(member_id) AS last FROM recipient) b
LEFT JOIN written w ON TRUE
ORDER BY w.recipient_id"""  # noqa: S608
    else:
        result = f"""SELECT {columns}, {count}
FROM written w
ORDER BY w.recipient_id"""  # noqa: S608
    # Table and column names come from the models, values are parameters: no user input.
    return f"""
WITH combo AS (
    SELECT * FROM unnest(
        %(c_language)s::text[], %(c_timezone)s::text[], %(c_quiet_start)s::time[],
        %(c_quiet_end)s::time[], %(c_title)s::text[], %(c_snippet)s::text[],
        %(c_due)s::timestamptz[]
    ) AS c(language, timezone, quiet_start, quiet_end, title, snippet, due)
),
recipient AS (
    SELECT u.id AS member_id, u.language, u.timezone, s.quiet_start, s.quiet_end,
           COALESCE(p.in_app, %(default_in_app)s) AS in_app,
           COALESCE(p.email, %(default_email)s) AS email_mode
    FROM ({_FROM_IDS.format(users=users) if source == _FROM_IDS else source})
        AS u(id, language, timezone)
    LEFT JOIN {quiet} s ON s.member_id = u.id
    LEFT JOIN {prefs} p ON p.member_id = u.id AND p.kind = %(kind)s
),
written AS (
    INSERT INTO {table} ({names})
    SELECT {values}
    FROM recipient r
    LEFT JOIN combo c
        ON c.language = r.language AND c.timezone = r.timezone
        AND c.quiet_start IS NOT DISTINCT FROM r.quiet_start
        AND c.quiet_end IS NOT DISTINCT FROM r.quiet_end
    WHERE r.in_app OR r.email_mode <> '{EmailMode.OFF}'
    ORDER BY r.member_id
    ON CONFLICT DO NOTHING
    RETURNING id, recipient_id, in_app, email_mode, email_due_at, title, snippet
)
{result}
"""  # noqa: S608


class _Rendering(NamedTuple):
    """A fan-out's rendered (title, snippet, due) per (language, zone, quiet hours), as the
    INSERT's parameters, and the rendering for a member with no combination."""

    columns: dict[str, list[Any]]
    fallback_title: str
    fallback_snippet: str


def _rendering(what: Occurrence, combos: Iterable[tuple[Any, ...]]) -> _Rendering | None:
    """Render once per (language, zone) of `combos` ((language, zone, quiet start, quiet end)
    rows); None when there are none (nobody to tell)."""
    rendered: dict[tuple[str, str], tuple[str, str]] = {}
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "c_language",
            "c_timezone",
            "c_quiet_start",
            "c_quiet_end",
            "c_title",
            "c_snippet",
            "c_due",
        )
    }
    for language, tz_name, quiet_start, quiet_end in combos:
        if (language, tz_name) not in rendered:
            with translation.override(language):
                rendered[language, tz_name] = render(what.kind, what.context, tz_name=tz_name)
        title, snippet = rendered[language, tz_name]
        for name, value in zip(
            columns,
            (
                language,
                tz_name,
                quiet_start,
                quiet_end,
                title,
                snippet,
                _due(now=what.now, tz_name=tz_name, quiet_start=quiet_start, quiet_end=quiet_end),
            ),
            strict=True,
        ):
            columns[name].append(value)
    if not rendered:
        return None
    # A member whose language or zone changed between the two statements has no combination:
    # they get the site's rendering if the batch has it, else the first.
    fallback_title, fallback_snippet = rendered.get(
        (settings.LANGUAGE_CODE, "UTC"), next(iter(rendered.values()))
    )
    return _Rendering(columns, fallback_title, fallback_snippet)


def _insert_params(what: Occurrence, rendering: _Rendering) -> dict[str, Any]:
    default = selectors.default_preference(what.kind)
    return {
        **rendering.columns,
        "kind": what.kind,
        "actor_id": what.actor_id,
        "target_type": what.target_type,
        "target_id": what.target_id,
        "url": what.url,
        "group_label": _group_label(what.context),
        "note": _note(what.context),
        "now": what.now,
        "occurrence_key": what.occurrence_key,
        "default_in_app": default["in_app"],
        "default_email": default["email"],
        "fallback_title": rendering.fallback_title,
        "fallback_snippet": rendering.fallback_snippet,
    }


def _insert_batch_sql(
    what: Occurrence, recipient_ids: list[int], *, unread: bool = True
) -> list[_Written]:
    """PostgreSQL: the batch in one INSERT ... SELECT; no model instance is built.

    Rendering needs Python (gettext, the member's zone), so it is done once per (language,
    zone, quiet hours) combination of the batch's recipients, read first, and joined in.
    """
    users = connection.ops.quote_name(User._meta.db_table)
    quiet = connection.ops.quote_name(NotificationSettings._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT u.language, u.timezone, s.quiet_start, s.quiet_end "  # noqa: S608
            f"FROM {users} u LEFT JOIN {quiet} s ON s.member_id = u.id "
            "WHERE u.id = ANY(%s::bigint[])",
            [recipient_ids],
        )
        rendering = _rendering(what, cursor.fetchall())
        if rendering is None:
            return []  # none of the ids is a member (any more)
        cursor.execute(
            _insert_sql(unread=unread), {**_insert_params(what, rendering), "ids": recipient_ids}
        )
        return [_Written(*row) for row in cursor.fetchall()]


_PLACEHOLDER = re.compile(r"%%|%s")


def _insert_rule_batch_sql(
    what: Occurrence, batch: QuerySet[Any], rendering: _Rendering, *, unread: bool = True
) -> tuple[list[tuple[Any, ...]], int, int | None]:
    """PostgreSQL: one batch of a rule in one INSERT ... SELECT whose recipients are `batch`
    (the rule's query with its keyset and limit: id, language, timezone); returns the result
    rows (`_written` makes the rows written of them), how many members the batch had and the
    last one's id."""
    source, source_params = batch.query.sql_with_params()
    params = _insert_params(what, rendering)
    # Django compiles with positional %s; the statement's other parameters are named.
    at = iter(range(len(source_params)))

    def name(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%%"
        i = next(at)
        params[f"rule_{i}"] = source_params[i]
        return f"%(rule_{i})s"

    source = _PLACEHOLDER.sub(name, source)
    if len([k for k in params if k.startswith("rule_")]) != len(source_params):
        raise RuntimeError("the recipient rule's query has parameters the fan-out cannot name")
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(source, bounds=True, unread=unread), params)
        fetched = cursor.fetchall()
    seen, last = fetched[0][-2:] if fetched else (0, None)
    return fetched, seen, last


def _insert_batch_orm(what: Occurrence, recipient_ids: list[int]) -> list[_Written]:
    """Any other database (SQLite, the embedded default): model instances and bulk_create."""
    members = list(
        User.objects.filter(pk__in=recipient_ids)
        .select_related("notification_settings")
        .only(
            "pk",
            "language",
            "timezone",
            "notification_settings__quiet_start",
            "notification_settings__quiet_end",
        )
    )
    prefs = selectors.preferences_for(member_ids=[m.pk for m in members], kind=what.kind)
    done = set(
        Notification.objects.filter(
            occurrence_key=what.occurrence_key, recipient_id__in=recipient_ids
        ).values_list("recipient_id", flat=True)
    )
    rendered: dict[tuple[str, str], tuple[str, str]] = {}
    rows: list[Notification] = []
    note = _note(what.context)
    for member in members:
        if member.pk in done:
            continue
        in_app, email = prefs[member.pk]
        if not in_app and email == EmailMode.OFF:
            continue
        key = (member.language, member.timezone)
        if key not in rendered:
            with translation.override(member.language):
                rendered[key] = render(what.kind, what.context, tz_name=member.timezone)
        title, snippet = rendered[key]
        due = None
        if email == EmailMode.IMMEDIATE:
            quiet = getattr(member, "notification_settings", None)
            due = _due(
                now=what.now,
                tz_name=member.timezone,
                quiet_start=quiet.quiet_start if quiet is not None else None,
                quiet_end=quiet.quiet_end if quiet is not None else None,
            )
        rows.append(
            Notification(
                recipient_id=member.pk,
                kind=what.kind,
                actor_id=what.actor_id,
                target_type=what.target_type,
                target_id=what.target_id,
                url=what.url,
                group_label=_group_label(what.context),
                title=title,
                snippet=snippet,
                note=note,
                created=what.now,
                read_at=None,
                in_app=in_app,
                email_mode=email,
                email_state=EmailState.SKIPPED if email == EmailMode.OFF else EmailState.PENDING,
                email_due_at=due,
                occurrence_key=what.occurrence_key,
            )
        )
    if not rows:
        return []
    # ignore_conflicts: a concurrent run of the same fan-out may have written some rows since
    # the read above; the unique constraint keeps one, and the read below sees which are ours.
    Notification.objects.bulk_create(rows, batch_size=BATCH_SIZE, ignore_conflicts=True)
    new = list(
        Notification.objects.filter(
            occurrence_key=what.occurrence_key,
            recipient_id__in=[r.recipient_id for r in rows],
            created=what.now,
        ).order_by("recipient_id")
    )
    counts = selectors.unread_counts(member_ids=[row.recipient_id for row in new if row.in_app])
    return [
        _Written(
            pk=row.pk,
            recipient_id=row.recipient_id,
            in_app=row.in_app,
            email_mode=row.email_mode,
            email_due_at=row.email_due_at,
            title=row.title,
            snippet=row.snippet,
            unread=counts.get(row.recipient_id, 0),
        )
        for row in new
    ]


def group_name(working_group: WorkingGroup) -> str:
    """The group's short name ("WG1") in the site's language, whoever is active.

    It is stored on inbox rows (`group_label`) and the digest groups rows by it, so it must not
    depend on the language of whoever happened to trigger the notification.
    """
    with translation.override(settings.LANGUAGE_CODE):
        return str(working_group)


def announce(*, actor: User, working_group: WorkingGroup, title: str, body: str, url: str) -> int:
    """Tell every participant of `working_group` (the actor excepted) about an announcement.

    Only the group's chairs and vice-chairs and the secretariat may announce. Raises
    PermissionDenied otherwise and ValidationError naming `title` or `body` when empty or too
    long. Side effects: as `notify`; a large group's fan-out runs in `notify_task`.
    """
    from django.core.exceptions import PermissionDenied

    from community import policy

    if not policy.can_manage_members(actor, working_group.pk):
        raise PermissionDenied(_("Only the group's coordinators may make announcements."))
    errors: dict[str, str] = {}
    title, body = (title or "").strip(), (body or "").strip()
    if not title or len(title) > 200:
        errors["title"] = _("Give a title of at most 200 characters.")
    if not body or len(body) > 5000:
        errors["body"] = _("Write the announcement (at most 5,000 characters).")
    if errors:
        raise ValidationError(errors, code="invalid")
    now = timezone.now()
    return notify(
        kind=Kind.ANNOUNCEMENT,
        actor=actor,
        target_type="community.workinggroup",
        target_id=working_group.pk,
        url=url,
        occurrence_key=f"announcement:{working_group.pk}:{actor.pk}:{int(now.timestamp() * 1e6)}",
        # A rule, not ids: a large group's task resolves it inside its INSERT.
        rule=recipients.working_group_members_rule(
            working_group_id=working_group.pk, exclude=actor.pk
        ),
        context={"title": title, "body": body, "group_label": group_name(working_group)},
        now=now,
    )


# --- Reading ------------------------------------------------------------------------------------


@transaction.atomic
def notifications_mark_read(
    *, member: User, ids: Iterable[int] | None = None, all_unread: bool = False
) -> int:
    """Mark the member's notifications read (some by id, or all); returns the unread count.

    Ids of other members' notifications are ignored. Side effects: after commit,
    `{"type": "notification.read", "ids": [...], "unread_count": N}` to `user.<id>` so every tab
    updates. A pending email of a row read now is suppressed when it is sent (send_email_task).
    """
    qs = Notification.objects.filter(recipient=member, read_at__isnull=True, in_app=True)
    if not all_unread:
        wanted = [int(i) for i in (ids or [])]
        qs = qs.filter(pk__in=wanted)
    changed = list(qs.values_list("pk", flat=True))
    if changed:
        Notification.objects.filter(pk__in=changed).update(read_at=timezone.now())
    count = selectors.unread_count(member_id=member.pk)
    bus.publish_on_commit(
        bus.user_group(member.pk),
        {"type": "notification.read", "ids": changed, "unread_count": count},
    )
    return count


# --- Preferences --------------------------------------------------------------------------------


def _clean_preferences(prefs: Mapping[str, Any]) -> dict[str, tuple[bool, str]]:
    errors: dict[str, list[str]] = {}
    clean: dict[str, tuple[bool, str]] = {}
    if not isinstance(prefs, Mapping):
        raise ValidationError({"preferences": ["Send an object {kind: {in_app, email}}."]})
    for kind, value in prefs.items():
        if kind not in selectors.PREFERENCE_KINDS:
            errors[str(kind)] = [
                f"Unknown kind; use one of {', '.join(selectors.PREFERENCE_KINDS)}."
            ]
            continue
        if not isinstance(value, Mapping):
            errors[kind] = ['Send {"in_app": true|false, "email": "immediate"|...}.']
            continue
        default = selectors.default_preference(kind)
        in_app = value.get("in_app", default["in_app"])
        email = value.get("email", default["email"])
        unknown = set(value) - {"in_app", "email"}
        if unknown:
            errors[f"{kind}.{sorted(unknown)[0]}"] = ["Unknown field; use in_app and email."]
        if not isinstance(in_app, bool):
            errors[f"{kind}.in_app"] = ["Must be true or false."]
        if email not in EmailMode.values:
            errors[f"{kind}.email"] = [f"Must be one of {', '.join(EmailMode.values)}."]
        clean[kind] = (in_app, email)
    if errors:
        raise ValidationError(errors, code="invalid")
    return clean


@transaction.atomic
def preferences_replace(*, member: User, preferences: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the member's preferences; kinds left out return to their defaults.

    Raises ValidationError naming each bad field (`mention.email`, `unknown_kind`); on error
    nothing changes. Side effects: none besides the rows.
    """
    clean = _clean_preferences(preferences)
    NotificationPreference.objects.filter(member=member).delete()
    rows = []
    for kind, (in_app, email) in clean.items():
        default = selectors.default_preference(kind)
        if in_app == default["in_app"] and email == default["email"]:
            continue
        row = NotificationPreference(member=member, kind=kind, in_app=in_app, email=email)
        row.full_clean(validate_unique=False, validate_constraints=False)
        rows.append(row)
    NotificationPreference.objects.bulk_create(rows)
    return selectors.preferences_of(member=member)


@transaction.atomic
def preference_set_email(*, member: User, kind: str, email: str) -> NotificationPreference:
    """Set one kind's email choice (the one-click unsubscribe uses it with "off")."""
    if kind not in selectors.PREFERENCE_KINDS:
        raise ValidationError({"kind": "Unknown notification kind."}, code="invalid")
    if email not in EmailMode.values:
        raise ValidationError({"email": "Unknown email choice."}, code="invalid")
    current = selectors.preferences_of(member=member)[kind]
    row, _created = NotificationPreference.objects.update_or_create(
        member=member, kind=kind, defaults={"in_app": current["in_app"], "email": email}
    )
    return row


@transaction.atomic
def settings_update(
    *,
    member: User,
    quiet_start: dt.time | None,
    quiet_end: dt.time | None,
    digest_weekday: int,
) -> NotificationSettings:
    """Save quiet hours (both or neither) and the weekly digest day."""
    row = NotificationSettings.objects.filter(member=member).first() or NotificationSettings(
        member=member
    )
    if (quiet_start is None) != (quiet_end is None):
        field = "quiet_end" if quiet_end is None else "quiet_start"
        raise ValidationError(
            {field: _("Give both the start and the end of quiet hours, or neither.")},
            code="invalid",
        )
    row.quiet_start, row.quiet_end, row.digest_weekday = quiet_start, quiet_end, digest_weekday
    row.full_clean()
    row.save()
    return row


def group_rows_for_digest(rows: Iterable[Notification]) -> dict[str, list[Notification]]:
    grouped: dict[str, list[Notification]] = defaultdict(list)
    for row in rows:
        grouped[row.group_label].append(row)
    return dict(sorted(grouped.items()))
