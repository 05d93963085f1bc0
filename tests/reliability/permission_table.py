"""The permission matrix of issue 7 as data: role x action -> allowed, and where each is asked.

docs/permissions.md shows this table verbatim between its `matrix` markers;
`test_permission_matrix.py` asks every cell over every transport that offers the action and
checks that the page shows exactly `markdown()`. After changing the table, regenerate the
page's section with

    .venv/bin/python -m tests.reliability.permission_table

and paste it between the markers. No Django import here: the table is plain data.

The setting: working group wg1, its open topic room wg1-a, a thread there by another member of
wg1, a public event of wg1, a notification of another member, a file posted in wg1-a, and
wg1-private, a room of wg1 readable by its working group only (visibility `working_group`, as an
event visible to its group only gets). The events under test (a public event of wg1, one per
transport, and a fresh one for each cancellation) list the `co_organizer` role among their
organizers; the first has its own live room `event-<id>` with a thread of another member.
"""

from __future__ import annotations

# role -> who that is (for wg1 and its room wg1-a)
ROLES: dict[str, str] = {
    "anonymous": "not signed in",
    "unverified": "signed in, email not verified (a member of wg1)",
    "observer": "observer of wg1",
    "member": "member of wg1",
    "room_moderator": "vice-chair of wg1 (Minga's room moderators are its group's organizers)",
    "chair": "chair of wg1",
    "secretariat": "staff, no role in wg1",
    "deactivated": "a member of wg1, deactivated while signed in",
    "removed": "was a member of wg1, membership deleted (a participant without a role in wg1)",
    "co_organizer": "co-organizer of the events under test (Event.organizers), no role in any group",
}

# action -> (what it is, the transports that offer it)
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "read_room": ("read room wg1-a (its page, its thread list)", ("html", "api")),
    "read_history": ("read a thread's messages", ("html", "api")),
    "read_group_room": (
        "read wg1-private, a working-group-only room of wg1 (page, threads, subscribe)",
        ("html", "api", "socket"),
    ),
    "subscribe": ("subscribe to wg1-a and get its history replayed", ("socket",)),
    "post": ("post a message", ("html", "api", "socket")),
    "edit_own": ("edit one's own message", ("html", "api")),
    "edit_other": ("edit another member's message", ("html", "api")),
    "delete_other": ("delete another member's message", ("html", "api")),
    "react": ("react to a message", ("html", "api")),
    "moderate": ("hide a message (moderation)", ("html",)),
    "create_event": ("create an event of wg1", ("html", "api")),
    "edit_event": ("edit an event of wg1", ("html", "api")),
    "cancel_event": ("cancel an event of wg1", ("html", "api")),
    "name_co_organizers": ("change the co-organizers of an event of wg1", ("html", "api")),
    "moderate_event_room": (
        "hide a message in an event's own live room (`event-<id>`; moderation)",
        ("html",),
    ),
    "register": (
        "register for a public event of wg1 (observers not admitted: the default)",
        ("html", "api"),
    ),
    "attendee_list": ("see the event's attendee list", ("html", "csv")),
    "inbox_own": ("read one's own notification", ("html", "api")),
    "inbox_other": ("read another member's notification", ("html", "api")),
    "feed_own": ("fetch one's own private calendar feed (its token URL)", ("ics",)),
    "feed_group": ("fetch wg1's calendar feed (signed in)", ("ics",)),
    "feed_other": ("fetch the feed of wg2, a group one has no role in", ("ics",)),
    "attachment": ("download a file posted in wg1-a", ("html",)),
    "attachment_unposted": ("download another member's file not posted yet", ("html",)),
}

_READERS = frozenset(
    {"observer", "member", "room_moderator", "chair", "secretariat", "removed", "co_organizer"}
)
# Participants without a role in wg1.
_NO_ROLE = frozenset({"removed", "co_organizer"})
# A working-group room: the group's members (any role) and the secretariat; not the removed.
_GROUP_READERS = _READERS - _NO_ROLE
_POSTERS = frozenset({"member", "room_moderator", "chair", "secretariat"})
_ORGANIZERS = frozenset({"room_moderator", "chair", "secretariat"})
# Rights over ONE event (policy.can_manage_event): the roles, and the event's listed organizers.
_EVENT_MANAGERS = _ORGANIZERS | {"co_organizer"}

# The one table: action -> the roles allowed. Everything else is refused.
ALLOWED: dict[str, frozenset[str]] = {
    "read_room": _READERS,
    "read_history": _READERS,
    "read_group_room": _GROUP_READERS,
    "subscribe": _READERS,
    "post": _POSTERS,
    "edit_own": _POSTERS,
    "edit_other": frozenset(),
    "delete_other": _ORGANIZERS,
    "react": _POSTERS,
    "moderate": _ORGANIZERS,
    "create_event": _ORGANIZERS,
    "edit_event": _EVENT_MANAGERS,
    "cancel_event": _EVENT_MANAGERS,
    "name_co_organizers": _ORGANIZERS,  # by role only: a co-organizer hands on no rights
    "moderate_event_room": _EVENT_MANAGERS,
    "register": _POSTERS,  # a member without a role anywhere counts as an observer
    "attendee_list": _EVENT_MANAGERS,
    "inbox_own": _READERS,
    "inbox_other": frozenset(),
    "feed_own": _READERS,
    "feed_group": _READERS - _NO_ROLE,
    "feed_other": frozenset({"secretariat"}),
    "attachment": _READERS,
    "attachment_unposted": frozenset(),
}

# Posting by the room's state (docs/permissions.md, "Room states"): the roles that may post.
POST_BY_STATE: dict[str, frozenset[str]] = {
    "open": _POSTERS,
    "locked": _ORGANIZERS,
    "archived": frozenset(),
}

# The short column names of the page's table.
_COLUMN = {
    "anonymous": "anon.",
    "unverified": "unverif.",
    "observer": "observer",
    "member": "member",
    "room_moderator": "vice-chair",
    "chair": "chair",
    "secretariat": "secr.",
    "deactivated": "deact.",
    "removed": "removed",
    "co_organizer": "co-org.",
}


def allowed(role: str, action: str) -> bool:
    return role in ALLOWED[action]


def markdown() -> str:
    """The table as docs/permissions.md shows it (between its `matrix` markers)."""
    head = ["action", "transports", *(_COLUMN[r] for r in ROLES)]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for action, (label, transports) in ACTIONS.items():
        marks = ("yes" if allowed(role, action) else "no" for role in ROLES)
        lines.append(f"| {label} | {', '.join(transports)} | " + " | ".join(marks) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
