"""Celery tasks of notifications: heavy fan-out, immediate email, the sweep and the digests.

Beat schedule (CELERY_BEAT_SCHEDULE in settings): the email sweep every 5 minutes, the digests
every hour at :05 (each member's digest goes at their local morning).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task

from . import email, recipients, services


def _when(now: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(now) if now else None


@shared_task(name="notifications.notify_task", acks_late=True)
def notify_task(
    *,
    kind: str,
    actor_id: int | None,
    target_type: str,
    target_id: int,
    url: str,
    occurrence_key: str,
    context: dict[str, Any],
    rule: dict[str, Any] | None = None,
    recipient_ids: list[int] | None = None,
) -> int:
    """The fan-out of `services.notify` for many recipients; safe to run twice (unique key).

    The recipients are a rule (`recipients.Rule.payload()`, resolved inside the fan-out's
    INSERT) or, from callers that resolved them already, their ids.
    """
    return services.write_notifications(
        kind=kind,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        url=url,
        occurrence_key=occurrence_key,
        recipient_ids=recipient_ids,
        rule=recipients.Rule.from_payload(rule) if rule is not None else None,
        context=context,
    )


@shared_task(bind=True, name="notifications.send_email_task", acks_late=True, max_retries=None)
def send_email_task(self: Any, notification_id: int) -> str:
    """Send one row's immediate email; transient errors retry with backoff (capped attempts)."""
    outcome = email.deliver(notification_id)
    if outcome == "retry":
        from .models import Notification

        attempts = (
            Notification.objects.filter(pk=notification_id)
            .values_list("email_attempts", flat=True)
            .first()
        ) or 1
        # The row keeps its own attempt count (the cap lives in email.deliver), so a lost
        # retry is recovered by the sweep with the same count.
        raise self.retry(countdown=email.backoff_seconds(attempts))
    return outcome


@shared_task(name="notifications.send_emails_task", acks_late=True)
def send_emails_task(notification_ids: list[int]) -> dict[str, int]:
    """Send the immediate emails of up to `services.EMAIL_TASK_SIZE` rows of one fan-out.

    Each row as `send_email_task` sends it (`email.deliver`: only while pending, under its row
    lock), so running this twice, or beside the sweep, sends nothing twice. A row that needs a
    retry gets its own `send_email_task` after its backoff; if that is lost, the sweep sends it.
    """
    outcomes: dict[str, int] = {}
    for pk in notification_ids:
        outcome = email.deliver(pk)
        if outcome == "retry":
            from .models import Notification

            attempts = (
                Notification.objects.filter(pk=pk).values_list("email_attempts", flat=True).first()
            ) or 1
            send_email_task.apply_async(args=[pk], countdown=email.backoff_seconds(attempts))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


@shared_task(name="notifications.email_sweep_task")
def email_sweep_task(now: str | None = None) -> dict[str, int]:
    return email.sweep(now=_when(now))


@shared_task(name="notifications.digest_task")
def digest_task(now: str | None = None) -> dict[str, int]:
    return email.digests_due(now=_when(now))
