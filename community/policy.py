"""Who may do what: the one policy every transport (HTML, API, socket) asks.

The table in docs/permissions.md is this module in prose, and tests/test_policy.py checks every
role against every action from the same table. Rules, from the Plan of Action (paragraph 4):
participation in the working groups is open to all member states and to the workers' and
employers' advisory bodies; the technical secretariat (staff) supports everything and may do
everything; chairs and vice-chairs coordinate their group (organize its events, moderate its
rooms, manage its members); observers read but do not post.

Functions take anything shaped like a member (`AbstractBaseUser | AnonymousUser`) and objects
with `working_group_id` (rooms, events), so `community` never imports `forums` or `events`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Protocol

from django.db import connection
from minga import rows

from .models import ORGANIZER_ROLES, POSTING_ROLES, Membership, Organization, Role

_ROLES_CACHE = "_minga_roles"
_ORGANIZED_CACHE = "_minga_organized_events"
# An event's own live room is the room `event-<id>` linked from it (events.services.live_room_slug).
EVENT_ROOM_PREFIX = "event-"


class InWorkingGroup(Protocol):
    working_group_id: int | None


class RoomLike(InWorkingGroup, Protocol):
    state: str
    visibility: str


class EventLike(InWorkingGroup, Protocol):
    """An event (events.models.Event): its id and its `organizers` (a many-to-many manager)."""

    pk: Any
    organizers: Any


# Room visibilities (forums.models.Room.Visibility; community does not import forums).
NETWORK_VISIBILITY = "network"
WORKING_GROUP_VISIBILITY = "working_group"


def is_participant(member: Any) -> bool:
    """Signed in, active and with a verified email address: the floor for everything."""
    return bool(
        member is not None
        and member.is_authenticated
        and member.is_active
        and getattr(member, "is_verified", False)
    )


def is_secretariat(member: Any) -> bool:
    return is_participant(member) and bool(member.is_staff)


def roles_of(member: Any) -> dict[int, str]:
    """{working_group_id: role}, read once per member object (one query) and cached on it.

    The query is written once (minga.rows), not compiled: `member.memberships` carried the
    model's ordering, a join of two more tables, compiled for every request that asks a role
    and for every gateway post, where it cost 0.7-1.0 ms of CPU (docs/performance.md, "The
    roles read")."""
    if not member.is_authenticated:
        return {}
    cached = getattr(member, _ROLES_CACHE, None)
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute(_roles_read(), [rows.param(Membership, "member_id", member.pk)])
            cached = dict(cursor.fetchall())
        setattr(member, _ROLES_CACHE, cached)
    return cached


def remember_roles(member: Any, roles: Iterable[tuple[int, str]]) -> None:
    """Cache `roles` ((working_group_id, role) pairs, read with the member in the same
    statement) on `member`, as roles_of would have read them: for a hot read that fetches the
    member and its memberships at once (forums.selectors.member_and_thread)."""
    setattr(member, _ROLES_CACHE, dict(roles))


@functools.cache
def _roles_read() -> str:
    ms = rows.table(Membership)
    return (
        f"SELECT {rows.column(Membership, 'working_group_id')}, "  # noqa: S608 - names from the model
        f"{rows.column(Membership, 'role')} FROM {ms} "
        f"WHERE {rows.column(Membership, 'member_id')} = %s "
        f"ORDER BY {rows.column(Membership, 'working_group_id')}"
    )


def roles_known(member: Any) -> bool:
    """Are `member`'s roles cached on it (roles_of or remember_roles), so asking costs no query?"""
    return getattr(member, _ROLES_CACHE, None) is not None


@functools.cache
def roles_subquery(vendor: str) -> str | None:
    """A scalar subquery of every role of the member `%s` in one text value (`parse_roles`
    reads it), for a statement that reads something else anyway: a post reads its author's
    roles with its checks under the room's lock (forums.services._post_checks), a round trip
    fewer than `roles_of`. None for a database without a string aggregate known here (the
    caller then asks `roles_of`)."""
    aggregate = {"postgresql": "string_agg", "sqlite": "group_concat"}.get(vendor)
    if aggregate is None:
        return None
    ms = rows.table(Membership)
    group, role = rows.column(Membership, "working_group_id"), rows.column(Membership, "role")
    return (
        f"(SELECT {aggregate}(CAST(ms.{group} AS TEXT) || ':' || ms.{role}, ',') "  # noqa: S608 - names from the model
        f"FROM {ms} ms WHERE ms.{rows.column(Membership, 'member_id')} = %s)"
    )


def parse_roles(value: str | None) -> list[tuple[int, str]]:
    """The (working_group_id, role) pairs of a `roles_subquery` value (NULL: no membership).
    Roles are Role's values, which hold neither ',' nor ':'."""
    if not value:
        return []
    pairs = []
    for item in value.split(","):
        group, _colon, role = item.partition(":")
        pairs.append((int(group), role))
    return pairs


def forget_roles(member: Any) -> None:
    """Call after changing a member's memberships (or the events they co-organize) so the next
    check reads them again."""
    for cache in (_ROLES_CACHE, _ORGANIZED_CACHE):
        if hasattr(member, cache):
            delattr(member, cache)


def organized_events_of(member: Any) -> dict[int, int | None]:
    """{event_id: linked room_id} of the events listing `member` among their organizers (the
    creator and the co-organizers), read once per member object (one query) and cached on it.
    Only the live-room rules ask it: event rules read the event's own `organizers`."""
    if not member.is_authenticated:
        return {}
    cached = getattr(member, _ORGANIZED_CACHE, None)
    if cached is None:
        cached = dict(member.organized_events.values_list("pk", "room_id"))
        setattr(member, _ORGANIZED_CACHE, cached)
    return cached


def role_in(member: Any, working_group_id: int | None) -> str | None:
    if working_group_id is None:
        return None
    return roles_of(member).get(working_group_id)


def is_organizer_of(member: Any, working_group_id: int | None) -> bool:
    return is_participant(member) and role_in(member, working_group_id) in ORGANIZER_ROLES


def is_organizer(member: Any) -> bool:
    """Chair or vice-chair of at least one working group, or secretariat."""
    return is_secretariat(member) or (
        is_participant(member) and any(r in ORGANIZER_ROLES for r in roles_of(member).values())
    )


# --- Rooms ------------------------------------------------------------------------------------


def organizes_event_room(member: Any, room: RoomLike) -> bool:
    """`room` is the own live room (`event-<id>`, linked from the event) of an event `member`
    organizes (Event.organizers). A topic room linked from an event is shared with the rest of
    its group and is not one. Only a room named `event-...` reads the member's organized events
    (one query, then cached on the member)."""
    slug = str(getattr(room, "slug", ""))
    if not slug.startswith(EVENT_ROOM_PREFIX) or not is_participant(member):
        return False
    event_id = slug.removeprefix(EVENT_ROOM_PREFIX)
    if not event_id.isdigit():
        return False
    organized = organized_events_of(member)
    return int(event_id) in organized and organized[int(event_id)] == getattr(room, "pk", None)


def can_read_room(member: Any, room: RoomLike) -> bool:
    """A network room (every topic room, archived ones included) is open to every participant;
    a working-group room to the members of its group (any role, observers included), the
    secretariat and, for an event's own live room, the event's organizers. Only a working-group
    room reads the member's roles (one query, then cached)."""
    if not is_participant(member):
        return False
    if getattr(room, "visibility", NETWORK_VISIBILITY) != WORKING_GROUP_VISIBILITY:
        return True
    return (
        bool(member.is_staff)
        or role_in(member, room.working_group_id) is not None
        or organizes_event_room(member, room)
    )


def can_moderate_room(member: Any, room: RoomLike) -> bool:
    """The secretariat, the chairs and vice-chairs of the room's group (organizer roles are
    roles in the group, so they read its rooms) and, in an event's own live room only, that
    event's organizers (co-organizers included)."""
    return (
        is_secretariat(member)
        or is_organizer_of(member, room.working_group_id)
        or organizes_event_room(member, room)
    )


def can_post_in_room(member: Any, room: RoomLike) -> bool:
    """Members of the room's group post while it is open; moderators also when it is locked."""
    if not can_read_room(member, room) or room.state == "archived":
        return False
    if can_moderate_room(member, room):
        return True
    if room.state != "open":
        return False
    if room.working_group_id is None:
        # A room of the whole network (an event's live room): any non-observer participant.
        return any(r in POSTING_ROLES for r in roles_of(member).values())
    return role_in(member, room.working_group_id) in POSTING_ROLES


# --- Working groups and members ---------------------------------------------------------------


def can_organize_events(member: Any, working_group_id: int | None) -> bool:
    """Chairs and vice-chairs for their group; network-wide events are the secretariat's."""
    return is_secretariat(member) or is_organizer_of(member, working_group_id)


# --- One event --------------------------------------------------------------------------------
#
# Rights over ONE event (Indico's event managers): whoever organizes events of its working group
# by role (chairs and vice-chairs; the secretariat, alone for network-wide events), and the
# members the event lists as its organizers (its creator and its co-organizers, Event.organizers)
# while they are active participants. Listed organizers manage that event only: edit it (details,
# agenda, documents, dates, cancel), create its live room and moderate it, see its attendee list,
# mark attendance and write to its registrants (the message of a change or a cancellation).
# Naming or removing co-organizers, moving the event to another group and scheduling new events
# (duplicating included) stay with the roles: a co-organizer cannot hand on rights it was given.


def is_event_organizer(member: Any, event: EventLike) -> bool:
    """`member` is an active participant listed in `event.organizers` (creator or co-organizer).
    Reads `event.organizers.all()`: prefetch it where many events are asked (access functions
    do); one query otherwise."""
    if not is_participant(member) or event.pk is None:
        return False
    return any(person.pk == member.pk for person in event.organizers.all())


def can_manage_event(member: Any, event: EventLike) -> bool:
    """Every organizer action on THIS event (see the block above). Role holders first: their
    check needs no query beyond the member's cached roles."""
    return can_organize_events(member, event.working_group_id) or is_event_organizer(member, event)


def can_name_co_organizers(member: Any, event: EventLike) -> bool:
    """Change who co-organizes `event`: by role only (chairs and vice-chairs of its group, the
    secretariat), never a listed co-organizer (rights are handed on by those who hold them)."""
    return can_organize_events(member, event.working_group_id)


def can_manage_members(member: Any, working_group_id: int | None) -> bool:
    return is_secretariat(member) or is_organizer_of(member, working_group_id)


def can_invite(member: Any) -> bool:
    """The secretariat and the organizers invite new members (to groups they coordinate)."""
    return is_organizer(member)


def can_use_admin(member: Any) -> bool:
    return is_secretariat(member)


def joining_role(member: Any) -> str | None:
    """The role a participant gets by joining a group themselves, or None if they may not.

    Member states and both advisory bodies participate by right; everyone else (international
    organizations, members without an organization) joins as an observer until a chair says more.
    """
    if not is_participant(member):
        return None
    org: Organization | None = member.organization
    if member.is_staff or (
        org is not None
        and org.kind
        in {Organization.Kind.MINISTRY, Organization.Kind.WORKERS, Organization.Kind.EMPLOYERS}
    ):
        return Role.MEMBER
    return Role.OBSERVER
