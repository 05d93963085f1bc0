"""Writes for notifications: fan-out, marking read, preferences.

The fan-out is `notify(...)`: receivers (notifications/receivers.py) and announcements call it
with the recipients already resolved (notifications/recipients.py). It writes inbox rows in
batches with `bulk_create(ignore_conflicts=True)` under a unique (recipient, occurrence_key), so
running it twice for the same happening writes nothing new and pushes nothing new.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from community.models import User, WorkingGroup

from . import bus, selectors
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
# Rows per INSERT and per batch of live frames.
BATCH_SIZE = 1000
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
    recipient_ids: Iterable[int],
    context: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> int:
    """Tell each recipient once about one happening; returns how many rows were written now.

    More than INLINE_FANOUT_MAX recipients: the work goes to `notify_task` after commit and 0 is
    returned. Side effects: inbox rows (one per recipient and occurrence_key, never two); after
    commit, a `notification` frame with the unread count to each new recipient's `user.<id>`
    group, and `send_email_task` for rows to email now.
    """
    ids = sorted({int(i) for i in recipient_ids})
    if kind not in Kind.values:
        raise ValidationError({"kind": f"Unknown notification kind {kind!r}."}, code="invalid")
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
            "recipient_ids": ids,
            "context": dict(context),
        }
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


def write_notifications(
    *,
    kind: str,
    actor_id: int | None,
    target_type: str,
    target_id: int,
    url: str,
    occurrence_key: str,
    recipient_ids: list[int],
    context: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> int:
    """The fan-out itself, in batches of BATCH_SIZE, each in its own transaction, with the
    same number of queries per batch.

    Side effects: as `notify`. Per batch: recipients with language, zone and quiet hours (1),
    their preferences for the kind (1), rows already written for this occurrence (1), the
    INSERT (1), the new rows back (1), unread counts (1).
    """
    now = now or timezone.now()
    written = 0
    for start in range(0, len(recipient_ids), BATCH_SIZE):
        # One transaction per batch: a large fan-out holds no lock for long, each batch's
        # frames go out as it commits, and a retry after a crash redoes only what is missing.
        with transaction.atomic():
            written += _write_batch(
                kind=kind,
                actor_id=actor_id,
                target_type=target_type,
                target_id=target_id,
                url=url,
                occurrence_key=occurrence_key,
                recipient_ids=recipient_ids[start : start + BATCH_SIZE],
                context=context,
                now=now,
            )
    return written


def _write_batch(
    *,
    kind: str,
    actor_id: int | None,
    target_type: str,
    target_id: int,
    url: str,
    occurrence_key: str,
    recipient_ids: list[int],
    context: Mapping[str, Any],
    now: dt.datetime,
) -> int:
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
    prefs = selectors.preferences_for(member_ids=[m.pk for m in members], kind=kind)
    done = set(
        Notification.objects.filter(
            occurrence_key=occurrence_key, recipient_id__in=recipient_ids
        ).values_list("recipient_id", flat=True)
    )
    rendered: dict[tuple[str, str], tuple[str, str]] = {}
    rows: list[Notification] = []
    note = str(context.get("note") or "").strip()[:NOTE_CHARS]
    for member in members:
        if member.pk in done:
            continue
        in_app, email = prefs[member.pk]
        if not in_app and email == EmailMode.OFF:
            continue
        key = (member.language, member.timezone)
        if key not in rendered:
            with translation.override(member.language):
                rendered[key] = render(kind, context, tz_name=member.timezone)
        title, snippet = rendered[key]
        due = None
        if email == EmailMode.IMMEDIATE:
            quiet = getattr(member, "notification_settings", None)
            due = now
            if quiet is not None:
                due = (
                    quiet_until(
                        now=now,
                        tz_name=member.timezone,
                        start=quiet.quiet_start,
                        end=quiet.quiet_end,
                    )
                    or now
                )
        rows.append(
            Notification(
                recipient_id=member.pk,
                kind=kind,
                actor_id=actor_id,
                target_type=target_type,
                target_id=target_id,
                url=url,
                group_label=str(context.get("group_label", ""))[:200],
                title=title,
                snippet=snippet,
                note=note,
                created=now,
                read_at=None,
                in_app=in_app,
                email_mode=email,
                email_state=EmailState.SKIPPED if email == EmailMode.OFF else EmailState.PENDING,
                email_due_at=due,
                occurrence_key=occurrence_key,
            )
        )
    if not rows:
        return 0
    # ignore_conflicts: a concurrent run of the same fan-out may have written some rows since
    # the read above; the unique constraint keeps one, and the read below sees which are ours.
    Notification.objects.bulk_create(rows, batch_size=BATCH_SIZE, ignore_conflicts=True)
    new = list(
        Notification.objects.filter(
            occurrence_key=occurrence_key,
            recipient_id__in=[r.recipient_id for r in rows],
            created=now,
        )
    )
    live = [row for row in new if row.in_app]
    counts = selectors.unread_counts(member_ids=[row.recipient_id for row in live])
    bus.publish_many_on_commit(
        [
            (
                bus.user_group(row.recipient_id),
                {
                    "type": "notification",
                    "notification": selectors.notification_payload(row),
                    "unread_count": counts[row.recipient_id],
                },
            )
            for row in live
        ]
    )
    immediate = [
        row.pk
        for row in new
        if row.email_mode == EmailMode.IMMEDIATE and row.email_due_at and row.email_due_at <= now
    ]
    if immediate:
        from .tasks import send_email_task

        def enqueue() -> None:
            for pk in immediate:
                send_email_task.delay(pk)

        transaction.on_commit(enqueue, robust=True)
    return len(new)


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

    from . import recipients

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
        recipient_ids=recipients.working_group_members(
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
