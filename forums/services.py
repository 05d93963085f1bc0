"""Writes for the forums. Rooms here; threads and messages arrive with the forums issue."""

from __future__ import annotations

from django.db import transaction

from community.models import Topic

from .models import Room


def room_slug_for(topic: Topic) -> str:
    return f"{topic.working_group.slug}-{topic.letter}"


@transaction.atomic
def rooms_ensure_for_topics() -> int:
    """One room per topic, slug `wg1-a` ... `wg2-n`; returns how many were created."""
    created = 0
    for topic in Topic.objects.select_related("working_group").filter(room__isnull=True):
        room = Room(
            slug=room_slug_for(topic),
            title=topic.title,
            description=topic.text,
            working_group=topic.working_group,
            topic=topic,
        )
        room.full_clean()
        room.save()
        created += 1
    return created
