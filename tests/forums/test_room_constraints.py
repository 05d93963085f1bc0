"""The database refuses a working-group room without a working group (not model validation only)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from community.models import WorkingGroup
from forums.models import Room

pytestmark = pytest.mark.django_db

CONSTRAINT = "room_working_group_visibility_needs_group"


def test_room_insert_working_group_visibility_without_group_refused(plan: None) -> None:
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        Room.objects.create(slug="orphan", title="Orphan", visibility="working_group")

    assert CONSTRAINT in str(caught.value)
    assert not Room.objects.filter(slug="orphan").exists()


def test_room_update_to_working_group_visibility_without_group_refused(plan: None) -> None:
    # Arrange: a network room of no group (an event of the whole network has such a room).
    room = Room.objects.create(slug="network-room", title="Network")

    # Act: update() skips full_clean(); the database still says no.
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.filter(pk=room.pk).update(visibility=Room.Visibility.WORKING_GROUP)

    # Assert
    room.refresh_from_db()
    assert room.visibility == Room.Visibility.NETWORK


def test_room_working_group_visibility_with_group_accepted(plan: None) -> None:
    wg1 = WorkingGroup.objects.get(slug="wg1")

    room = Room.objects.create(
        slug="wg1-private-2", title="Private", visibility="working_group", working_group=wg1
    )

    assert Room.objects.filter(pk=room.pk, visibility="working_group").exists()


def test_room_full_clean_reports_the_rule_once_under_visibility(plan: None) -> None:
    room = Room(slug="orphan", title="Orphan", visibility="working_group")

    with pytest.raises(ValidationError) as caught:
        room.full_clean()

    assert {f: [e.code for e in errs] for f, errs in caught.value.error_dict.items()} == {
        "visibility": ["visibility_needs_group"]
    }
