"""API endpoints of the community: the member themself."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from ninja import Router, Schema

from . import services
from .models import User

router = Router(tags=["members"])

# Apps that community may not import add fields to the member object here, from their
# AppConfig.ready() (events adds calendar_feed_url): dependency direction stays one way.
member_extras: list[Callable[[HttpRequest, User], dict[str, object]]] = []


class MembershipOut(Schema):
    working_group: str
    role: str


class MemberOut(Schema):
    id: int
    email: str
    name: str
    handle: str
    initials: str
    organization: str | None
    organization_kind: str | None
    constituency: str | None
    country: str | None
    language: str
    timezone: str
    is_secretariat: bool
    memberships: list[MembershipOut]
    calendar_feed_url: str | None


class MemberPatch(Schema):
    name: str | None = None
    handle: str | None = None
    language: str | None = None
    timezone: str | None = None


def member_out(member: User) -> dict[str, object]:
    org = member.organization
    return {
        "id": member.pk,
        "email": member.email,
        "name": member.name,
        "handle": member.handle,
        "initials": member.initials,
        "organization": org.name if org else None,
        "organization_kind": org.kind if org else None,
        "constituency": org.constituency if org else None,
        "country": org.country.code if org and org.country else None,
        "language": member.language,
        "timezone": member.timezone,
        "is_secretariat": member.is_staff,
        "memberships": [
            {"working_group": m.working_group.slug, "role": m.role}
            for m in member.memberships.select_related("working_group")
        ],
        # The private iCalendar feed arrives with the events calendar; until then there is none.
        "calendar_feed_url": None,
    }


def member_with_extras(request: HttpRequest, member: User) -> dict[str, object]:
    out = member_out(member)
    for extra in member_extras:
        out.update(extra(request, member))
    return out


@router.get("/me/", response=MemberOut, summary="The signed-in member")
def me(request: HttpRequest) -> dict[str, object]:
    return member_with_extras(request, request.user)  # type: ignore[arg-type]


@router.patch("/me/", response=MemberOut, summary="Change name, handle, language or time zone")
def me_update(request: HttpRequest, patch: MemberPatch) -> dict[str, object]:
    member: User = request.user  # type: ignore[assignment]
    services.profile_update(
        member=member,
        name=patch.name if patch.name is not None else member.name,
        handle=patch.handle if patch.handle is not None else member.handle,
        language=patch.language if patch.language is not None else member.language,
        timezone_name=patch.timezone if patch.timezone is not None else member.timezone,
    )
    return member_with_extras(request, member)
