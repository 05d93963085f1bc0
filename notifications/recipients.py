"""Who is told: recipient resolution in bulk (one query per rule, whatever the count).

Rules (docs/events.md has the table):
- Only participants are told (active, verified email), and about a room only those who may read
  it (`community.policy.can_read_room`: every participant for a network room; for a
  working-group room the group's members, observers included, the secretariat and, in an
  event's own live room, the event's organizers). The same conditions are written here as one
  query (`_reads_room`), so no per-member policy call is needed and a follower who can no longer
  read a room is told nothing from it.
- The author of what happened is never told about it.
- A mute on the room or the thread silences new threads, thread messages and replies there;
  an @mention is addressed to the member by name and still reaches them unless they muted that
  very thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat

from community.models import Membership, User


def _follow_model() -> Any:
    """forums.models.Follow once the forums app has it; None before (no follow rules then)."""
    from forums import models as forum_models

    return getattr(forum_models, "Follow", None)


def participants() -> QuerySet[User]:
    """Active members with a verified email address: the floor of `policy.is_participant`."""
    verified = EmailAddress.objects.filter(user_id=OuterRef("pk"), verified=True)
    return User.objects.filter(is_active=True).filter(Exists(verified))


def _muting(*, room_id: int | None = None, thread_id: int | None = None) -> Q:
    """Members who muted the room or the thread (an Exists, evaluated inside the one query)."""
    follow = _follow_model()
    if follow is None:
        return Q(pk__in=[])
    cond = Q()
    if room_id is not None:
        cond |= Q(room_id=room_id, thread_id__isnull=True)
    if thread_id is not None:
        cond |= Q(thread_id=thread_id)
    if not cond:
        return Q(pk__in=[])
    return Q(Exists(follow.objects.filter(cond, member_id=OuterRef("pk"), level="mute")))


def _reads_room(*, room_id: int | None = None, thread_id: int | None = None) -> Q:
    """Members who may read the room (given, or the thread's): policy.can_read_room as a query
    condition, evaluated inside the one query (participation is checked by `participants`)."""
    from forums.models import Room

    rooms = Room.objects.filter(pk=room_id) if room_id is not None else Room.objects.all()
    if thread_id is not None:
        rooms = rooms.filter(threads__pk=thread_id)
    readable = (
        Q(visibility=Room.Visibility.NETWORK)
        | Q(
            Exists(
                Membership.objects.filter(
                    member_id=OuterRef(OuterRef("pk")),
                    working_group_id=OuterRef("working_group_id"),
                )
            )
        )
        | Q(Exists(_organizing_this_room()))
    )
    return Q(is_staff=True) | Q(Exists(rooms.filter(readable)))


def _organizing_this_room() -> QuerySet[Any]:
    """The member organizes the event whose own live room this is (policy.organizes_event_room:
    the room linked from the event and named `event-<its id>`, not a topic room it links)."""
    from community.policy import EVENT_ROOM_PREFIX
    from events.models import Event

    own_slug = Concat(Value(EVENT_ROOM_PREFIX), Cast("event_id", CharField()))
    return (
        Event.organizers.through.objects.filter(
            user_id=OuterRef(OuterRef("pk")), event__room_id=OuterRef("pk")
        )
        .annotate(own_slug=own_slug)
        .filter(own_slug=OuterRef("slug"))
    )


def _ids(qs: QuerySet[User]) -> list[int]:
    return list(qs.order_by("pk").values_list("pk", flat=True).distinct())


def filter_participants(
    member_ids: list[int], *, exclude: int | None = None, room_id: int | None = None
) -> list[int]:
    """The participants among `member_ids`, without `exclude` (an author); with `room_id`, only
    those who may read that room."""
    qs = participants().filter(pk__in=member_ids)
    if room_id is not None:
        qs = qs.filter(_reads_room(room_id=room_id))
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return _ids(qs)


def mentioned(*, member_ids: list[int], author_id: int | None, thread_id: int) -> list[int]:
    """Members @mentioned in a message; a thread mute silences it, a room mute does not."""
    qs = participants().filter(pk__in=member_ids).filter(_reads_room(thread_id=thread_id))
    if author_id is not None:
        qs = qs.exclude(pk=author_id)
    return _ids(qs.exclude(_muting(thread_id=thread_id)))


def replied_to(
    *, reply_to_id: int, author_id: int | None, room_id: int, thread_id: int
) -> list[int]:
    """The author of the message replied to, unless they wrote the reply or muted the place."""
    from forums.models import Message

    qs = participants().filter(
        Exists(Message.objects.filter(pk=reply_to_id, author_id=OuterRef("pk"))),
        _reads_room(room_id=room_id),
    )
    if author_id is not None:
        qs = qs.exclude(pk=author_id)
    return _ids(qs.exclude(_muting(room_id=room_id, thread_id=thread_id)))


def room_followers(*, room_id: int, author_id: int | None) -> list[int]:
    """Members following the room (a follow of the room itself, not of one thread)."""
    follow = _follow_model()
    if follow is None:
        return []
    qs = participants().filter(
        Exists(
            follow.objects.filter(
                member_id=OuterRef("pk"), room_id=room_id, thread_id__isnull=True, level="follow"
            )
        ),
        _reads_room(room_id=room_id),
    )
    if author_id is not None:
        qs = qs.exclude(pk=author_id)
    return _ids(qs)


def thread_followers(*, thread_id: int, author_id: int | None) -> list[int]:
    """Members following the thread (an explicit thread follow outweighs a room mute)."""
    follow = _follow_model()
    if follow is None:
        return []
    qs = participants().filter(
        Exists(
            follow.objects.filter(member_id=OuterRef("pk"), thread_id=thread_id, level="follow")
        ),
        _reads_room(thread_id=thread_id),
    )
    if author_id is not None:
        qs = qs.exclude(pk=author_id)
    return _ids(qs)


def working_group_members(*, working_group_id: int | None, exclude: int | None = None) -> list[int]:
    """Every participant of the working group (observers included); None = the whole network."""
    return _ids(_working_group_members(working_group_id=working_group_id, exclude=exclude))


def _working_group_members(
    *, working_group_id: int | None, exclude: int | None = None
) -> QuerySet[User]:
    qs = participants()
    if working_group_id is not None:
        qs = qs.filter(
            Exists(
                Membership.objects.filter(
                    member_id=OuterRef("pk"), working_group_id=working_group_id
                )
            )
        )
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return qs


def registrants(*, event_id: int, exclude: int | None = None) -> list[int]:
    """Participants registered or waitlisted for the event (withdrawn members are not told)."""
    return _ids(_registrants(event_id=event_id, exclude=exclude))


def _registrants(*, event_id: int, exclude: int | None = None) -> QuerySet[User]:
    from events.models import Registration

    qs = participants().filter(
        Exists(
            Registration.objects.filter(
                member_id=OuterRef("pk"),
                event_id=event_id,
                status__in=[Registration.Status.REGISTERED, Registration.Status.WAITLISTED],
            )
        )
    )
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return qs


# --- Rules: a recipient set by name, resolved where it is used --------------------------------

# The rules a fan-out may carry instead of its recipients' ids: each is the query of the function
# of the same name above, so both give the same members.
_RULES: dict[str, Callable[..., QuerySet[User]]] = {
    "working_group_members": _working_group_members,
    "registrants": _registrants,
}


@dataclass(frozen=True)
class Rule:
    """Who is told, as a rule (`working_group_members` of a group, `registrants` of an event)
    rather than a list of ids: a large fan-out's task carries the rule, and the fan-out resolves
    it inside its INSERT (services.write_notifications), so 10,000 ids never go through the
    broker and Python. `ids()` resolves it here, to the same members.

    Raises ValueError for an unknown rule or arguments the rule does not take.
    """

    name: str
    args: Mapping[str, int | None]

    def __post_init__(self) -> None:
        if self.name not in _RULES:
            raise ValueError(f"Unknown recipient rule {self.name!r}.")
        self.queryset()  # unknown or missing arguments fail here, not in a worker

    def queryset(self) -> QuerySet[User]:
        """The rule's members (unordered); the fan-out adds its keyset and limit."""
        return _RULES[self.name](**self.args)

    def ids(self, *, limit: int | None = None) -> list[int]:
        """The members' ids in order; with `limit`, at most that many (the first ones)."""
        qs = self.queryset().order_by("pk").values_list("pk", flat=True).distinct()
        return list(qs[:limit] if limit is not None else qs)

    def payload(self) -> dict[str, Any]:
        """JSON-safe, for a task's arguments (`Rule.from_payload` reads it back)."""
        return {"name": self.name, "args": dict(self.args)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Rule:
        return cls(name=str(payload["name"]), args=dict(payload.get("args") or {}))


def working_group_members_rule(*, working_group_id: int | None, exclude: int | None = None) -> Rule:
    """`working_group_members` as a rule."""
    return Rule("working_group_members", {"working_group_id": working_group_id, "exclude": exclude})
