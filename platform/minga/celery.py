"""The Celery app: `celery -A minga worker` and `celery -A minga beat` (see the Procfile)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minga.settings")

app = Celery("minga")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
