"""What a member's sockets missed while their process's Redis subscriptions were lost.

A `notification` frame published while Redis is away reaches no one, and nothing else would
tell the page: the bell asks for its count only when its socket reconnects, and during a Redis
outage the socket stays open. Once the subscriptions are back, the process's hub asks this
recoverer (notifications.bus.recover_with) for the in-app notifications of its members made
past their marks (the newest notification its sockets got, and when it joined their group),
and delivers their frames as if live, each with the member's unread count now.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from minga.realtime import db_hop

from . import bus, selectors
from .models import Notification

MAX_REPLAYED = 20  # a member's newest; the unread count tells the rest


async def recover_members(lost_at: dict[str, bus.Marks]) -> list[dict[str, Any]]:
    """The bus messages of the notifications each member group missed (the others left)."""
    members = {}
    for group, marks in lost_at.items():
        member_id = bus.member_of(group)
        if member_id is not None:
            members[member_id] = marks
    if not members:
        return []
    return await db_hop(missed_notifications)(members)


def missed_notifications(members: dict[int, bus.Marks]) -> list[dict[str, Any]]:
    """For each member, the `notification` frames of their in-app rows made since their group
    was joined and newer than the newest it got (at most MAX_REPLAYED, oldest first), with the
    unread count now. Two queries, whatever the number of members."""
    since = dt.datetime.fromtimestamp(min(m.since for m in members.values()), dt.UTC)
    rows = Notification.objects.filter(
        recipient_id__in=list(members), in_app=True, created__gte=since
    ).order_by("id")
    missed: dict[int, list[Notification]] = {}
    for row in rows:
        marks = members[row.recipient_id]
        if row.pk > marks.seq and row.created.timestamp() >= marks.since:
            missed.setdefault(row.recipient_id, []).append(row)
    if not missed:
        return []
    counts = selectors.unread_counts(member_ids=list(missed))
    out = []
    for member_id, found in missed.items():
        for row in found[-MAX_REPLAYED:]:
            frame = {
                "type": "notification",
                "notification": selectors.notification_payload(row),
                "unread_count": counts[member_id],
            }
            out.append(bus._envelope(bus.user_group(member_id), frame))
    return out
