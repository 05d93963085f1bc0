"""Celery tasks of the events calendar (they fetch by id and call a service or a renderer).

Beat: `reminders_due_task` every minute (CELERY_BEAT_SCHEDULE, see docs/calendar.md).

Registrant e-mails (invitations, updates, cancellations with their .ics) are not sent here:
notifications e-mails them from the events signals, one pipeline for every e-mail.
"""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="events.reminders_due_task")
def reminders_due_task() -> int:
    """The beat sweep: emit `event_reminder_due` for every reminder that came due."""
    return len(services.reminders_send_due())
