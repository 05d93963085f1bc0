"""Account settings for the calendar: the private feed URL and the reminder offsets.

Opening the page writes nothing: without a feed address it offers "Create my calendar
address" (a POST); with one, "Make a new address" replaces it."""

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
    # Reads only: the address is made by the member's POST (calendar_feed_create), never by
    # opening the page.
    feed_url = selectors.calendar_feed_url(member=member, base_url=request.build_absolute_uri("/"))
    response = render(
        request, "events/calendar_settings.html", {"form": form, "feed_url": feed_url}
    )
    response["Cache-Control"] = "no-store"  # the page shows a secret URL
    return response


@login_required
@require_POST
def calendar_feed_create(request: HttpRequest) -> HttpResponse:
    """Make the member's first private feed address. A second POST (a double click, another
    tab) keeps the address already made: only "Make a new address" replaces one."""
    services.feed_token_ensure(member=request.user)  # type: ignore[arg-type]
    messages.success(request, _("Your calendar address is ready; subscribe to it below."))
    return redirect("calendar_settings")


@login_required
@require_POST
def calendar_feed_regenerate(request: HttpRequest) -> HttpResponse:
    services.feed_token_regenerate(member=request.user)  # type: ignore[arg-type]
    messages.success(
        request, _("Your calendar feed has a new address; the old one no longer works.")
    )
    return redirect("calendar_settings")
