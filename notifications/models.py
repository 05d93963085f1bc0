"""Inbox rows, per-kind preferences and per-member notification settings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

# What the inbox, the API and the live frame show of a row: its snippet and the start of its note.
PREVIEW_CHARS = 240


class Kind(models.TextChoices):
    MENTION = "mention", _("Mentions of me")
    REPLY = "reply", _("Replies to my messages")
    NEW_THREAD = "new_thread", _("New threads in rooms I follow")
    THREAD_MESSAGE = "thread_message", _("New messages in threads I follow")
    EVENT_SCHEDULED = "event_scheduled", _("Events scheduled in my working groups")
    EVENT_CHANGED = "event_changed", _("Changes to events I registered for")
    EVENT_CANCELLED = "event_cancelled", _("Cancellations of events I registered for")
    EVENT_REMINDER = "event_reminder", _("Reminders of events I registered for")
    REGISTRATION = "registration", _("My registrations")
    MODERATION = "moderation", _("Moderation outcomes")
    ANNOUNCEMENT = "announcement", _("Announcements to my working groups")


class EmailMode(models.TextChoices):
    IMMEDIATE = "immediate", _("Immediately")
    DAILY = "daily", _("Daily digest")
    WEEKLY = "weekly", _("Weekly digest")
    OFF = "off", _("Off")


class EmailState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    SUPPRESSED = "suppressed", _("Suppressed (read in the app first)")
    SKIPPED = "skipped", _("Skipped (email off)")


class Notification(models.Model):
    """One inbox row: one recipient, one occurrence of a happening.

    `occurrence_key` names the happening (e.g. "message:42:mention"); with the recipient it is
    unique, so a retried fan-out writes nothing twice.
    """

    # No index of its own: the unique (recipient, occurrence_key) index leads with it and serves
    # every lookup by recipient (inbox, digests, deleting a member); one index fewer per row.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    target_type = models.CharField(_("target type"), max_length=40)
    target_id = models.BigIntegerField(_("target id"))
    url = models.CharField(_("link"), max_length=500)
    # Context for grouping digests (working group, room): ids and names as they were.
    group_label = models.CharField(max_length=200, blank=True)
    title = models.CharField(_("title"), max_length=300)
    snippet = models.CharField(_("snippet"), max_length=500, blank=True)
    # The actor's own words to the recipients, in full (an organizer's message with a change or
    # a cancellation): the email carries all of it, the inbox the start (`preview`).
    note = models.TextField(_("note"), blank=True)
    created = models.DateTimeField(_("created"), db_index=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    # False when the member turned the kind off in the app but not by email: the row exists
    # only to carry the email, and the inbox and unread counts leave it out.
    in_app = models.BooleanField(default=True)
    email_mode = models.CharField(max_length=10, choices=EmailMode.choices)
    email_state = models.CharField(
        _("email state"), max_length=10, choices=EmailState.choices, default=EmailState.SKIPPED
    )
    # Immediate emails are not sent before this time (quiet hours hold them).
    email_due_at = models.DateTimeField(null=True, blank=True)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.CharField(max_length=300, blank=True)
    occurrence_key = models.CharField(max_length=120)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "occurrence_key"], name="notification_once_per_occurrence"
            )
        ]
        indexes = [
            models.Index(
                fields=["recipient"],
                name="notif_unread",
                condition=models.Q(read_at__isnull=True, in_app=True),
            ),
            models.Index(
                fields=["email_mode", "email_due_at"],
                name="notif_email_pending",
                condition=models.Q(email_state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient_id}: {self.title}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None

    @property
    def preview(self) -> str:
        """The snippet followed by the start of the note, on one line."""
        note = " ".join(self.note.split())
        if not note:
            return self.snippet
        text = f"{self.snippet} · {note}" if self.snippet else note
        return Truncator(text).chars(PREVIEW_CHARS)


class NotificationPreference(models.Model):
    """A member's choice for one kind; absent rows mean the defaults (preferences.DEFAULTS)."""

    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    in_app = models.BooleanField(_("in the app"), default=True)
    email = models.CharField(
        _("email"), max_length=10, choices=EmailMode.choices, default=EmailMode.DAILY
    )

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")
        constraints = [
            models.UniqueConstraint(fields=["member", "kind"], name="notification_pref_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.kind}: {self.in_app}/{self.email}"


class Weekday(models.IntegerChoices):
    MONDAY = 0, _("Monday")
    TUESDAY = 1, _("Tuesday")
    WEDNESDAY = 2, _("Wednesday")
    THURSDAY = 3, _("Thursday")
    FRIDAY = 4, _("Friday")
    SATURDAY = 5, _("Saturday")
    SUNDAY = 6, _("Sunday")


class NotificationSettings(models.Model):
    """Per-member settings: quiet hours (local time) and digest day; absent row = defaults."""

    member = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    quiet_start = models.TimeField(_("quiet hours start"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet hours end"), null=True, blank=True)
    digest_weekday = models.PositiveSmallIntegerField(
        _("weekly digest day"), choices=Weekday.choices, default=Weekday.MONDAY
    )

    class Meta:
        verbose_name = _("notification settings")
        verbose_name_plural = _("notification settings")

    def __str__(self) -> str:
        return f"settings of {self.member_id}"
