"""Drop the plain index on Notification.recipient: the unique (recipient, occurrence_key) index
leads with the same column and serves every lookup by recipient (docs/performance.md, H4).

Only the index goes: Django's own AlterField would drop and re-add the foreign key too, which
re-checks every row of the table under a lock.
"""

from django.conf import settings
from django.db import migrations, models

# Django's name for the index of notifications_notification.recipient_id (0001_initial).
INDEX = "notifications_notification_recipient_id_d055f3f0"


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_notification_note"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="notification",
                    name="recipient",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.CASCADE,
                        related_name="notifications",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{INDEX}" '
                    'ON "notifications_notification" ("recipient_id")',
                ),
            ],
        ),
    ]
