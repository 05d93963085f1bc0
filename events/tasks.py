"""Celery tasks of the events calendar (they fetch by id and call a service or a renderer).

Beat: `reminders_due_task` every minute (CELERY_BEAT_SCHEDULE, see docs/calendar.md).
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from community.models import User

from . import ical, services
from .models import Event

REASONS = {"invitation": "REQUEST", "update": "REQUEST", "cancel": "CANCEL"}


@shared_task(name="events.reminders_due_task")
def reminders_due_task() -> int:
    """The beat sweep: emit `event_reminder_due` for every reminder that came due."""
    return len(services.reminders_send_due())


@shared_task(
    name="events.event_email_task",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def event_email_task(*, event_id: int, member_ids: list[int], reason: str, message: str) -> int:
    """E-mail each member an invitation, update or cancellation with an .ics attachment.

    Each member's e-mail is rendered in their own language. Returns how many were sent.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    event = (
        Event.objects.select_related("working_group", "room")
        .prefetch_related("overrides", "organizers", "topics")
        .filter(pk=event_id)
        .first()
    )
    if event is None:
        return 0
    sent = 0
    for member in User.objects.filter(pk__in=member_ids, is_active=True).order_by("pk"):
        _send_one(event, member, reason, message)
        sent += 1
    return sent


def _send_one(event: Event, member: User, reason: str, message: str) -> None:
    method = REASONS[reason]
    attachment = ical.invitation_for(event, member=member, method=method)
    with translation.override(member.language):
        context = {
            "event": event,
            "member": member,
            "message": message,
            "reason": reason,
            "url": f"{ical.site_url()}/events/{event.pk}/",
        }
        subjects = {
            "invitation": _("Invitation: %(title)s"),
            "update": _("Updated: %(title)s"),
            "cancel": _("Cancelled: %(title)s"),
        }
        prefix = getattr(settings, "ACCOUNT_EMAIL_SUBJECT_PREFIX", "")
        # A title is one line in a subject, whatever the organizer typed.
        title = " ".join(event.title.split())
        subject = prefix + subjects[reason] % {"title": title}
        text = render_to_string(f"events/email/{reason}.txt", context)
        html = render_to_string(f"events/email/{reason}.html", context)
    email = EmailMultiAlternatives(subject, text, to=[member.email])
    email.attach_alternative(html, "text/html")
    email.attach("invite.ics", attachment, f"text/calendar; charset=utf-8; method={method}")
    email.send()
