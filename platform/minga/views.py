"""Pages that draw on several apps: the landing page and the member's dashboard."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from community.models import User, WorkingGroup
from community.selectors import memberships_of
from events.models import Registration
from events.recurrence import Occurrence
from events.selectors import occurrences_visible_to
from forums.selectors import rooms_of


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return dashboard(request)
    groups = WorkingGroup.objects.annotate(topic_count=Count("topics"))
    return render(
        request,
        "minga/landing.html",
        {"working_groups": groups, "open_signup": bool(settings.MINGA_SIGNUP_DOMAINS)},
    )


UPCOMING_DAYS = 60
UPCOMING_LIMIT = 6


def _registered(occurrence: Occurrence) -> bool:
    return any(
        r.status != Registration.Status.WITHDRAWN
        for r in getattr(occurrence.event, "my_registrations", ())
    )


def upcoming_occurrences(*, member: User) -> list[Occurrence]:
    """The next few dates the member can attend: their registrations first, then the rest."""
    now = timezone.now()
    found = occurrences_visible_to(
        member=member, start=now, end=now + timedelta(days=UPCOMING_DAYS), include_cancelled=False
    )
    mine = [o for o in found if _registered(o)]
    others = [o for o in found if not _registered(o)]
    return (mine + others)[:UPCOMING_LIMIT]


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    member: User = request.user  # type: ignore[assignment]
    context = {
        "my_memberships": memberships_of(member=member),
        "my_rooms": rooms_of(member=member),
        "other_groups": WorkingGroup.objects.exclude(memberships__member=member),
        "upcoming_events": upcoming_occurrences(member=member),
    }
    return render(request, "minga/dashboard.html", context)
