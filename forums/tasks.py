"""Celery tasks of the forums (they call a service; beat runs them, see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from . import services

# An upload not posted within a day is abandoned (a closed tab, a refused post): a member
# writing a long message keeps their files for that long.
UNPOSTED_GRACE = timedelta(days=1)


@shared_task(name="forums.attachments_purge_task")
def attachments_purge_task() -> int:
    """Daily: delete files nobody can download again (services.attachments_purge)."""
    return services.attachments_purge(unposted_before=timezone.now() - UNPOSTED_GRACE)
