"""Pages that draw on several apps: the landing page and the member's dashboard."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from community.models import User, WorkingGroup
from community.selectors import memberships_of
from forums.selectors import rooms_of


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return dashboard(request)
    groups = WorkingGroup.objects.annotate(topic_count=Count("topics"))
    return render(request, "minga/landing.html", {"working_groups": groups})


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    member: User = request.user  # type: ignore[assignment]
    context = {
        "my_memberships": memberships_of(member=member),
        "my_rooms": rooms_of(member=member),
        "other_groups": WorkingGroup.objects.exclude(memberships__member=member),
    }
    return render(request, "minga/dashboard.html", context)
