from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = _("Notifications")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()
        # What a member's sockets missed while Redis was away, replayed once it is back.
        from . import bus, recovery

        bus.recover_with(recovery.recover_members)
        # Register the tasks and their beat schedule with the project's Celery app.
        from . import tasks  # noqa: F401
