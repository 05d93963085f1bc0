"""Reads for the community, with their joins spelled out."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Membership, User


def memberships_of(*, member: User) -> QuerySet[Membership]:
    return Membership.objects.filter(member=member).select_related("working_group")


def delegation_members(*, working_group_id: int) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(working_group_id=working_group_id)
        .select_related("member__organization")
        .order_by("member__organization__name", "member__name")
    )
