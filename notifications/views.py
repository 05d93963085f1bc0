"""Pages: the inbox, the preferences form and the one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from community.models import User

from . import email, selectors, services
from .models import EmailMode, Kind, Weekday

PAGE_SIZE = 30


@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    unread = request.GET.get("unread") in {"1", "true", "on"}
    kind = request.GET.get("kind", "")
    kinds = [kind] if kind in Kind.values else []
    page = Paginator(
        selectors.inbox(member=request.user, unread=unread, kinds=kinds), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/inbox.html",
        {
            "page": page,
            "unread": unread,
            "kind": kind if kinds else "",
            "kinds": Kind.choices,
            "unread_count": selectors.unread_count(member_id=request.user.pk),
        },
    )


@login_required
@require_POST
def mark_read(request: HttpRequest) -> HttpResponse:
    """Mark the checked notifications (`ids`) or all (`all=1`) read, then return to the inbox."""
    all_unread = request.POST.get("all") == "1"
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
    if not all_unread and not ids:
        messages.error(request, _("Choose at least one notification to mark as read."))
    else:
        services.notifications_mark_read(member=request.user, ids=ids, all_unread=all_unread)
    nxt = request.POST.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
        return HttpResponseRedirect(nxt)
    return redirect("notifications:inbox")


@login_required
@require_POST
def open_notification(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark one notification read and follow its link."""
    row = selectors.inbox(member=request.user).filter(pk=pk).first()
    if row is None:
        messages.error(request, _("That notification does not exist."))
        return redirect("notifications:inbox")
    services.notifications_mark_read(member=request.user, ids=[row.pk])
    return HttpResponseRedirect(row.url)


class PreferencesForm(forms.Form):
    quiet_start = forms.TimeField(
        label=gettext_lazy("Quiet hours start"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=gettext_lazy("Immediate emails wait until quiet hours end (your time zone)."),
    )
    quiet_end = forms.TimeField(
        label=gettext_lazy("Quiet hours end"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    digest_weekday = forms.TypedChoiceField(
        label=gettext_lazy("Weekly digest day"), choices=Weekday.choices, coerce=int
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for kind in selectors.PREFERENCE_KINDS:
            self.fields[f"{kind}__in_app"] = forms.BooleanField(
                label=gettext_lazy("In the app"), required=False
            )
            self.fields[f"{kind}__email"] = forms.ChoiceField(
                label=gettext_lazy("Email"), choices=EmailMode.choices
            )

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "label": Kind(kind).label,
                "in_app": self[f"{kind}__in_app"],
                "email": self[f"{kind}__email"],
            }
            for kind in selectors.PREFERENCE_KINDS
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            missing = "quiet_end" if data.get("quiet_end") is None else "quiet_start"
            self.add_error(
                missing, _("Give both the start and the end of quiet hours, or neither.")
            )
        return data


def _initial(member: User) -> dict[str, Any]:
    prefs = selectors.preferences_of(member=member)
    row = selectors.settings_of(member=member)
    initial: dict[str, Any] = {
        "quiet_start": row.quiet_start,
        "quiet_end": row.quiet_end,
        "digest_weekday": row.digest_weekday,
    }
    for kind, pref in prefs.items():
        initial[f"{kind}__in_app"] = pref["in_app"]
        initial[f"{kind}__email"] = pref["email"]
    return initial


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    member = request.user
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.preferences_replace(
                    member=member,
                    preferences={
                        kind: {
                            "in_app": data[f"{kind}__in_app"],
                            "email": data[f"{kind}__email"],
                        }
                        for kind in selectors.PREFERENCE_KINDS
                    },
                )
                services.settings_update(
                    member=member,
                    quiet_start=data["quiet_start"],
                    quiet_end=data["quiet_end"],
                    digest_weekday=data["digest_weekday"],
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, _("Your notification preferences are saved."))
                return redirect("notifications:preferences")
    else:
        form = PreferencesForm(initial=_initial(member))
    return render(request, "notifications/preferences.html", {"form": form})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Turn one kind's email off without signing in.

    POST (the mail client's one-click request, RFC 8058, or the button on the page) does it;
    GET only shows the page with the button, so a link scanner opening the URL changes nothing.
    CSRF does not apply: the signed token is the proof, and the mail client sends no cookie.
    """
    try:
        member_id, kind = email.unsubscribe_read(token)
    except signing.BadSignature:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    member = User.objects.filter(pk=member_id, is_active=True).first()
    if member is None or kind not in selectors.PREFERENCE_KINDS:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    context = {
        "kind_label": Kind(kind).label,
        "done": False,
        "preferences_url": reverse("notifications:preferences"),
    }
    if request.method == "POST":
        services.preference_set_email(member=member, kind=kind, email=EmailMode.OFF)
        context["done"] = True
    return render(request, "notifications/unsubscribe.html", context)
