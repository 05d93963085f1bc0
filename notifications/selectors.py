"""Reads for notifications: inbox, unread counts, preferences with their defaults."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from community import policy
from community.models import User

from .models import EmailMode, Kind, Notification, NotificationPreference, NotificationSettings

# The contract's preference kinds (ARCHITECTURE.md) first; the others are additions.
CONTRACT_KINDS: tuple[str, ...] = (
    Kind.MENTION,
    Kind.REPLY,
    Kind.NEW_THREAD,
    Kind.EVENT_SCHEDULED,
    Kind.EVENT_CHANGED,
    Kind.EVENT_REMINDER,
    Kind.REGISTRATION,
)
PREFERENCE_KINDS: tuple[str, ...] = CONTRACT_KINDS + tuple(
    k for k in Kind.values if k not in CONTRACT_KINDS
)

# A calendar invitation (registration, change, cancellation) is only useful at once: those
# kinds, like mentions, replies and reminders, are emailed immediately unless the member says so.
IMMEDIATE_BY_DEFAULT = frozenset(
    {
        Kind.MENTION,
        Kind.REPLY,
        Kind.EVENT_CHANGED,
        Kind.EVENT_CANCELLED,
        Kind.EVENT_REMINDER,
        Kind.REGISTRATION,
    }
)


def default_preference(kind: str) -> dict[str, Any]:
    email = EmailMode.IMMEDIATE if kind in IMMEDIATE_BY_DEFAULT else EmailMode.DAILY
    return {"in_app": True, "email": str(email)}


def preferences_of(*, member: User) -> dict[str, dict[str, Any]]:
    """{kind: {"in_app", "email"}} for every kind, the member's choices over the defaults."""
    prefs = {kind: default_preference(kind) for kind in PREFERENCE_KINDS}
    for row in NotificationPreference.objects.filter(member=member):
        if row.kind in prefs:
            prefs[row.kind] = {"in_app": row.in_app, "email": row.email}
    return prefs


def preferences_for(*, member_ids: Iterable[int], kind: str) -> dict[int, tuple[bool, str]]:
    """{member_id: (in_app, email)} for `kind` for many members, in one query."""
    default = default_preference(kind)
    ids = list(member_ids)
    result = dict.fromkeys(ids, (default["in_app"], default["email"]))
    rows = NotificationPreference.objects.filter(member_id__in=ids, kind=kind).values_list(
        "member_id", "in_app", "email"
    )
    for member_id, in_app, email in rows:
        result[member_id] = (in_app, email)
    return result


def settings_of(*, member: User) -> NotificationSettings:
    """The member's settings row, or an unsaved one with the defaults."""
    found = NotificationSettings.objects.filter(member=member).first()
    return found or NotificationSettings(member=member)


def unread_count(*, member_id: int) -> int:
    return Notification.objects.filter(
        recipient_id=member_id, read_at__isnull=True, in_app=True
    ).count()


def unread_counts(*, member_ids: Iterable[int]) -> dict[int, int]:
    """{member_id: unread} for many members in one query (members with none get 0).

    On PostgreSQL the ids travel as one array, not a parameter each: a fan-out asks for
    thousands at once (notifications.services, after each batch's commit)."""
    from django.db import connection
    from django.db.models import Count

    ids = list(member_ids)
    counts = dict.fromkeys(ids, 0)
    if not ids:
        return counts
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Notification._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT recipient_id, count(*) FROM {table} "  # noqa: S608 - name from _meta
                "WHERE recipient_id = ANY(%s::bigint[]) AND read_at IS NULL AND in_app "
                "GROUP BY recipient_id",
                [ids],
            )
            counts.update(dict(cursor.fetchall()))
        return counts
    rows = (
        Notification.objects.filter(recipient_id__in=ids, read_at__isnull=True, in_app=True)
        .values("recipient_id")
        .annotate(n=Count("id"))
        .values_list("recipient_id", "n")
    )
    counts.update(dict(rows))
    return counts


def inbox(
    *, member: User, unread: bool = False, kinds: Iterable[str] | None = None
) -> QuerySet[Notification]:
    if not policy.is_participant(member):
        # An unverified or deactivated account reads nothing, its own inbox included: the
        # snippets quote rooms it may not read (docs/permissions.md).
        return Notification.objects.none()
    qs = Notification.objects.filter(recipient=member, in_app=True).select_related("actor")
    if unread:
        qs = qs.filter(read_at__isnull=True)
    kinds = [k for k in (kinds or []) if k]
    if kinds:
        qs = qs.filter(kind__in=kinds)
    return qs.order_by("-created", "-id")


def notification_payload(row: Notification) -> dict[str, Any]:
    """The contract's notification object (JSON-safe)."""
    return {
        "id": row.pk,
        "kind": row.kind,
        "title": row.title,
        "snippet": row.preview,
        "url": row.url,
        "created_at": row.created.isoformat(),
        "read": row.read_at is not None,
    }
