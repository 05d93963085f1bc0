"""Account settings for the calendar: the private feed URL and the reminder offsets."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from community.models import User

from . import selectors, services

REMINDER_CHOICES = [
    (10080, gettext_lazy("1 week before")),
    (2880, gettext_lazy("2 days before")),
    (1440, gettext_lazy("1 day before")),
    (180, gettext_lazy("3 hours before")),
    (60, gettext_lazy("1 hour before")),
    (15, gettext_lazy("15 minutes before")),
]


class ReminderForm(forms.Form):
    offsets = forms.TypedMultipleChoiceField(
        label=gettext_lazy("Remind me"),
        choices=REMINDER_CHOICES,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy(
            "In the app and by email, before each event you registered for. None: no reminders."
        ),
    )


@login_required
def calendar_settings(request: HttpRequest) -> HttpResponse:
    member: User = request.user  # type: ignore[assignment]
    current = selectors.reminder_offsets(member=member)
    form = ReminderForm(
        request.POST if request.method == "POST" else None, initial={"offsets": current}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.reminder_preference_set(
                member=member, offsets_minutes=sorted(form.cleaned_data["offsets"], reverse=True)
            )
        except ValidationError as error:
            form.add_error("offsets", error.messages)
        else:
            messages.success(request, _("Your reminders were saved."))
            return redirect("calendar_settings")
    services.feed_token_ensure(member=member)
    feed_url = selectors.calendar_feed_url(member=member, base_url=request.build_absolute_uri("/"))
    response = render(
        request, "events/calendar_settings.html", {"form": form, "feed_url": feed_url}
    )
    response["Cache-Control"] = "no-store"  # the page shows a secret URL
    return response


@login_required
@require_POST
def calendar_feed_regenerate(request: HttpRequest) -> HttpResponse:
    services.feed_token_regenerate(member=request.user)  # type: ignore[arg-type]
    messages.success(
        request, _("Your calendar feed has a new address; the old one no longer works.")
    )
    return redirect("calendar_settings")
