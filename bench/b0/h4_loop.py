"""B0 for H4: `python -m bench.b0.h4_loop RECIPIENTS`, the textbook notification fan-out.

"A loop that creates one row and does one group_send per recipient" (issue 6): for each of
user ids 1..RECIPIENTS, `Notice.objects.create(...)` (autocommit: one transaction per row) and
`async_to_sync(channel_layer.group_send)("user_<id>", ...)`, as the Channels docs show for
sending from synchronous code. The table is made first (`migrate --run-syncdb`), outside the
timing. Prints JSON with the monotonic clock at the start and at the end.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time


def main(recipients: int) -> dict[str, float | int]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.b0.h4_settings")
    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer  # noqa: TID251 - B0 is not Minga
    from django.core.management import call_command

    from bench.b0.models import Notice

    call_command("migrate", run_syncdb=True, verbosity=0, stdout=io.StringIO())
    Notice.objects.all().delete()
    channel_layer = get_channel_layer()
    title = "Announcement: Plenary moved to Thursday"
    body = "The plenary of the working group moves to Thursday, 10:00, room B. " * 2
    started = time.monotonic()
    for user_id in range(1, recipients + 1):
        notice = Notice.objects.create(recipient_id=user_id, title=title, body=body)
        async_to_sync(channel_layer.group_send)(
            f"user_{user_id}",
            {
                "type": "notify.message",
                "notification": {
                    "id": notice.pk,
                    "title": notice.title,
                    "body": notice.body,
                    "created": notice.created.isoformat(),
                },
            },
        )
    ended = time.monotonic()
    return {"started": started, "ended": ended, "rows": Notice.objects.count()}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
