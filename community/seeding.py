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

    Running it again changes nothing that is already right; text edits in the data win. A
    handful of queries whatever the data's size: every test that needs the Plan runs it.
    """
    report = SeedReport()
    groups = {wg.slug: wg for wg in WorkingGroup.objects.filter(slug__in=_slugs())}
    for data in WORKING_GROUPS:
        wg = groups.get(data["slug"])
        fields = {"number": data["number"], "title": data["title"], "mandate": data["mandate"]}
        if wg is None:
            groups[data["slug"]] = WorkingGroup.objects.create(slug=data["slug"], **fields)
            report.working_groups_created += 1
        elif any(getattr(wg, name) != value for name, value in fields.items()):
            for name, value in fields.items():
                setattr(wg, name, value)
            wg.save(update_fields=list(fields))
    _seed_coordinators(groups)
    _seed_topics(groups, report)
    return report


def _slugs() -> list[str]:
    return [data["slug"] for data in WORKING_GROUPS]


def _seed_coordinators(groups: dict[str, WorkingGroup]) -> None:
    existing = {
        (c.working_group_id, c.country.code): c
        for c in Coordinator.objects.filter(working_group__in=groups.values())
    }
    wanted: set[tuple[int, str]] = set()
    to_create, to_update = [], []
    for data in WORKING_GROUPS:
        wg = groups[data["slug"]]
        countries = [(data["chair"], CoordinatorRole.CHAIR)] + [
            (cc, CoordinatorRole.VICE_CHAIR) for cc in data["vice_chairs"]
        ]
        for position, (country, role) in enumerate(countries):
            wanted.add((wg.pk, country))
            coordinator = existing.get((wg.pk, country))
            if coordinator is None:
                to_create.append(
                    Coordinator(working_group=wg, country=country, role=role, position=position)
                )
            elif (coordinator.role, coordinator.position) != (role, position):
                coordinator.role, coordinator.position = role, position
                to_update.append(coordinator)
    Coordinator.objects.bulk_create(to_create)
    Coordinator.objects.bulk_update(to_update, ["role", "position"])
    stale = [c.pk for key, c in existing.items() if key not in wanted]
    if stale:
        Coordinator.objects.filter(pk__in=stale).delete()


def _seed_topics(groups: dict[str, WorkingGroup], report: SeedReport) -> None:
    existing = {
        (t.working_group_id, t.letter): t
        for t in Topic.objects.filter(working_group__in=groups.values())
    }
    to_create, to_update = [], []
    for data in WORKING_GROUPS:
        wg = groups[data["slug"]]
        for topic_data in data["topics"]:
            topic = existing.get((wg.pk, topic_data["letter"]))
            if topic is None:
                to_create.append(
                    Topic(
                        working_group=wg,
                        letter=topic_data["letter"],
                        title=topic_data["title"],
                        text=topic_data["text"],
                    )
                )
            elif (topic.title, topic.text) != (topic_data["title"], topic_data["text"]):
                topic.title, topic.text = topic_data["title"], topic_data["text"]
                to_update.append(topic)
    Topic.objects.bulk_create(to_create)
    Topic.objects.bulk_update(to_update, ["title", "text"])
    report.topics_created += len(to_create)
    report.topics_updated += len(to_update)
