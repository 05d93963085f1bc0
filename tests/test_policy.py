"""Every role against every action of community.policy, from one table (docs/permissions.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from community import policy
from community.models import Organization, Role, WorkingGroup
from forums.models import Room
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = [
    "anonymous",
    "unverified",
    "deactivated",
    "participant",
    "observer",
    "member",
    "vice_chair",
    "chair",
    "other_chair",
    "secretariat",
]

# action -> the roles allowed, for working group wg1 and its open room wg1-a unless said otherwise.
TABLE: dict[str, set[str]] = {
    "read room": {
        "participant",
        "observer",
        "member",
        "vice_chair",
        "chair",
        "other_chair",
        "secretariat",
    },
    "post in open room": {"member", "vice_chair", "chair", "secretariat"},
    "post in locked room": {"vice_chair", "chair", "secretariat"},
    "post in archived room": set(),
    "moderate room": {"vice_chair", "chair", "secretariat"},
    "organize wg1 events": {"vice_chair", "chair", "secretariat"},
    "organize network-wide events": {"secretariat"},
    "manage wg1 members": {"vice_chair", "chair", "secretariat"},
    "invite members": {"vice_chair", "chair", "other_chair", "secretariat"},
    "use admin": {"secretariat"},
}


def make(role: str, wg1: WorkingGroup, wg2: WorkingGroup) -> Any:
    if role == "anonymous":
        return AnonymousUser()
    if role == "unverified":
        return UserFactory(verified=False)
    if role == "deactivated":
        user = UserFactory(is_active=False)
        MembershipFactory(member=user, working_group=wg1, role=Role.CHAIR)
        return user
    if role == "secretariat":
        return UserFactory(is_staff=True)
    user = UserFactory()
    if role in {"observer", "member", "vice_chair", "chair"}:
        MembershipFactory(member=user, working_group=wg1, role=role)
    if role == "other_chair":
        MembershipFactory(member=user, working_group=wg2, role=Role.CHAIR)
    return user


def actions(wg1: WorkingGroup) -> dict[str, Callable[[Any], bool]]:
    room = Room.objects.get(slug="wg1-a")
    locked = Room(slug="x-locked", working_group=wg1, state=Room.State.LOCKED)
    archived = Room(slug="x-archived", working_group=wg1, state=Room.State.ARCHIVED)
    return {
        "read room": lambda m: policy.can_read_room(m, room),
        "post in open room": lambda m: policy.can_post_in_room(m, room),
        "post in locked room": lambda m: policy.can_post_in_room(m, locked),
        "post in archived room": lambda m: policy.can_post_in_room(m, archived),
        "moderate room": lambda m: policy.can_moderate_room(m, room),
        "organize wg1 events": lambda m: policy.can_organize_events(m, wg1.pk),
        "organize network-wide events": lambda m: policy.can_organize_events(m, None),
        "manage wg1 members": lambda m: policy.can_manage_members(m, wg1.pk),
        "invite members": policy.can_invite,
        "use admin": policy.can_use_admin,
    }


def test_policy_matches_the_table(plan: None) -> None:
    wg1, wg2 = WorkingGroup.objects.get(slug="wg1"), WorkingGroup.objects.get(slug="wg2")
    members = {role: make(role, wg1, wg2) for role in ROLES}

    found = {
        action: {role for role, member in members.items() if check(member)}
        for action, check in actions(wg1).items()
    }

    assert found == TABLE


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (Organization.Kind.MINISTRY, Role.MEMBER),
        (Organization.Kind.WORKERS, Role.MEMBER),
        (Organization.Kind.EMPLOYERS, Role.MEMBER),
        (Organization.Kind.INTERNATIONAL, Role.OBSERVER),
    ],
)
def test_joining_role_follows_the_plan_of_action(plan: None, kind: str, expected: str) -> None:
    # Participation is open to all member states and both advisory bodies (paragraph 4).
    member = UserFactory(organization=OrganizationFactory(name=f"org {kind}", kind=kind))

    assert policy.joining_role(member) == expected


def test_joining_role_is_none_for_anonymous_and_unverified(plan: None) -> None:
    assert policy.joining_role(AnonymousUser()) is None
    assert policy.joining_role(UserFactory(verified=False)) is None


def test_roles_are_read_once_per_member(plan: None, django_assert_num_queries: Any) -> None:
    wg1 = WorkingGroup.objects.get(slug="wg1")
    member = UserFactory()
    MembershipFactory(member=member, working_group=wg1, role=Role.MEMBER)
    room = Room.objects.get(slug="wg1-a")
    assert member.is_verified  # cached on the instance

    with django_assert_num_queries(1):
        for _ in range(3):
            policy.can_post_in_room(member, room)
            policy.can_moderate_room(member, room)


def test_role_change_is_seen_after_forget_roles(plan: None) -> None:
    wg1 = WorkingGroup.objects.get(slug="wg1")
    member = UserFactory()
    membership = MembershipFactory(member=member, working_group=wg1, role=Role.OBSERVER)
    room = Room.objects.get(slug="wg1-a")
    assert not policy.can_post_in_room(member, room)

    membership.role = Role.MEMBER
    membership.save()
    policy.forget_roles(member)

    assert policy.can_post_in_room(member, room)


def _both_one_none() -> tuple[Any, Any, Any]:
    """A member in both groups with different roles, one in one group, one in none."""
    wg1, wg2 = WorkingGroup.objects.get(slug="wg1"), WorkingGroup.objects.get(slug="wg2")
    both, one, none = UserFactory(), UserFactory(), UserFactory()
    MembershipFactory(member=both, working_group=wg2, role=Role.OBSERVER)
    MembershipFactory(member=both, working_group=wg1, role=Role.VICE_CHAIR)
    MembershipFactory(member=one, working_group=wg2, role=Role.CHAIR)
    return both, one, none


def test_roles_read_gives_the_memberships_as_the_orm_reads_them(plan: None) -> None:
    # Arrange
    both, one, none = _both_one_none()
    wg1, wg2 = WorkingGroup.objects.get(slug="wg1"), WorkingGroup.objects.get(slug="wg2")

    # Act
    found = [policy.roles_of(m) for m in (both, one, none)]

    # Assert: what the model's own relation holds, for each.
    assert found == [
        dict(m.memberships.values_list("working_group_id", "role")) for m in (both, one, none)
    ]
    assert found[0] == {wg1.pk: Role.VICE_CHAIR, wg2.pk: Role.OBSERVER}


def test_roles_subquery_gives_what_roles_of_reads(plan: None) -> None:
    # The one-value form a post reads with its checks (forums.services._post_checks), on this
    # run's database: the same pairs as roles_of for each member, NULL (none) for no membership.
    both, one, none = _both_one_none()
    subquery = policy.roles_subquery(connection.vendor)
    assert subquery is not None

    with connection.cursor() as cursor:
        values = []
        for member in (both, one, none):
            cursor.execute(f"SELECT {subquery}", [member.pk])
            values.append(cursor.fetchone()[0])

    assert values[2] is None
    assert [dict(policy.parse_roles(v)) for v in values] == [
        policy.roles_of(m) for m in (both, one, none)
    ]
    assert policy.roles_subquery("oracle") is None  # no aggregate known: roles_of reads them
