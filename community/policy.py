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

from typing import Any, Protocol

from .models import ORGANIZER_ROLES, POSTING_ROLES, Organization, Role

_ROLES_CACHE = "_minga_roles"


class InWorkingGroup(Protocol):
    working_group_id: int | None


class RoomLike(InWorkingGroup, Protocol):
    state: str
    visibility: str


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
    """{working_group_id: role}, read once per member object (one query) and cached on it."""
    if not member.is_authenticated:
        return {}
    cached = getattr(member, _ROLES_CACHE, None)
    if cached is None:
        cached = dict(member.memberships.values_list("working_group_id", "role"))
        setattr(member, _ROLES_CACHE, cached)
    return cached


def forget_roles(member: Any) -> None:
    """Call after changing a member's memberships so the next check reads them again."""
    if hasattr(member, _ROLES_CACHE):
        delattr(member, _ROLES_CACHE)


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


def can_read_room(member: Any, room: RoomLike) -> bool:
    """A network room (every topic room, archived ones included) is open to every participant;
    a working-group room to the members of its group (any role, observers included) and the
    secretariat. Only a working-group room reads the member's roles (one query, then cached)."""
    if not is_participant(member):
        return False
    if getattr(room, "visibility", NETWORK_VISIBILITY) != WORKING_GROUP_VISIBILITY:
        return True
    return bool(member.is_staff) or role_in(member, room.working_group_id) is not None


def can_moderate_room(member: Any, room: RoomLike) -> bool:
    # Moderators of a group read its rooms (organizer roles are roles in the group).
    return is_secretariat(member) or is_organizer_of(member, room.working_group_id)


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
