"""Idempotent loading of the Plan of Action's working groups, coordinators and topics."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from .models import Coordinator, CoordinatorRole, Topic, WorkingGroup
from .plan_of_action import WORKING_GROUPS


@dataclass
class SeedReport:
    working_groups_created: int = 0
    topics_created: int = 0
    topics_updated: int = 0


@transaction.atomic
def seed_working_groups() -> SeedReport:
    """Create or update wg1 and wg2, their chairs and vice-chairs and their 25 topics.

    Running it again changes nothing that is already right; text edits in the data win.
    """
    report = SeedReport()
    for data in WORKING_GROUPS:
        wg, created = WorkingGroup.objects.update_or_create(
            slug=data["slug"],
            defaults={"number": data["number"], "title": data["title"], "mandate": data["mandate"]},
        )
        report.working_groups_created += created
        countries = [(data["chair"], CoordinatorRole.CHAIR)] + [
            (cc, CoordinatorRole.VICE_CHAIR) for cc in data["vice_chairs"]
        ]
        for position, (country, role) in enumerate(countries):
            Coordinator.objects.update_or_create(
                working_group=wg, country=country, defaults={"role": role, "position": position}
            )
        Coordinator.objects.filter(working_group=wg).exclude(
            country__in=[cc for cc, _ in countries]
        ).delete()
        for topic_data in data["topics"]:
            topic, created = Topic.objects.get_or_create(
                working_group=wg,
                letter=topic_data["letter"],
                defaults={"title": topic_data["title"], "text": topic_data["text"]},
            )
            if created:
                report.topics_created += 1
            elif (topic.title, topic.text) != (topic_data["title"], topic_data["text"]):
                topic.title, topic.text = topic_data["title"], topic_data["text"]
                topic.save(update_fields=["title", "text"])
                report.topics_updated += 1
    return report
