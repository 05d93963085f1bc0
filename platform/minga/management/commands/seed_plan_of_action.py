from typing import Any

from django.core.management.base import BaseCommand

from community.models import Topic, WorkingGroup
from community.seeding import seed_working_groups
from forums.models import Room
from forums.services import rooms_ensure_for_topics


class Command(BaseCommand):
    help = (
        "Create the working groups wg1 and wg2 of the 2007 Plan of Action with their chairs, "
        "vice-chairs and 25 topics, and one forum room per topic. Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = seed_working_groups()
        rooms = rooms_ensure_for_topics()
        self.stdout.write(
            f"Plan of Action: {WorkingGroup.objects.count()} working groups, "
            f"{Topic.objects.count()} topics, {Room.objects.filter(topic__isnull=False).count()} "
            f"topic rooms ({report.working_groups_created} groups, {report.topics_created} topics, "
            f"{rooms} rooms created; {report.topics_updated} topics updated)."
        )
