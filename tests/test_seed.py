"""seed_plan_of_action: the two working groups of 2007, their 25 topics and rooms, idempotent."""

from io import StringIO

import pytest
from django.core.management import call_command

from community.models import Coordinator, Topic, WorkingGroup
from forums.models import Room

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_plan_of_action", stdout=out)
    return out.getvalue()


def test_seed_creates_groups_topics_and_rooms() -> None:
    seed()

    assert list(WorkingGroup.objects.values_list("slug", "number")) == [("wg1", 1), ("wg2", 2)]
    assert Topic.objects.filter(working_group__slug="wg1").count() == 11
    assert Topic.objects.filter(working_group__slug="wg2").count() == 14
    slugs = list(
        Room.objects.order_by("working_group__number", "slug").values_list("slug", flat=True)
    )
    assert slugs == [f"wg1-{c}" for c in "abcdefghijk"] + [f"wg2-{c}" for c in "abcdefghijklmn"]


def test_seed_records_chairs_and_vice_chairs_by_country() -> None:
    seed()

    coordinators = [
        (c.working_group.slug, c.role, c.country.code)
        for c in Coordinator.objects.select_related("working_group").order_by(
            "working_group__number", "position"
        )
    ]
    assert coordinators == [
        ("wg1", "chair", "BR"),
        ("wg1", "vice_chair", "US"),
        ("wg1", "vice_chair", "GY"),
        ("wg2", "chair", "SV"),
        ("wg2", "vice_chair", "UY"),
        ("wg2", "vice_chair", "CA"),
    ]


def test_seed_keeps_the_full_text_of_each_activity() -> None:
    seed()

    topic = Topic.objects.get(working_group__slug="wg2", letter="h")
    assert "Mar del Plata commitment to eradicate the worst forms of child labor" in topic.text
    assert WorkingGroup.objects.get(slug="wg1").title.startswith("Decent work as an instrument")
    assert (
        Room.objects.get(slug="wg1-b").topic.title == "Migration and the rights of migrant workers"
    )


def test_seed_is_idempotent() -> None:
    seed()
    before = (
        WorkingGroup.objects.count(),
        Topic.objects.count(),
        Room.objects.count(),
        Coordinator.objects.count(),
        list(Room.objects.values_list("pk", flat=True)),
    )

    output = seed()

    after = (
        WorkingGroup.objects.count(),
        Topic.objects.count(),
        Room.objects.count(),
        Coordinator.objects.count(),
        list(Room.objects.values_list("pk", flat=True)),
    )
    assert after == before == (2, 25, 25, 6, before[4])
    assert "0 groups, 0 topics, 0 rooms created" in output


def test_seed_restores_edited_text() -> None:
    seed()
    Topic.objects.filter(working_group__slug="wg1", letter="a").update(title="edited")

    output = seed()

    assert Topic.objects.get(working_group__slug="wg1", letter="a").title.startswith("Coordination")
    assert "1 topics updated" in output


def test_seed_restores_coordinators_and_group_text() -> None:
    seed()
    WorkingGroup.objects.filter(slug="wg2").update(title="edited")
    Coordinator.objects.filter(working_group__slug="wg1", country="BR").update(position=9)
    Coordinator.objects.create(
        working_group=WorkingGroup.objects.get(slug="wg1"), country="AR", role="vice_chair"
    )

    seed()

    assert WorkingGroup.objects.get(slug="wg2").title.startswith("Strengthening")
    assert list(
        Coordinator.objects.filter(working_group__slug="wg1").values_list("country", "position")
    ) == [("BR", 0), ("US", 1), ("GY", 2)]


def test_seed_refuses_a_topic_room_slug_already_taken_and_creates_no_room() -> None:
    from django.core.exceptions import ValidationError

    Room.objects.create(slug="wg1-c", title="An event's live room")

    with pytest.raises(ValidationError) as excinfo:
        seed()

    assert "wg1-c" in str(excinfo.value)
    assert list(Room.objects.values_list("slug", flat=True)) == ["wg1-c"]


def test_seed_reads_and_writes_in_a_fixed_number_of_queries(
    django_assert_max_num_queries: object,
) -> None:
    with django_assert_max_num_queries(20):  # type: ignore[operator]
        seed()
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        seed()
