"""The fan-out by recipient rule: `notify_task` carries a rule ("members of working group G",
"registrants of event E"), and on PostgreSQL the rule's query runs inside the INSERT. It must
tell exactly whom the Python path (the rule's ids) tells, write the same columns, and keep
its queries per batch."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from community.models import Membership, Role, User, WorkingGroup
from events import services as event_services
from events.models import Registration
from notifications import recipients, services
from notifications.models import Notification, NotificationPreference, NotificationSettings
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # 10:00 in Lima, 16:00 in Paris
CONTEXT = {"title": "Plenary on Friday", "body": "Agenda attached.", "group_label": "WG1"}
SQL = connection.vendor == "postgresql"


def _write(*, key: str, rule: recipients.Rule | None = None, ids: list[int] | None = None) -> int:
    return services.write_notifications(
        kind="announcement",
        actor_id=None,
        target_type="community.workinggroup",
        target_id=1,
        url="/groups/wg1/",
        occurrence_key=key,
        recipient_ids=ids,
        rule=rule,
        context=CONTEXT,
        now=NOW,
    )


def _rows(key: str) -> list[dict[str, Any]]:
    rows = Notification.objects.filter(occurrence_key=key).order_by("recipient_id").values()
    return [{k: v for k, v in r.items() if k not in {"id", "occurrence_key"}} for r in rows]


@pytest.fixture
def matrix(plan: None) -> dict[str, User]:
    """Members of wg1 and others, in every position the rules and the preferences distinguish."""
    wg1 = WorkingGroup.objects.get(slug="wg1")
    wg2 = WorkingGroup.objects.get(slug="wg2")

    def member(name: str, *, group: WorkingGroup | None = wg1, **kwargs: Any) -> User:
        role = kwargs.pop("role", Role.MEMBER)
        user = UserFactory(handle=name, email=f"{name}@example.org", **kwargs)
        if group is not None:
            MembershipFactory(member=user, working_group=group, role=role)
        return user

    people = {
        "member": member("member", language="es", timezone="America/Lima"),
        "chair": member("chair", role=Role.CHAIR),
        "co_chair": member(
            "co_chair", role=Role.VICE_CHAIR, language="fr", timezone="Europe/Paris"
        ),
        "observer": member("observer", role=Role.OBSERVER),
        "inactive": member("inactive", is_active=False),
        "unverified": member("unverified", verified=False),
        "other_group": member("other_group", group=wg2),
        "no_group": member("no_group", group=None),
        "staff_no_group": member("staff_no_group", group=None, is_staff=True),
        "quiet": member("quiet", language="pt", timezone="America/Sao_Paulo"),
        "email_only": member("email_only"),
        "app_only": member("app_only"),
        "nothing": member("nothing"),
        "immediate": member("immediate"),
    }
    NotificationSettings.objects.create(
        member=people["quiet"], quiet_start=dt.time(11, 0), quiet_end=dt.time(13, 0)
    )
    for name, in_app, email in (
        ("email_only", False, "weekly"),
        ("app_only", True, "off"),
        ("nothing", False, "off"),
        ("immediate", True, "immediate"),
        ("quiet", True, "immediate"),
    ):
        NotificationPreference.objects.create(
            member=people[name], kind="announcement", in_app=in_app, email=email
        )
    return people


RULE_CASES = [
    ("wg1, chair excluded", "working_group_members", {"exclude": "chair"}),
    ("wg1, nobody excluded", "working_group_members", {}),
    ("the whole network", "network", {"exclude": "co_chair"}),
]


@pytest.mark.parametrize("case", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rule_in_sql_tells_whom_the_ids_path_tells(
    case: tuple[str, str, dict[str, str]], matrix: dict[str, User]
) -> None:
    # Arrange
    _name, which, args = case
    exclude = matrix[args["exclude"]].pk if "exclude" in args else None
    group = None if which == "network" else WorkingGroup.objects.get(slug="wg1").pk
    rule = recipients.working_group_members_rule(working_group_id=group, exclude=exclude)
    ids = recipients.working_group_members(working_group_id=group, exclude=exclude)

    # Act
    by_rule = _write(key="by-rule", rule=rule)
    by_ids = _write(key="by-ids", ids=ids)

    # Assert: the same rows, column by column; "nothing" (app and email off) has none.
    assert rule.ids() == ids
    assert (by_rule, _rows("by-rule")) == (by_ids, _rows("by-ids"))
    told = {r["recipient_id"] for r in _rows("by-rule")}
    assert told == set(ids) - {matrix["nothing"].pk}
    if which != "network":
        wanted = {"member", "chair", "co_chair", "observer", "quiet", "email_only", "app_only"}
        wanted |= {"immediate"}
        wanted -= {args.get("exclude", "")}
        assert told == {matrix[n].pk for n in wanted}


def test_rule_registrants_in_sql_tells_whom_the_ids_path_tells(
    matrix: dict[str, User], chair: User
) -> None:
    # Arrange: an event with registered, waitlisted and withdrawn members.
    start = timezone.now().replace(microsecond=0) + dt.timedelta(days=10)
    event = event_services.event_create(
        actor=chair,
        title="Workshop",
        starts_at=start,
        ends_at=start + dt.timedelta(hours=2),
        timezone="America/Lima",
        working_group=WorkingGroup.objects.get(slug="wg1"),
        capacity=None,
    )
    for name, status in (
        ("member", Registration.Status.REGISTERED),
        ("observer", Registration.Status.WAITLISTED),
        ("co_chair", Registration.Status.WITHDRAWN),
        ("unverified", Registration.Status.REGISTERED),
        ("immediate", Registration.Status.REGISTERED),
    ):
        position = 1 if status == Registration.Status.WAITLISTED else None
        Registration.objects.create(
            event=event, member=matrix[name], status=status, position=position
        )
    rule = recipients.Rule("registrants", {"event_id": event.pk, "exclude": matrix["immediate"].pk})

    # Act
    by_rule = _write(key="reg-rule", rule=rule)
    by_ids = _write(
        key="reg-ids", ids=recipients.registrants(event_id=event.pk, exclude=rule.args["exclude"])
    )

    # Assert
    assert (by_rule, _rows("reg-rule")) == (by_ids, _rows("reg-ids"))
    assert {r["recipient_id"] for r in _rows("reg-rule")} == {
        matrix["member"].pk,
        matrix["observer"].pk,
    }


def test_rule_rerun_writes_nothing(matrix: dict[str, User]) -> None:
    rule = recipients.working_group_members_rule(
        working_group_id=WorkingGroup.objects.get(slug="wg1").pk, exclude=None
    )

    first = _write(key="rerun", rule=rule)
    before = _rows("rerun")
    second = _write(key="rerun", rule=rule)

    assert (first, second, _rows("rerun")) == (len(before), 0, before)
    assert first > 0


def test_rule_with_no_members_writes_nothing(plan: None, django_assert_num_queries: Any) -> None:
    empty = WorkingGroup.objects.exclude(memberships__isnull=False).first()
    assert empty is not None
    rule = recipients.working_group_members_rule(working_group_id=empty.pk)

    with django_assert_num_queries(1):  # PostgreSQL: the combinations; else: the ids
        written = _write(key="empty", rule=rule)

    assert written == 0


def _bulk_members(n: int, group: WorkingGroup) -> list[int]:
    from allauth.account.models import EmailAddress

    start = User.objects.count()
    users = User.objects.bulk_create(
        [
            User(email=f"rule{start + i}@example.org", handle=f"rule{start + i}", name=f"R {i}")
            for i in range(n)
        ]
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in users]
    )
    Membership.objects.bulk_create(
        [Membership(member=u, working_group=group, role=Role.MEMBER) for u in users]
    )
    return [u.pk for u in users]


@pytest.mark.skipif(not SQL, reason="the rule runs inside the INSERT on PostgreSQL only")
@pytest.mark.parametrize("count", [1, 10, 1000])
def test_rule_queries_do_not_grow_with_recipients(
    count: int, plan: None, django_assert_num_queries: Any
) -> None:
    # Arrange: a group with `count` members only.
    group = WorkingGroup.objects.exclude(memberships__isnull=False).first()
    assert group is not None
    ids = _bulk_members(count, group)

    # Act / Assert: the combinations (1), then one batch: its savepoint pair (2) and the
    # INSERT ... SELECT with the rule inside (1).
    with django_assert_num_queries(1 + 3):
        written = _write(
            key="count", rule=recipients.working_group_members_rule(working_group_id=group.pk)
        )
    assert written == count
    assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == ids


@pytest.mark.skipif(not SQL, reason="the rule runs inside the INSERT on PostgreSQL only")
def test_rule_in_batches_takes_each_member_once(
    plan: None, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    # Arrange: batches of two over five members, one of whom already has the row.
    monkeypatch.setattr(services, "RULE_BATCH_SIZE", 2)
    group = WorkingGroup.objects.exclude(memberships__isnull=False).first()
    assert group is not None
    ids = _bulk_members(5, group)
    _write(key="batches", ids=[ids[2]])
    rule = recipients.working_group_members_rule(working_group_id=group.pk)

    # Act: the combinations (1), then three batches (2, 2, 1 members) of the same 3 queries.
    with django_assert_num_queries(1 + 3 * 3):
        written = _write(key="batches", rule=rule)

    # Assert
    assert written == 4
    assert (
        sorted(
            Notification.objects.filter(occurrence_key="batches").values_list(
                "recipient_id", flat=True
            )
        )
        == ids
    )


def test_notify_large_rule_queues_the_rule_not_the_ids(
    plan: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: a group over the inline threshold.
    from notifications.tasks import notify_task

    monkeypatch.setattr(services, "INLINE_FANOUT_MAX", 3)
    group = WorkingGroup.objects.exclude(memberships__isnull=False).first()
    assert group is not None
    ids = _bulk_members(5, group)  # four to tell: over the threshold
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(notify_task, "delay", lambda **kw: queued.append(kw))
    rule = recipients.working_group_members_rule(working_group_id=group.pk, exclude=ids[0])

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        inline = services.notify(
            kind="announcement",
            actor=None,
            target_type="community.workinggroup",
            target_id=group.pk,
            url="/",
            occurrence_key="large",
            rule=rule,
            context=CONTEXT,
        )
    notify_task.apply(kwargs=queued[0])  # what the worker runs

    # Assert: the task carries the rule; it tells the four others.
    assert inline == 0
    assert queued[0]["rule"] == {
        "name": "working_group_members",
        "args": {"working_group_id": group.pk, "exclude": ids[0]},
    }
    assert "recipient_ids" not in queued[0]
    assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == ids[1:]


def test_notify_small_rule_writes_inline(plan: None) -> None:
    group = WorkingGroup.objects.exclude(memberships__isnull=False).first()
    assert group is not None
    ids = _bulk_members(3, group)

    written = services.notify(
        kind="announcement",
        actor=None,
        target_type="community.workinggroup",
        target_id=group.pk,
        url="/",
        occurrence_key="small",
        rule=recipients.working_group_members_rule(working_group_id=group.pk),
        context=CONTEXT,
    )

    assert written == 3
    assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == ids


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: recipients.Rule("everyone_ever", {}), ValueError),
        (lambda: recipients.Rule("working_group_members", {"group": 1}), TypeError),
        (lambda: recipients.Rule.from_payload({"name": "registrants", "args": {}}), TypeError),
    ],
    ids=["unknown rule", "unknown argument", "missing argument"],
)
def test_bad_rule_is_refused_where_it_is_made(
    plan: None, build: Callable[[], recipients.Rule], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build()


@pytest.mark.parametrize("both", [True, False], ids=["both", "neither"])
def test_notify_takes_ids_or_a_rule(plan: None, both: bool) -> None:
    rule = recipients.working_group_members_rule(working_group_id=None) if both else None

    with pytest.raises(TypeError):
        services.notify(
            kind="announcement",
            actor=None,
            target_type="community.workinggroup",
            target_id=1,
            url="/",
            occurrence_key="bad",
            recipient_ids=[1] if both else None,
            rule=rule,
            context=CONTEXT,
        )

    assert Notification.objects.count() == 0


def test_scheduled_event_in_a_large_group_queues_the_rule(
    plan: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: the group's chair schedules an event for a group over the inline threshold.
    from notifications.tasks import notify_task

    monkeypatch.setattr(services, "INLINE_FANOUT_MAX", 3)
    group = WorkingGroup.objects.exclude(memberships__isnull=False).first()
    assert group is not None
    ids = _bulk_members(5, group)
    Membership.objects.filter(member_id=ids[0]).update(role=Role.CHAIR)
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(notify_task, "delay", lambda **kw: queued.append(kw))
    start = timezone.now() + dt.timedelta(days=7)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_create(
            actor=User.objects.get(pk=ids[0]),
            title="Focus session",
            working_group=group,
            starts_at=start,
            ends_at=start + dt.timedelta(hours=1),
            timezone="America/Lima",
        )
    tasks = [q for q in queued if q["kind"] == "event_scheduled"]
    notify_task.apply(kwargs=tasks[0])  # what the worker runs

    # Assert: the rule travels, not the ids; everyone but the chair is told.
    assert tasks[0]["rule"] == {
        "name": "working_group_members",
        "args": {"working_group_id": group.pk, "exclude": ids[0]},
    }
    told = Notification.objects.filter(kind="event_scheduled").values_list(
        "recipient_id", flat=True
    )
    assert sorted(told) == ids[1:]
