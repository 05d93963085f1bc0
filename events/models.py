"""The events calendar: events (series), their agenda, registrations, reminders and feed tokens.

Times: an event stores what the organizer typed (the local wall-clock start date and time, a
duration and an IANA zone) and, derived from them on every write by the services, the UTC
instants `starts_at` / `ends_at` of its first occurrence. Recurrences expand from the local
wall-clock start in the event's zone, so a 10:00 meeting stays at 10:00 across DST changes.
The DST rule for local times that do not exist or happen twice is in docs/calendar.md and
events/recurrence.py.

Occurrences of a series are identified by their original start (an aware UTC instant computed
from the local start by that one rule): exdates, per-occurrence overrides and reminder
deliveries all use it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, URLValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone as dj_timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django_countries.fields import CountryField

from community.models import Topic, User, WorkingGroup, validate_timezone
from forums.models import Room

DEFAULT_REMINDER_OFFSETS_MINUTES: tuple[int, ...] = (24 * 60, 60)
MAX_REMINDER_OFFSET_MINUTES = 14 * 24 * 60


class Event(models.Model):
    class Kind(models.TextChoices):
        WORKSHOP = "workshop", _("Workshop")
        MEETING = "meeting", _("Meeting")
        FOCUS_SESSION = "focus_session", _("Focus session")
        CONFERENCE = "conference", _("Conference")
        WEBINAR = "webinar", _("Webinar")

    class Visibility(models.TextChoices):
        PUBLIC = "public", _("All members of the network")
        WORKING_GROUP = "working_group", _("Members of the working group only")

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", pgettext_lazy("event status", "Scheduled")
        CANCELLED = "cancelled", pgettext_lazy("event status", "Cancelled")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices, default=Kind.WORKSHOP)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True, help_text=_("Markdown."))
    # Sanitized HTML rendered from `description` by the services on every write.
    description_html = models.TextField(blank=True, editable=False)
    working_group = models.ForeignKey(
        WorkingGroup,
        verbose_name=_("working group"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="events",
        help_text=_("Empty for an event of the whole network."),
    )
    topics = models.ManyToManyField(
        Topic, verbose_name=_("topics"), blank=True, related_name="events"
    )
    organizers = models.ManyToManyField(
        User, verbose_name=_("organizers"), blank=True, related_name="organized_events"
    )
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    # What the organizer typed: the source of truth for times and recurrences.
    timezone = models.CharField(_("time zone"), max_length=64, validators=[validate_timezone])
    local_start_date = models.DateField(_("start date (local)"))
    local_start_time = models.TimeField(_("start time (local)"))
    duration = models.DurationField(
        _("duration"), validators=[MinValueValidator(timedelta(minutes=1))]
    )
    # Derived from the three fields above (first occurrence), for queries and display.
    starts_at = models.DateTimeField(_("starts"), db_index=True)
    ends_at = models.DateTimeField(_("ends"))

    venue = models.CharField(_("venue"), max_length=200, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    country = CountryField(_("country"), blank=True)
    online = models.BooleanField(_("online"), default=False)
    room = models.ForeignKey(
        Room,
        verbose_name=_("live room"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
    )

    capacity = models.PositiveIntegerField(
        _("capacity"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    registration_opens_at = models.DateTimeField(_("registration opens"), null=True, blank=True)
    registration_closes_at = models.DateTimeField(_("registration closes"), null=True, blank=True)
    visibility = models.CharField(
        _("visibility"), max_length=20, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    allow_observers = models.BooleanField(_("observers may register"), default=False)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.SCHEDULED
    )
    # RFC 5545 SEQUENCE: grows with every change that matters to a calendar (time, place,
    # status, title, recurrence).
    sequence = models.PositiveIntegerField(_("sequence"), default=0)

    # An RRULE value such as "FREQ=MONTHLY;BYDAY=3WE;UNTIL=20270630T000000Z" ("" = one-off).
    recurrence = models.CharField(_("recurrence rule"), max_length=500, blank=True)
    # Original starts (UTC ISO 8601, "2026-03-18T13:00:00+00:00") of occurrences taken out.
    exdates = models.JSONField(_("excluded occurrences"), default=list, blank=True)

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at", "pk"]
        verbose_name = _("event")
        verbose_name_plural = _("events")
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="event_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(registration_opens_at__isnull=True)
                | Q(registration_closes_at__isnull=True)
                | Q(registration_closes_at__gt=F("registration_opens_at")),
                name="event_registration_window_order",
            ),
        ]
        indexes = [models.Index(fields=["working_group", "starts_at"])]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        super().clean()
        errors: dict[str, ValidationError] = {}
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = ValidationError(
                _("The event must end after it starts."), code="end_before_start"
            )
        if (
            self.registration_opens_at
            and self.registration_closes_at
            and self.registration_closes_at <= self.registration_opens_at
        ):
            errors["registration_closes_at"] = ValidationError(
                _("Registration must close after it opens."), code="window_order"
            )
        if not isinstance(self.exdates, list) or not all(isinstance(x, str) for x in self.exdates):
            errors["exdates"] = ValidationError(
                _("Excluded occurrences must be a list of date-times."), code="invalid_exdates"
            )
        if errors:
            raise ValidationError(errors)

    @property
    def is_cancelled(self) -> bool:
        return self.status == self.Status.CANCELLED

    @property
    def is_recurring(self) -> bool:
        return bool(self.recurrence)

    @property
    def location(self) -> str:
        """Venue, city and country in one line, "Online" for an online-only event."""
        parts = [self.venue, self.city, str(self.country.name) if self.country else ""]
        text = ", ".join(p for p in parts if p)
        if self.online:
            return f"{text} ({_('online')})" if text else str(_("Online"))
        return text


class EventOccurrenceOverride(models.Model):
    """A change to one occurrence of a series: moved (new start/end) or cancelled."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="overrides")
    original_start = models.DateTimeField(_("original start"))
    starts_at = models.DateTimeField(_("new start"), null=True, blank=True)
    ends_at = models.DateTimeField(_("new end"), null=True, blank=True)
    cancelled = models.BooleanField(_("cancelled"), default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["original_start"]
        verbose_name = _("changed occurrence")
        verbose_name_plural = _("changed occurrences")
        constraints = [
            models.UniqueConstraint(
                fields=["event", "original_start"], name="occurrence_override_unique"
            ),
            models.CheckConstraint(
                condition=Q(cancelled=True)
                | (
                    Q(starts_at__isnull=False)
                    & Q(ends_at__isnull=False)
                    & Q(ends_at__gt=F("starts_at"))
                ),
                name="occurrence_override_moved_or_cancelled",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} @ {self.original_start:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        super().clean()
        if not self.cancelled:
            if self.starts_at is None or self.ends_at is None:
                raise ValidationError(
                    _("A moved occurrence needs a new start and end."), code="required"
                )
            if self.ends_at <= self.starts_at:
                raise ValidationError(
                    {
                        "ends_at": ValidationError(
                            _("The event must end after it starts."), code="end_before_start"
                        )
                    }
                )


class AgendaItem(models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="agenda_items")
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    title = models.CharField(_("title"), max_length=200)
    speakers = models.CharField(
        _("speakers"), max_length=300, blank=True, help_text=_("Names of speakers from outside.")
    )
    speaker_members = models.ManyToManyField(
        User, verbose_name=_("speakers (members)"), blank=True, related_name="agenda_items"
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    documents = models.ManyToManyField(
        "EventDocument", verbose_name=_("linked documents"), blank=True, related_name="agenda_items"
    )

    class Meta:
        ordering = ["event", "position", "starts_at"]
        verbose_name = _("agenda item")
        verbose_name_plural = _("agenda items")
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="agenda_item_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        super().clean()
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError(
                {
                    "ends_at": ValidationError(
                        _("The agenda item must end after it starts."), code="end_before_start"
                    )
                }
            )


class Registration(models.Model):
    class Status(models.TextChoices):
        REGISTERED = "registered", _("Registered")
        WAITLISTED = "waitlisted", _("Waitlisted")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="registrations")
    member = models.ForeignKey(User, on_delete=models.CASCADE, related_name="registrations")
    status = models.CharField(_("status"), max_length=12, choices=Status.choices)
    # Place on the waitlist (1 = next to be promoted); null unless waitlisted. Kept dense
    # (1..n) under the event row lock; no unique index, so the renumbering UPDATE after a
    # withdrawal cannot trip over its own intermediate rows.
    position = models.PositiveIntegerField(_("waitlist position"), null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    attended = models.BooleanField(_("attended"), null=True, blank=True)

    class Meta:
        ordering = ["event", "created", "pk"]
        verbose_name = _("registration")
        verbose_name_plural = _("registrations")
        constraints = [
            models.UniqueConstraint(fields=["event", "member"], name="registration_unique"),
            models.CheckConstraint(
                condition=Q(status="waitlisted", position__isnull=False)
                | (~Q(status="waitlisted") & Q(position__isnull=True)),
                name="registration_position_iff_waitlisted",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member} -> {self.event} ({self.status})"


class ReminderPreference(models.Model):
    """How long before each event a member is reminded; absent = the defaults (24 h and 1 h)."""

    member = models.OneToOneField(
        User, on_delete=models.CASCADE, related_name="reminder_preference"
    )
    offsets_minutes = models.JSONField(
        _("reminder offsets (minutes before)"), default=list, blank=True
    )

    class Meta:
        verbose_name = _("reminder preference")
        verbose_name_plural = _("reminder preferences")

    def __str__(self) -> str:
        return f"{self.member}: {self.offsets_minutes}"

    def clean(self) -> None:
        super().clean()
        values = self.offsets_minutes
        if (
            not isinstance(values, list)
            or len(values) > 5
            or not all(
                isinstance(v, int)
                and not isinstance(v, bool)
                and 0 < v <= MAX_REMINDER_OFFSET_MINUTES
                for v in values
            )
        ):
            raise ValidationError(
                {
                    "offsets_minutes": ValidationError(
                        _(
                            "Give up to 5 reminders, each a whole number of minutes between 1 "
                            "and %(max)s."
                        ),
                        code="invalid_offsets",
                        params={"max": MAX_REMINDER_OFFSET_MINUTES},
                    )
                }
            )
        self.offsets_minutes = sorted(set(values), reverse=True)


class ReminderDelivery(models.Model):
    """One reminder for one occurrence: the unique row makes the sweep idempotent.

    The sweep inserts the row (sent_at null), commits, emits `event_reminder_due`, then sets
    `sent_at`. A crash between the two leaves a row with sent_at null that the next sweep
    emits again (receivers dedupe on `delivery_id`); a second sweep never inserts a twin.
    """

    registration = models.ForeignKey(
        Registration, on_delete=models.CASCADE, related_name="reminder_deliveries"
    )
    offset_minutes = models.PositiveIntegerField()
    occurrence_start = models.DateTimeField()
    due_at = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "pk"]
        verbose_name = _("reminder delivery")
        verbose_name_plural = _("reminder deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["registration", "offset_minutes", "occurrence_start"],
                name="reminder_delivery_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.registration} -{self.offset_minutes}m @ {self.occurrence_start}"


def _feed_token_for(member_id: int, salt: str) -> str:
    # Derived, not stored: a database dump alone does not reveal any feed URL, yet the server
    # can show the member their URL again (`calendar_feed_url` in /api/v1/me/). 256 bits.
    digest = hmac.new(
        settings.SECRET_KEY.encode(),
        f"minga-calendar-feed:{member_id}:{salt}".encode(),
        hashlib.sha256,
    ).hexdigest()
    return digest


class CalendarFeedToken(models.Model):
    """The one active private-feed token of a member; regenerating replaces salt and hash."""

    member = models.OneToOneField(
        User, on_delete=models.CASCADE, related_name="calendar_feed_token"
    )
    salt = models.CharField(max_length=64, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("calendar feed token")
        verbose_name_plural = _("calendar feed tokens")

    def __str__(self) -> str:
        return f"{self.member} ({self.created:%Y-%m-%d})"

    @staticmethod
    def hash_token(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    def renew(self) -> str:
        """New salt and hash (the old URL stops working once saved); returns the raw token."""
        self.salt = secrets.token_hex(16)
        raw = _feed_token_for(self.member_id, self.salt)
        self.token_hash = self.hash_token(raw)
        return raw

    @property
    def raw_token(self) -> str:
        return _feed_token_for(self.member_id, self.salt)


def event_document_storage_name(instance: EventDocument, filename: str) -> str:
    """A generated storage name: the organizer's file name never reaches the file system."""
    return f"event-documents/{dj_timezone.now():%Y/%m}/{uuid.uuid4().hex}"


class EventDocument(models.Model):
    """A document of an event: an uploaded file or a link to one elsewhere (exactly one).

    An uploaded file lives in default storage under a generated name; its `content_type` is
    what the content was sniffed as (forums.attachments, the same allow-list and size limit as
    forum attachments), `original_name` (sanitized) is only shown and sent in
    Content-Disposition. Served only to members who may see the event, as a download.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(_("title"), max_length=200)
    file = models.FileField(
        _("file"), upload_to=event_document_storage_name, max_length=255, blank=True
    )
    # A CharField with the URL validator (not URLField): only http and https, one error.
    url = models.CharField(
        _("link"), max_length=1000, blank=True, validators=[URLValidator(schemes=["http", "https"])]
    )
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    content_type = models.CharField(_("content type"), max_length=100, blank=True)
    size = models.PositiveBigIntegerField(_("size (bytes)"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    uploaded_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    created = models.DateTimeField(_("added"), default=dj_timezone.now)

    class Meta:
        ordering = ["event", "position", "pk"]
        verbose_name = _("event document")
        verbose_name_plural = _("event documents")
        constraints = [
            models.CheckConstraint(
                condition=(Q(file="") & ~Q(url="")) | (~Q(file="") & Q(url="")),
                name="event_document_file_xor_url",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_link(self) -> bool:
        return bool(self.url)
