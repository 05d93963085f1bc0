"""Forms of the calendar pages. They parse what was typed; the services decide and write.

Date-times are typed as the organizer's local wall-clock time (an <input type=datetime-local>)
in the time zone chosen on the same form, so the fields here return *naive* datetimes and the
services place them in that zone (with the DST rule of events/recurrence.py). Django's own
DateTimeField would read them in the viewer's zone instead, which is not what was meant.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _
from django_countries import countries
from minga.widgets import Select

from community import policy
from community.forms import timezone_choices
from community.models import ORGANIZER_ROLES, Topic, User, WorkingGroup, available_timezones
from forums.models import Room

from . import recurrence, services
from .models import Event, EventDocument

ORGANIZER_SEPARATORS = re.compile(r"[,;\s]+")
LOCAL_INPUT_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs=attrs, format="%Y-%m-%dT%H:%M")


class LocalDateTimeField(forms.Field):
    """A wall-clock date and time with no zone attached (the zone is another field)."""

    widget = LocalDateTimeInput
    default_error_messages = {
        "invalid": _("Enter a date and time such as 2026-03-18 10:00."),
    }

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=None)
        text = str(value).strip()
        for fmt in LOCAL_INPUT_FORMATS:
            try:
                return datetime.strptime(text, fmt)  # noqa: DTZ007 - naive on purpose, see module
            except ValueError:
                continue
        raise ValidationError(self.error_messages["invalid"], code="invalid")


def organizable_groups(member: User) -> QuerySet[WorkingGroup]:
    if policy.is_secretariat(member):
        return WorkingGroup.objects.order_by("number")
    return WorkingGroup.objects.filter(
        memberships__member=member, memberships__role__in=ORGANIZER_ROLES
    ).order_by("number")


def _country_choices() -> list[tuple[str, str]]:
    return [("", "—"), *((code, name) for code, name in countries)]


class EventForm(forms.Form):
    """Create or edit an event. `member` limits the working groups to those they organize."""

    title = forms.CharField(label=_("Title"), max_length=200)
    kind = forms.ChoiceField(label=_("Kind"), choices=Event.Kind.choices)
    working_group = forms.ModelChoiceField(
        label=_("Working group"),
        queryset=WorkingGroup.objects.none(),
        to_field_name="slug",
        required=False,
    )
    topics = forms.ModelMultipleChoiceField(
        label=_("Topics"),
        queryset=Topic.objects.none(),
        required=False,
        help_text=_("Activities of the working group this event serves."),
    )
    description = forms.CharField(
        label=_("Description"),
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        help_text=_("Markdown: **bold**, lists, links."),
    )
    starts_at = LocalDateTimeField(label=_("Starts (local time)"))
    ends_at = LocalDateTimeField(label=_("Ends (local time)"))
    timezone = forms.CharField(
        label=_("Time zone"),
        max_length=64,
        widget=forms.Select(),
        help_text=_("The zone of the times above; everyone else sees them in their own zone."),
    )
    recurrence = forms.CharField(
        label=_("Repeats"),
        max_length=500,
        required=False,
        help_text=_(
            "Leave empty for a one-off event. An iCalendar RRULE, e.g. FREQ=WEEKLY;COUNT=6 "
            "(six weeks), FREQ=MONTHLY;BYDAY=3WE;UNTIL=20271231 (third Wednesday until the end "
            "of 2027). The first occurrence is the start above."
        ),
    )
    online = forms.BooleanField(label=_("Online"), required=False)
    room = forms.ModelChoiceField(
        label=_("Live room"),
        queryset=Room.objects.none(),
        to_field_name="slug",
        required=False,
        help_text=_("The forum room where the event happens live."),
    )
    venue = forms.CharField(label=_("Venue"), max_length=200, required=False)
    city = forms.CharField(label=_("City"), max_length=100, required=False)
    country = forms.ChoiceField(label=_("Country"), required=False)
    capacity = forms.IntegerField(
        label=_("Capacity"),
        min_value=1,
        required=False,
        help_text=_("Empty for no limit. Beyond it, members join a waitlist."),
    )
    registration_opens_at = LocalDateTimeField(
        label=_("Registration opens (local time)"), required=False
    )
    registration_closes_at = LocalDateTimeField(
        label=_("Registration closes (local time)"),
        required=False,
        help_text=_("Empty: registration closes when the event ends."),
    )
    visibility = forms.ChoiceField(label=_("Visibility"), choices=Event.Visibility.choices)
    allow_observers = forms.BooleanField(label=_("Observers may register"), required=False)
    # Handles typed, not a <select>: the network has thousands of members.
    organizers = forms.CharField(
        label=_("Co-organizers"),
        max_length=1000,
        required=False,
        help_text=_(
            "Handles or e-mail addresses of active members, separated by commas, e.g. "
            "@ana-perez, jo@example.org. They are listed as organizers with you."
        ),
    )

    def __init__(self, *args: Any, member: User, event: Event | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {})
        kwargs["initial"].setdefault("timezone", member.timezone or "UTC")
        super().__init__(*args, **kwargs)
        self.member = member
        groups = organizable_groups(member)
        co_organizer = event is not None and not policy.can_name_co_organizers(member, event)
        if event is not None and co_organizer:
            groups = self._for_co_organizer(event)
        self.fields["working_group"].queryset = groups
        self.fields["working_group"].empty_label = _("The whole network")
        if not policy.is_secretariat(member) and not co_organizer:
            # Network-wide events are the secretariat's.
            self.fields["working_group"].required = True
            self.fields["working_group"].empty_label = None
        self.fields["topics"].queryset = (
            Topic.objects.filter(working_group__in=groups)
            .select_related("working_group")
            .order_by("working_group__number", "letter")
        )
        rooms = Room.objects.exclude(state="archived").order_by("slug")
        if not policy.is_secretariat(member):
            current = Q(pk=event.room_id) if event is not None and event.room_id else Q(pk=None)
            rooms = rooms.filter(Q(working_group__in=groups) | current)
        self.fields["room"].queryset = rooms
        zones = timezone_choices()
        typed = self.data.get("timezone") if self.is_bound else None
        if typed and typed not in available_timezones():
            # Keep what was typed on screen next to the error, instead of a silent first zone.
            zones = [(typed, typed), *zones]
        self.fields["timezone"].widget.choices = zones
        self.fields["country"].choices = _country_choices()

    def _for_co_organizer(self, event: Event) -> QuerySet[WorkingGroup]:
        """A co-organizer without a role in the event's group edits the event where it is:
        its group (topics and rooms of it) but not the group itself, nor who co-organizes
        (policy.can_name_co_organizers). Disabled fields keep their initial value."""
        for name in ("working_group", "organizers"):
            self.fields[name].disabled = True
        self.fields["organizers"].help_text = _(
            "The chairs and vice-chairs of the event's working group and the secretariat change "
            "the co-organizers."
        )
        return WorkingGroup.objects.filter(pk=event.working_group_id)

    def clean_recurrence(self) -> str:
        return str(self.cleaned_data.get("recurrence") or "").strip()

    def clean_organizers(self) -> list[User]:
        """The members named, checked by events.services.organizers_named (one query)."""
        names = ORGANIZER_SEPARATORS.split(self.cleaned_data.get("organizers") or "")
        try:
            return services.organizers_named(names)
        except ValidationError as error:
            raise ValidationError(error.error_dict["organizers"]) from error

    def service_values(self) -> dict[str, Any]:
        """Keyword arguments of event_create from the cleaned data.

        The registration window is placed in the chosen zone here (the services take aware
        instants for it); with an unknown zone it is left out and the service's error on the
        zone tells the organizer what to fix.
        """
        data = dict(self.cleaned_data)
        zone = data["timezone"]
        for name in ("registration_opens_at", "registration_closes_at"):
            value = data[name]
            if value is not None:
                data[name] = (
                    recurrence.to_instant(value, zone) if zone in available_timezones() else None
                )
        data["topics"] = list(data["topics"])
        return data


def event_initial(event: Event) -> dict[str, Any]:
    """What an edit form shows: the times as the organizer typed them, in the event's zone."""
    zone = event.timezone

    def local(value: datetime | None) -> datetime | None:
        return recurrence.to_local(value, zone) if value else None

    return {
        "title": event.title,
        "kind": event.kind,
        "working_group": event.working_group,
        "topics": list(event.topics.all()),
        "description": event.description,
        "starts_at": recurrence.local_start(event),
        "ends_at": local(event.ends_at),
        "timezone": zone,
        "recurrence": event.recurrence,
        "online": event.online,
        "room": event.room,
        "venue": event.venue,
        "city": event.city,
        "country": event.country.code if event.country else "",
        "capacity": event.capacity,
        "registration_opens_at": local(event.registration_opens_at),
        "registration_closes_at": local(event.registration_closes_at),
        "visibility": event.visibility,
        "allow_observers": event.allow_observers,
        # Co-organizers: everyone listed but the creator, who stays one whatever is typed.
        "organizers": ", ".join(
            f"@{u.handle}" for u in event.organizers.all() if u.pk != event.created_by_id
        ),
    }


class RescheduleForm(forms.Form):
    starts_at = LocalDateTimeField(label=_("New start (local time)"))
    ends_at = LocalDateTimeField(label=_("New end (local time)"))
    timezone = forms.CharField(label=_("Time zone"), max_length=64, widget=forms.Select())
    message = forms.CharField(
        label=_("Message to registrants"),
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=2000,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["timezone"].widget.choices = timezone_choices()


class CancelForm(forms.Form):
    message = forms.CharField(
        label=_("Message to registrants"),
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=2000,
        help_text=_("Sent with the cancellation to everyone registered or waitlisted."),
    )


class DuplicateForm(forms.Form):
    starts_at = LocalDateTimeField(
        label=_("New start (local time)"),
        help_text=_("In the event's time zone; the duration and everything else are kept."),
    )


class AgendaItemForm(forms.Form):
    title = forms.CharField(label=_("Title"), max_length=200)
    starts_at = LocalDateTimeField(label=_("Starts (local time)"))
    ends_at = LocalDateTimeField(label=_("Ends (local time)"))
    speaker_members = forms.ModelMultipleChoiceField(
        label=_("Speakers (members)"),
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Members of the working group who speak."),
    )
    speakers = forms.CharField(
        label=_("Speakers"),
        max_length=300,
        required=False,
        help_text=_("Names of speakers from outside."),
    )
    documents = forms.ModelMultipleChoiceField(
        label=_("Linked documents"),
        queryset=EventDocument.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, event: Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if event.working_group_id is None:
            # A network-wide event: its organizers (the secretariat) name the member speakers.
            speakers = event.organizers.all()
        else:
            speakers = User.objects.filter(
                memberships__working_group_id=event.working_group_id, is_active=True
            )
        self.fields["speaker_members"].queryset = speakers.order_by("name", "pk").distinct()
        self.fields["documents"].queryset = event.documents.order_by("position", "pk")
        if not self.fields["documents"].queryset.exists():
            del self.fields["documents"]


class AgendaItemDocumentsForm(forms.Form):
    """The documents one agenda item links (the agenda page's per-item form)."""

    documents = forms.ModelMultipleChoiceField(
        label=_("Linked documents"),
        queryset=EventDocument.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, event: Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["documents"].queryset = event.documents.order_by("position", "pk")


class DocumentForm(forms.Form):
    """A document: a file to upload or a link, one of the two (the service checks the rest)."""

    title = forms.CharField(label=_("Title"), max_length=200)
    file = forms.FileField(
        label=_("File"),
        required=False,
        help_text=_("PDF, images, text or CSV, Office or OpenDocument documents."),
    )
    url = forms.URLField(
        label=_("Or a link"),
        required=False,
        max_length=1000,
        assume_scheme="https",
        help_text=_("A document published elsewhere (http or https)."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if bool(data.get("file")) == bool(data.get("url")):
            raise ValidationError(_("Give a file or a link: one of the two."), code="file_or_link")
        return data


class OccurrenceForm(forms.Form):
    """Move one date of a series, or cancel it (with a message to registrants)."""

    ACTIONS = (("move", _("Move this date")), ("cancel", _("Cancel this date")))

    action = forms.ChoiceField(label=_("Change"), choices=ACTIONS, widget=forms.RadioSelect)
    starts_at = LocalDateTimeField(label=_("New start (local time)"), required=False)
    ends_at = LocalDateTimeField(label=_("New end (local time)"), required=False)
    message = forms.CharField(
        label=_("Message to registrants"),
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=2000,
        help_text=_("Sent with a cancellation to everyone registered or waitlisted."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == "move":
            for name in ("starts_at", "ends_at"):
                if data.get(name) is None and name not in self.errors:
                    self.add_error(name, _("A moved date needs a new start and end."))
        return data


class AttendanceForm(forms.Form):
    ATTENDED = (("yes", _("Attended")), ("no", _("Absent")), ("unknown", _("Unknown")))

    member = forms.IntegerField(widget=forms.HiddenInput)
    attended = forms.ChoiceField(choices=ATTENDED)

    def attended_value(self) -> bool | None:
        return {"yes": True, "no": False, "unknown": None}[self.cleaned_data["attended"]]


class CalendarFilterForm(forms.Form):
    """The GET filters of the calendar views; an unknown value is an error shown on the page.

    Applied with the form's button, not on `change`: arrow keys on a closed select fire
    `change` at each step in Chromium, so a keyboard user would leave the page at the first
    press (WCAG 3.2.2, on input).
    """

    working_group = forms.ModelChoiceField(
        label=_("Working group"),
        queryset=WorkingGroup.objects.order_by("number"),
        to_field_name="slug",
        required=False,
        empty_label=_("All groups"),
        widget=Select(),
    )
    kind = forms.ChoiceField(label=_("Kind"), required=False, widget=Select())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [("", _("All kinds")), *Event.Kind.choices]

    def filters(self) -> dict[str, str | None]:
        if not self.is_valid():
            return {"working_group": None, "kind": None}
        group = self.cleaned_data.get("working_group")
        return {
            "working_group": group.slug if group else None,
            "kind": self.cleaned_data.get("kind") or None,
        }
