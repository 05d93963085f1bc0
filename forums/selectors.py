"""Reads for the forums."""

from __future__ import annotations

from django.db.models import QuerySet

from community import policy
from community.models import User

from .models import Room


def rooms_of(*, member: User) -> QuerySet[Room]:
    """The topic rooms of the member's working groups, in slug order."""
    return (
        Room.objects.filter(working_group_id__in=list(policy.roles_of(member)))
        .select_related("working_group", "topic")
        .order_by("working_group__number", "slug")
    )
