"""Celery tasks of the community app (beat runs them, see CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from importlib import import_module

from celery import shared_task
from django.conf import settings


@shared_task(name="community.sessions_clear_task")
def sessions_clear_task() -> None:
    """Daily: delete expired sessions, as Django's `clearsessions` does: every sign-in writes a
    row (minga.sessions keeps Django's database engine) that outlives its expiry until something
    deletes it. The engine's own `clear_expired` does the work, whichever engine is configured."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
