"""`python manage.py run_periodic`: the beat schedule, run in this process (for `make run`).

Production runs `celery -A minga beat` and workers (Procfile). The embedded default has no
broker (no REDIS_URL: tasks run eagerly inside the process that calls them), so a beat process
would hand its tasks to nobody. This command runs Celery beat's own scheduler over the same
CELERY_BEAT_SCHEDULE and executes each due task here, one after the other (`Task.apply`): the
reminder sweep, the email sweep, the digests and the attachment purge. Every task is safe to run
twice, so the catch-up run at start-up (missed while nothing ran) and a second copy of this
command do no harm.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from celery import beat
from django.core.management.base import BaseCommand, CommandParser
from minga.celery import app


class InProcessScheduler(beat.Scheduler):
    """Beat's in-memory scheduler that runs each due task in this process, not via a broker."""

    @property
    def producer(self) -> None:  # type: ignore[override]
        # Nothing is published: no broker connection is opened, and none is needed.
        return None

    def apply_async(
        self, entry: beat.ScheduleEntry, producer: Any = None, advance: bool = True, **_: Any
    ) -> Any:
        entry = self.reserve(entry) if advance else entry
        task = self.app.tasks[entry.task]
        # throw=True: beat's apply_entry logs the failure and the schedule goes on.
        return task.apply(args=entry.args, kwargs=entry.kwargs, throw=True)


def run_all(scheduler: InProcessScheduler) -> dict[str, Any]:
    """Run every scheduled task once now; {entry name: result}."""
    return {
        name: scheduler.apply_async(entry, advance=True).get()
        for name, entry in sorted(scheduler.schedule.items())
    }


class Command(BaseCommand):
    help = (
        "Run the periodic tasks of CELERY_BEAT_SCHEDULE (reminders, email sweep, digests, "
        "attachment purge) in this process: the embedded default's stand-in for celery beat."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Run every scheduled task once, then exit."
        )
        parser.add_argument(
            "--max-interval",
            type=float,
            default=60.0,
            help="Longest sleep between two looks at the schedule, in seconds (default 60).",
        )

    def handle(self, *args: Any, once: bool, max_interval: float, **options: Any) -> None:
        # Imports every app's tasks module (autodiscovery), as a beat or worker process does.
        app.loader.import_default_modules()
        scheduler = InProcessScheduler(app=app, max_interval=max_interval)
        names = ", ".join(sorted(scheduler.schedule))
        self.stdout.write(f"Periodic tasks in this process: {names}")
        for name, result in run_all(scheduler).items():
            self.stdout.write(f"{name}: {result}")
        if once:
            return
        service = beat.Service(
            app, max_interval=max_interval, scheduler_cls=InProcessScheduler, remote_control=False
        )
        service.__dict__["scheduler"] = scheduler  # the one whose entries just ran

        def stop(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(0)

        # `make run` stops this process with SIGTERM when runserver ends.
        signal.signal(signal.SIGTERM, stop)
        service.start()
