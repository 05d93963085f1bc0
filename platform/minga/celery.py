"""The Celery app: `celery -A minga worker` and `celery -A minga beat` (see the Procfile)."""

import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minga.settings")

app = Celery("minga")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
@worker_process_init.connect
def _freeze_startup(**_: object) -> None:
    """A worker's start-up objects out of the collector's walks, in the main process and in each
    pool child (minga.collector): its first task does not pay start-up's full collection."""
    from minga.collector import freeze_startup

    freeze_startup()
