"""notifications.recovery: the `notification` frames a member's sockets missed while their
process's Redis subscriptions were lost (the hub replays them: tests/forums/test_hub_recovery.py)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from community.models import User
from notifications import bus, recovery
from notifications.models import Notification
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _row(
    recipient: User, *, minutes_ago: float = 0, in_app: bool = True, read: bool = False
) -> int:
    created = timezone.now() - timedelta(minutes=minutes_ago)
    row = Notification.objects.create(
        recipient=recipient,
        kind="mention",
        target_type="message",
        target_id=1,
        url="/rooms/wg1-a/",
        title="You were mentioned",
        snippet="See the 2007 report",
        created=created,
        read_at=created if read else None,
        in_app=in_app,
        occurrence_key=f"recovery:{uuid.uuid4().hex}",
    )
    return int(row.pk)


def _frames(missed: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(group, notification id, unread count) of each bus message, with its mark checked."""
    out = []
    for message in missed:
        frame = json.loads(message["text"])
        assert (frame["type"], message["seq"]) == ("notification", frame["notification"]["id"])
        out.append((message["group"], frame["notification"]["id"], frame["unread_count"]))
    return out


def test_a_member_gets_what_was_made_past_their_marks_with_the_count_now() -> None:
    # Arrange: Ana's process joined her group 10 minutes ago and got notification `seen`;
    # Bea's joined 10 minutes ago and got none; Carla has no socket there.
    ana, bea, carla = UserFactory(), UserFactory(), UserFactory()
    _row(ana, minutes_ago=30)  # before the join: the page loaded it
    seen = _row(ana, minutes_ago=5)
    made = [_row(ana, minutes_ago=1), _row(ana, read=True)]  # one already read elsewhere
    _row(ana, in_app=False)  # email only: no frame
    bea_made = _row(bea, minutes_ago=1)
    _row(carla)
    joined = (timezone.now() - timedelta(minutes=10)).timestamp()
    marks = {ana.pk: bus.Marks(seen, 0, joined), bea.pk: bus.Marks(0, 0, joined)}

    # Act
    with CaptureQueriesContext(connection) as queries:
        missed = recovery.missed_notifications(marks)

    # Assert: oldest first per member, each with the member's unread count now; two queries.
    assert len(queries) == 2
    assert _frames(missed) == [
        (bus.user_group(ana.pk), made[0], 3),
        (bus.user_group(ana.pk), made[1], 3),
        (bus.user_group(bea.pk), bea_made, 1),
    ]


def test_a_member_gets_at_most_the_newest_few(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "MAX_REPLAYED", 2)
    ana = UserFactory()
    made = [_row(ana) for _ in range(4)]
    joined = (timezone.now() - timedelta(minutes=1)).timestamp()

    missed = recovery.missed_notifications({ana.pk: bus.Marks(0, 0, joined)})

    assert [n for _group, n, _count in _frames(missed)] == made[-2:]


async def test_only_member_groups_are_asked_about(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[int, bus.Marks]] = []

    def missed(members: dict[int, bus.Marks]) -> list[dict[str, Any]]:
        asked.append(members)
        return []

    monkeypatch.setattr(recovery, "missed_notifications", missed)
    marks = bus.Marks(1, 0, 0.0)

    none = await recovery.recover_members({"room.1": marks})
    some = await recovery.recover_members({"room.1": marks, "user.7": marks})

    assert (none, some, asked) == ([], [], [{7: marks}])
