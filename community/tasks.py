"""Celery tasks of the community app (beat runs them, see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from importlib import import_module

from celery import shared_task
from django.conf import settings
from django.utils import timezone


@shared_task(name="community.sessions_clear_task")
def sessions_clear_task() -> int:
    """Daily: delete expired sessions, as Django's `clearsessions` does for the database engine
    (minga.sessions): every sign-in writes a row that outlives its expiry until something
    deletes it. Returns how many were deleted."""
    model = import_module(settings.SESSION_ENGINE).SessionStore.get_model_class()
    deleted, _ = model.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
