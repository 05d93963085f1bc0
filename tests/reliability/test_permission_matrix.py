"""Permission matrix: every role x every action x every transport, from ONE table.

The table is `tests/reliability/permission_table.py` (`ALLOWED`), and docs/permissions.md shows
it verbatim (`test_permissions_page_shows_the_matrix_table`). Each cell is asked over every
transport that offers the action (the HTML pages, the JSON API, the calendar feeds, the
websocket) and must match the table; the room rules are also asked of community/policy.py. A
write counts as done only if the database changed. Denials must not reveal existence: where the
thing is private to the role, the answer for it is the answer for a missing one (same status,
same redirect path, same API error code).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from community import policy
from community.models import Membership, Role, User, WorkingGroup
from events import services as event_services
from events.models import Event, Registration
from forums.models import REACTION_EMOJI, Attachment, Message, Reaction, Room, Thread
from notifications.models import Notification
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory
from tests.reliability import permission_table
from tests.reliability.permission_table import ACTIONS, ALLOWED, ROLES
from tests.reliability.support import (
    ORIGIN,
    open_socket,
    recv,
    recv_until,
    report,
    send,
    session_headers,
)

MISSING = 999_999
FUTURE = datetime(2030, 3, 12, 14, 0, tzinfo=UTC)
POLICY_FUNCTION = {
    "read_room": policy.can_read_room,
    "post": policy.can_post_in_room,
    "moderate": policy.can_moderate_room,
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"


def make_role(role: str) -> User | None:
    """A user in `role` for wg1 (None for anonymous); `deactivated` is deactivated later, by
    `logged_in`, after its session exists; `co_organizer` is listed on the events by
    `World.add_co_organizer`."""
    if role == "anonymous":
        return None
    if role == "unverified":
        user = UserFactory(verified=False)
        MembershipFactory(member=user, role=Role.MEMBER)
        return user
    if role == "secretariat":
        return UserFactory(is_staff=True)
    if role == "co_organizer":
        # No role in any group; World.add_co_organizer lists them on the events under test.
        return UserFactory()
    user = UserFactory()
    wg_role = {
        "observer": Role.OBSERVER,
        "room_moderator": Role.VICE_CHAIR,
        "chair": Role.CHAIR,
    }.get(role, Role.MEMBER)
    MembershipFactory(member=user, role=wg_role)
    if role == "removed":
        Membership.objects.filter(member=user).delete()
        policy.forget_roles(user)
    return user


def logged_in(user: User | None, role: str) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
        if role == "deactivated":
            # Deactivated after signing in: the session must stop counting at once.
            user.is_active = False
            user.save()
    return client


@dataclass
class World:
    """What every role is asked about: wg1-a's thread, public events of wg1 (one with its own
    live room and a thread there), files, feeds. The `co_organizer` role is added to the
    events' organizers (`add_co_organizer`) and to every fresh event."""

    author: User
    chair: User
    thread: Thread
    seed: Message
    event: Event
    api_event: Event
    room_event: Event
    room_thread: Thread
    attachment: Attachment
    unposted: Attachment
    notification: Notification
    group_room: Room
    co_organizers: list[User] = field(default_factory=list)
    counter: list[int] = field(default_factory=lambda: [0])

    def unique(self, text: str) -> str:
        self.counter[0] += 1
        return f"{text} {self.counter[0]}"

    def add_co_organizer(self, user: User) -> None:
        self.co_organizers.append(user)
        for event in (self.event, self.api_event, self.room_event):
            event.organizers.add(user)

    def fresh_event(self, title: str) -> Event:
        """An event to cancel (a cancelled event stays cancelled), scheduled by wg1's chair."""
        return _event(self.chair, self.unique(title), organizers=self.co_organizers)


def _event(actor: User, title: str, organizers: list[User] | None = None) -> Event:
    return event_services.event_create(
        actor=actor,
        title=title,
        working_group=WorkingGroup.objects.get(slug="wg1"),
        starts_at=FUTURE,
        ends_at=FUTURE + timedelta(hours=2),
        timezone="America/Port_of_Spain",
        organizers=organizers or [],
    )


def _organizer_handles(event: Event, *extra: str) -> list[str]:
    return sorted(
        {*Event.objects.get(pk=event.pk).organizers.values_list("handle", flat=True), *extra}
    )


def _names_author(event: Event, author: User) -> bool:
    """The author was named a co-organizer of `event`; taken off again for the next role."""
    named = event.organizers.filter(pk=author.pk).exists()
    event.organizers.remove(author)
    return named


def _file(room: Room, uploader: User, message: Message | None) -> Attachment:
    name = default_storage.save(f"attachments/matrix/{uuid.uuid4().hex}", ContentFile(b"x" * 10))
    return Attachment.objects.create(
        message=message,
        room=room,
        uploader=uploader,
        file=name,
        original_name="plan.txt",
        content_type="text/plain",
        size=10,
        sha256="0" * 64,
    )


def _notification(recipient: User, actor: User) -> Notification:
    return Notification.objects.create(
        recipient=recipient,
        kind="mention",
        actor=actor,
        target_type="message",
        target_id=1,
        url="/rooms/wg1-a/",
        title="You were mentioned",
        snippet="private words",
        created=timezone.now(),
        occurrence_key=f"matrix:{uuid.uuid4().hex}",
    )


def group_room(author: User) -> Room:
    """wg1-private: a room of wg1 readable by its working group only, with one message."""
    room = Room.objects.create(
        slug="wg1-private",
        title="Private room of wg1",
        working_group=WorkingGroup.objects.get(slug="wg1"),
        visibility=Room.Visibility.WORKING_GROUP,
    )
    MessageFactory(thread=ThreadFactory(room=room, author=author), author=author)
    return room


def make_world() -> World:
    author = UserFactory()
    MembershipFactory(member=author, role=Role.MEMBER)
    chair = UserFactory()
    MembershipFactory(member=chair, role=Role.CHAIR)
    room = Room.objects.get(slug="wg1-a")
    thread = ThreadFactory(room=room, author=author)
    seed = MessageFactory(thread=thread, author=author)
    room_event = _event(chair, "Live session on social dialogue")
    live_room = event_services.live_room_create(event=room_event, actor=chair)
    return World(
        author=author,
        chair=chair,
        thread=thread,
        seed=seed,
        event=_event(chair, "Labor inspection workshop"),
        api_event=_event(chair, "Youth employment workshop"),
        room_event=room_event,
        room_thread=ThreadFactory(room=live_room, author=author),
        attachment=_file(room, author, seed),
        unposted=_file(room, author, None),
        notification=_notification(author, chair),
        group_room=group_room(author),
    )


@dataclass
class Own:
    """What a role owns: a message, a notification, its calendar feed's token."""

    message: Message | None
    notification: Notification | None
    feed_token: str


def make_own(user: User | None, world: World) -> Own:
    if user is None:
        return Own(None, None, "not-a-token")
    _token, raw = event_services.feed_token_regenerate(member=user)
    return Own(
        MessageFactory(thread=world.thread, author=user),
        _notification(user, world.author),
        raw,
    )


def signature(response: HttpResponse) -> tuple[int, str, str]:
    """What a denial shows: status, redirect path (no query) and the API's error code."""
    location = response.get("Location", "").split("?")[0]
    code = ""
    if response.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        code = str(body.get("code", "")) if isinstance(body, dict) else ""
    return response.status_code, location, code


@dataclass
class Probe:
    role: str
    transport: str
    cells: dict[str, bool] = field(default_factory=dict)
    oracles: list[tuple[str, str, str, tuple[Any, ...], tuple[Any, ...]]] = field(
        default_factory=list
    )

    def same_as_missing(
        self, action: str, private: bool, existing: HttpResponse, missing: Callable[[], Any]
    ) -> None:
        """Where the thing is private to this role and was refused, it must look missing."""
        if not private or self.cells.get(action):
            return
        seen, absent = signature(existing), signature(missing())
        if seen != absent:
            self.oracles.append((self.role, self.transport, action, seen, absent))


def _reader(role: str) -> bool:
    return role in ALLOWED["read_room"]


def html_cells(client: Client, role: str, world: World, own: Own) -> Probe:
    probe = Probe(role, "html")
    cells = probe.cells
    hidden = not _reader(role)  # wg1-a and its things are private to non-readers
    thread = world.thread

    response = client.get("/rooms/wg1-a/")
    cells["read_room"] = response.status_code == 200
    probe.same_as_missing("read_room", hidden, response, lambda: client.get("/rooms/wg9-z/"))

    response = client.get("/rooms/wg1-private/")
    cells["read_group_room"] = response.status_code == 200
    probe.same_as_missing(
        "read_group_room",
        not permission_table.allowed(role, "read_group_room"),
        response,
        lambda: client.get("/rooms/wg9-z/"),
    )

    newest = Message.objects.filter(thread=thread).latest("seq")
    response = client.get(f"/threads/{thread.pk}/")
    cells["read_history"] = response.status_code == 200 and f'id="m-{newest.pk}"' in response.text
    probe.same_as_missing(
        "read_history", hidden, response, lambda: client.get(f"/threads/{MISSING}/")
    )

    before = Message.objects.filter(thread=thread).count()
    body = {"body": "form post", "client_id": str(uuid.uuid4())}
    response = client.post(f"/threads/{thread.pk}/", body)
    cells["post"] = Message.objects.filter(thread=thread).count() == before + 1
    probe.same_as_missing(
        "post", hidden, response, lambda: client.post(f"/threads/{MISSING}/", body)
    )

    if own.message is None:
        cells["edit_own"] = False
    else:
        client.post(f"/messages/{own.message.pk}/edit/", {"body": "edited by its author"})
        own.message.refresh_from_db()
        cells["edit_own"] = own.message.body == "edited by its author"

    target = MessageFactory(thread=thread, author=world.author)
    response = client.post(f"/messages/{target.pk}/edit/", {"body": "edited by someone else"})
    target.refresh_from_db()
    cells["edit_other"] = target.body == "edited by someone else"
    probe.same_as_missing(
        "edit_other",
        hidden,
        response,
        lambda: client.post(f"/messages/{MISSING}/edit/", {"body": "x"}),
    )

    target = MessageFactory(thread=thread, author=world.author)
    response = client.post(f"/messages/{target.pk}/delete/")
    target.refresh_from_db()
    cells["delete_other"] = target.deleted_at is not None
    probe.same_as_missing(
        "delete_other", hidden, response, lambda: client.post(f"/messages/{MISSING}/delete/")
    )

    emoji = {"emoji": REACTION_EMOJI[0]}
    response = client.post(f"/messages/{world.seed.pk}/react/", emoji)
    cells["react"] = Reaction.objects.filter(
        message=world.seed, member_id=getattr(own.message, "author_id", None)
    ).exists()
    probe.same_as_missing(
        "react", hidden, response, lambda: client.post(f"/messages/{MISSING}/react/", emoji)
    )

    target = MessageFactory(thread=thread, author=world.author)
    response = client.post(f"/messages/{target.pk}/hide/", {"reason": "off topic"})
    target.refresh_from_db()
    cells["moderate"] = target.hidden_at is not None
    probe.same_as_missing(
        "moderate",
        hidden,
        response,
        lambda: client.post(f"/messages/{MISSING}/hide/", {"reason": "off topic"}),
    )

    title = world.unique("Matrix event (page)")
    client.post("/events/new/", event_form(title=title))
    cells["create_event"] = Event.objects.filter(title=title).exists()

    title = world.unique("Renamed on the page")
    keep = " ".join(_organizer_handles(world.event))
    client.post(f"/events/{world.event.pk}/edit/", event_form(title=title, organizers=keep))
    cells["edit_event"] = Event.objects.filter(pk=world.event.pk, title=title).exists()

    fresh = world.fresh_event("Cancelled on the page")
    client.post(f"/events/{fresh.pk}/cancel/", {"message": ""})
    cells["cancel_event"] = Event.objects.filter(pk=fresh.pk, status="cancelled").exists()

    named = " ".join(_organizer_handles(world.event, world.author.handle))
    title = Event.objects.get(pk=world.event.pk).title
    client.post(f"/events/{world.event.pk}/edit/", event_form(title=title, organizers=named))
    cells["name_co_organizers"] = _names_author(world.event, world.author)

    target = MessageFactory(thread=world.room_thread, author=world.author)
    client.post(f"/messages/{target.pk}/hide/", {"reason": "off topic"})
    target.refresh_from_db()
    cells["moderate_event_room"] = target.hidden_at is not None

    client.post(f"/events/{world.event.pk}/register/")
    cells["register"] = _registered(world.event, own)

    response = client.get(f"/events/{world.event.pk}/registrations/")
    cells["attendee_list"] = response.status_code == 200
    response = client.get(f"/events/{world.event.pk}/registrations.csv")
    probe.cells["attendee_list"] = cells["attendee_list"] and response.status_code == 200

    if own.notification is None:
        cells["inbox_own"] = False
    else:
        client.post(f"/notifications/{own.notification.pk}/open/")
        own.notification.refresh_from_db()
        cells["inbox_own"] = own.notification.read_at is not None

    other = _notification(world.author, world.author)
    response = client.post(f"/notifications/{other.pk}/open/")
    other.refresh_from_db()
    cells["inbox_other"] = other.read_at is not None or "private words" in response.text
    probe.same_as_missing(
        "inbox_other", True, response, lambda: client.post(f"/notifications/{MISSING}/open/")
    )

    response = Client().get(f"/events/feeds/{own.feed_token}.ics")
    cells["feed_own"] = response.status_code == 200 and b"BEGIN:VCALENDAR" in response.content
    probe.same_as_missing(
        "feed_own",
        True,
        response,
        lambda: Client().get(f"/events/feeds/{uuid.uuid4().hex}.ics"),
    )

    response = client.get("/events/feeds/wg/wg1.ics")
    cells["feed_group"] = response.status_code == 200
    probe.same_as_missing(
        "feed_group", True, response, lambda: client.get("/events/feeds/wg/wg9.ics")
    )
    response = client.get("/events/feeds/wg/wg2.ics")
    cells["feed_other"] = response.status_code == 200
    probe.same_as_missing(
        "feed_other", True, response, lambda: client.get("/events/feeds/wg/wg9.ics")
    )

    response = client.get(f"/attachments/{world.attachment.pk}/")
    cells["attachment"] = response.status_code == 200
    _close_file(response)
    probe.same_as_missing(
        "attachment", hidden, response, lambda: client.get(f"/attachments/{MISSING}/")
    )
    response = client.get(f"/attachments/{world.unposted.pk}/")
    cells["attachment_unposted"] = response.status_code == 200
    _close_file(response)
    probe.same_as_missing(
        "attachment_unposted", True, response, lambda: client.get(f"/attachments/{MISSING}/")
    )
    return probe


def _close_file(response: Any) -> None:
    """Read a FileResponse to its end: the test client then closes its file (response.close()
    itself would also close the test's database connection)."""
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)


def _registered(event: Event, own: Own) -> bool:
    if own.message is None:
        return False
    return Registration.objects.filter(event=event, member_id=own.message.author_id).exists()


def event_form(**overrides: str) -> dict[str, str]:
    data = {
        "title": "Focus session on labor inspection",
        "kind": "focus_session",
        "working_group": "wg1",
        "description": "",
        "starts_at": "2030-04-09T10:00",
        "ends_at": "2030-04-09T12:00",
        "timezone": "America/Port_of_Spain",
        "recurrence": "",
        "venue": "",
        "city": "",
        "country": "",
        "capacity": "",
        "registration_opens_at": "",
        "registration_closes_at": "",
        "visibility": "public",
    }
    data.update(overrides)
    return data


def api_cells(client: Client, role: str, world: World, own: Own) -> Probe:
    probe = Probe(role, "api")
    cells = probe.cells
    hidden = not _reader(role)
    thread = world.thread
    json = "application/json"

    rooms = client.get("/api/v1/rooms/")
    listed = rooms.status_code == 200 and "wg1-a" in {r["slug"] for r in rooms.json()}
    response = client.get("/api/v1/rooms/wg1-a/threads/")
    cells["read_room"] = listed and response.status_code == 200
    probe.same_as_missing(
        "read_room", hidden, response, lambda: client.get("/api/v1/rooms/wg9-z/threads/")
    )

    listed = rooms.status_code == 200 and "wg1-private" in {r["slug"] for r in rooms.json()}
    response = client.get("/api/v1/rooms/wg1-private/threads/")
    cells["read_group_room"] = listed and response.status_code == 200
    probe.same_as_missing(
        "read_group_room",
        not permission_table.allowed(role, "read_group_room"),
        response,
        lambda: client.get("/api/v1/rooms/wg9-z/threads/"),
    )

    response = client.get(f"/api/v1/threads/{thread.pk}/messages/")
    cells["read_history"] = response.status_code == 200
    probe.same_as_missing(
        "read_history",
        hidden,
        response,
        lambda: client.get(f"/api/v1/threads/{MISSING}/messages/"),
    )

    body = {"body": world.unique("api post"), "client_id": str(uuid.uuid4())}
    response = client.post(f"/api/v1/threads/{thread.pk}/messages/", body, content_type=json)
    cells["post"] = (
        response.status_code == 201
        and Message.objects.filter(thread=thread, body=body["body"]).exists()
    )
    probe.same_as_missing(
        "post",
        hidden,
        response,
        lambda: client.post(f"/api/v1/threads/{MISSING}/messages/", body, content_type=json),
    )

    if own.message is None:
        cells["edit_own"] = False
    else:
        client.patch(
            f"/api/v1/messages/{own.message.pk}/",
            {"body": "edited over the API"},
            content_type=json,
        )
        own.message.refresh_from_db()
        cells["edit_own"] = own.message.body == "edited over the API"

    target = MessageFactory(thread=thread, author=world.author)
    edit = {"body": "edited"}
    response = client.patch(f"/api/v1/messages/{target.pk}/", edit, content_type=json)
    target.refresh_from_db()
    cells["edit_other"] = target.body == "edited"
    probe.same_as_missing(
        "edit_other",
        hidden,
        response,
        lambda: client.patch(f"/api/v1/messages/{MISSING}/", edit, content_type=json),
    )

    target = MessageFactory(thread=thread, author=world.author)
    response = client.delete(f"/api/v1/messages/{target.pk}/")
    target.refresh_from_db()
    cells["delete_other"] = target.deleted_at is not None
    probe.same_as_missing(
        "delete_other", hidden, response, lambda: client.delete(f"/api/v1/messages/{MISSING}/")
    )

    target = MessageFactory(thread=thread, author=world.author)
    emoji = {"emoji": REACTION_EMOJI[0]}
    response = client.post(f"/api/v1/messages/{target.pk}/reactions/", emoji, content_type=json)
    cells["react"] = Reaction.objects.filter(message=target).exists()
    probe.same_as_missing(
        "react",
        hidden,
        response,
        lambda: client.post(f"/api/v1/messages/{MISSING}/reactions/", emoji, content_type=json),
    )

    title = world.unique("Matrix event (API)")
    client.post(
        "/api/v1/events/",
        {
            "title": title,
            "kind": "focus_session",
            "working_group": "wg1",
            "starts_at": "2030-05-06T10:00:00",
            "ends_at": "2030-05-06T12:00:00",
            "timezone": "America/Lima",
        },
        content_type=json,
    )
    cells["create_event"] = Event.objects.filter(title=title).exists()

    title = world.unique("Renamed over the API")
    client.patch(f"/api/v1/events/{world.api_event.pk}/", {"title": title}, content_type=json)
    cells["edit_event"] = Event.objects.filter(pk=world.api_event.pk, title=title).exists()

    fresh = world.fresh_event("Cancelled over the API")
    client.delete(f"/api/v1/events/{fresh.pk}/")
    cells["cancel_event"] = Event.objects.filter(pk=fresh.pk, status="cancelled").exists()

    named = _organizer_handles(world.api_event, world.author.handle)
    client.patch(f"/api/v1/events/{world.api_event.pk}/", {"organizers": named}, content_type=json)
    cells["name_co_organizers"] = _names_author(world.api_event, world.author)

    client.put(f"/api/v1/events/{world.api_event.pk}/registration/")
    cells["register"] = _registered(world.api_event, own)

    listed_ids: set[int] = set()
    response = client.get("/api/v1/notifications/")
    if response.status_code == 200:
        listed_ids = {n["id"] for n in response.json()["results"]}
    cells["inbox_own"] = own.notification is not None and own.notification.pk in listed_ids

    other = _notification(world.author, world.author)
    response = client.post("/api/v1/notifications/read/", {"ids": [other.pk]}, content_type=json)
    other.refresh_from_db()
    cells["inbox_other"] = other.read_at is not None or other.pk in listed_ids
    probe.same_as_missing(
        "inbox_other",
        True,
        response,
        lambda: client.post("/api/v1/notifications/read/", {"ids": [MISSING]}, content_type=json),
    )
    return probe


def mismatches(probe: Probe) -> list[tuple[str, str, str, bool]]:
    return [
        (probe.role, probe.transport, action, done)
        for action, done in probe.cells.items()
        if done != permission_table.allowed(probe.role, action)
    ]


def policy_mismatches(role: str, user: User | None, room: Room) -> list[tuple[str, str, str, bool]]:
    wrong = []
    member: Any = user if user is not None else AnonymousUser()
    for action, check in POLICY_FUNCTION.items():
        if role == "deactivated":
            member.is_active = False
        allowed = check(member, room)
        if role == "deactivated":
            member.is_active = True
        if allowed != permission_table.allowed(role, action):
            wrong.append((role, "policy.py", action, allowed))
    return wrong


def group_room_policy_mismatches(
    role: str, user: User | None, room: Room
) -> list[tuple[str, str, str, bool]]:
    member: Any = user if user is not None else AnonymousUser()
    if role == "deactivated":
        member.is_active = False
    allowed = policy.can_read_room(member, room)
    if role == "deactivated":
        member.is_active = True
    if allowed != permission_table.allowed(role, "read_group_room"):
        return [(role, "policy.py", "read_group_room", allowed)]
    return []


@pytest.mark.django_db
def test_permission_matrix_html_and_api_match_policy_table(
    plan: None, settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.MEDIA_ROOT = tmp_path
    world = make_world()
    room = Room.objects.get(slug="wg1-a")
    wrong: list[tuple[str, str, str, bool]] = []
    oracles: list[tuple[str, str, str, tuple[Any, ...], tuple[Any, ...]]] = []
    cells = 0
    for role in ROLES:
        user = make_role(role)
        if role == "co_organizer" and user is not None:
            world.add_co_organizer(user)
        wrong.extend(policy_mismatches(role, user, room))
        cells += len(POLICY_FUNCTION)
        wrong.extend(group_room_policy_mismatches(role, user, world.group_room))
        cells += 1
        own = make_own(user, world)
        client = logged_in(user, role)
        for cells_of in (html_cells, api_cells):
            probe = cells_of(client, role, world, own)
            cells += len(probe.cells)
            wrong.extend(mismatches(probe))
            oracles.extend(probe.oracles)

    offered = {(a, t) for a, (_label, ts) in ACTIONS.items() for t in ts if t != "socket"}
    report(
        capsys,
        "PERMISSION-MATRIX (policy.py+HTML+API+feeds)",
        f"{len(ROLES)} roles x {len(ACTIONS)} actions, {cells} cells, "
        f"{cells - len(wrong)}/{cells} match docs/permissions.md; "
        f"private denials that differ from 'missing': {len(oracles)}",
    )
    assert wrong == [], wrong
    assert oracles == [], oracles
    assert offered  # every non-socket transport of the table is asked above


@pytest.mark.django_db
def test_room_states_match_policy(plan: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Posting in a locked and an archived wg1-a, for every role, over the page and the API
    (and policy.py): only the room's moderators post in a locked room, nobody in an archived
    one; the room stays readable (its thread page answers 200) to every reader."""
    author = UserFactory()
    MembershipFactory(member=author, role=Role.MEMBER)
    room = Room.objects.get(slug="wg1-a")
    thread = ThreadFactory(room=room, author=author)
    wrong: list[tuple[str, str, str, bool]] = []
    cells = 0
    for state in ("locked", "archived"):
        Room.objects.filter(pk=room.pk).update(state=state)
        room.refresh_from_db()
        for role in ROLES:
            user = make_role(role)
            member: Any = user if user is not None else AnonymousUser()
            client = logged_in(user, role)
            expected = role in permission_table.POST_BY_STATE[state]
            before = Message.objects.filter(thread=thread).count()
            client.post(f"/threads/{thread.pk}/", {"body": "form", "client_id": str(uuid.uuid4())})
            page = Message.objects.filter(thread=thread).count() == before + 1
            response = client.post(
                f"/api/v1/threads/{thread.pk}/messages/",
                {"body": "api", "client_id": str(uuid.uuid4())},
                content_type="application/json",
            )
            api = response.status_code == 201
            read = client.get(f"/threads/{thread.pk}/").status_code == 200
            found = {
                "post (policy.py)": policy.can_post_in_room(member, room),
                "post (html)": page,
                "post (api)": api,
                "read (html)": read,
            }
            wanted = dict.fromkeys(found, expected)
            wanted["read (html)"] = role in ALLOWED["read_room"]
            for cell, done in found.items():
                cells += 1
                if done != wanted[cell]:
                    wrong.append((role, state, cell, done))

    report(
        capsys,
        "PERMISSION-MATRIX (room states)",
        f"locked and archived x {len(ROLES)} roles, {cells} cells, {cells - len(wrong)}/{cells} "
        "match docs/permissions.md",
    )
    assert wrong == [], wrong


def test_permissions_page_shows_the_matrix_table() -> None:
    """docs/permissions.md carries exactly the table the matrix asks (regenerate with
    `.venv/bin/python -m tests.reliability.permission_table`)."""
    text = DOCS.read_text(encoding="utf-8")
    start, end = "<!-- matrix:start -->\n", "<!-- matrix:end -->"
    shown = text[text.index(start) + len(start) : text.index(end)]

    assert shown.strip() == permission_table.markdown().strip()


@pytest.mark.django_db
def test_api_denial_same_for_missing_and_forbidden_things(plan: None) -> None:
    author = UserFactory()
    MembershipFactory(member=author, role=Role.MEMBER)
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=author)
    message = MessageFactory(thread=thread, author=author)
    answers: dict[str, set[tuple[int, str]]] = {}
    for role in ("anonymous", "unverified", "deactivated"):
        client = logged_in(make_role(role), role)
        pairs = [
            ("/api/v1/rooms/wg1-a/threads/", "/api/v1/rooms/wg9-z/threads/"),
            (f"/api/v1/threads/{thread.pk}/messages/", "/api/v1/threads/999999/messages/"),
            (f"/api/v1/messages/{message.pk}/", "/api/v1/messages/999999/"),
        ]
        for existing, missing in pairs:
            for url in (existing, missing):
                method = client.delete if url.startswith("/api/v1/messages/") else client.get
                response = method(url)
                answers.setdefault(f"{role} {existing}", set()).add(
                    (response.status_code, response.json()["code"])
                )

    assert {key: len(value) for key, value in answers.items()} == dict.fromkeys(answers, 1)


@pytest.mark.django_db
def test_html_denial_same_for_missing_and_forbidden_room(plan: None) -> None:
    unverified = make_role("unverified")
    client = logged_in(unverified, "unverified")

    existing = client.get("/rooms/wg1-a/").status_code
    missing = client.get("/rooms/wg9-z/").status_code

    assert existing == missing


# --- The socket ---------------------------------------------------------------------------------


async def socket_cells(
    user: User | None, role: str, thread: Thread, seed: Message
) -> dict[str, bool]:
    """`subscribe` (with `after: 0`, so the history is replayed) and `message.send` over the
    gateway (the protocol has no edit, delete, reaction or moderation frame)."""
    if user is None:
        headers = [ORIGIN]
    else:
        headers = await database_sync_to_async(session_headers)(user)
        if role == "deactivated":
            await database_sync_to_async(_deactivate)(user)
    ws, connected = await open_socket(headers)
    cells = {"subscribe": False, "post": False, "read_group_room": False}
    try:
        if not connected:
            return cells
        await send(ws, {"type": "subscribe", "room": "wg1-a", "after": 0})
        first = await ws.receive_output(timeout=10)
        if first["type"] == "websocket.close" or '"subscribed"' not in first.get("text", ""):
            return cells
        replayed = await recv_until(ws, "message.created")
        cells["subscribe"] = replayed["message"]["id"] == seed.pk
        client_id = str(uuid.uuid4())
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "socket post",
                "client_id": client_id,
            },
        )
        while True:
            frame = await recv(ws)
            if frame.get("client_id") == client_id and frame["type"] in {"ack", "error"}:
                cells["post"] = frame["type"] == "ack"
                break
        # Last, so wg1-private's replay cannot interleave with the frames above.
        await send(ws, {"type": "subscribe", "room": "wg1-private", "after": 0})
        while True:
            frame = await recv(ws)
            if frame["type"] == "subscribed" and frame["room"] == "wg1-private":
                cells["read_group_room"] = True
                break
            if frame["type"] == "error":
                assert frame["code"] == "forbidden", frame  # denial looks like "missing"
                break
        return cells
    finally:
        await ws.disconnect()


def _deactivate(user: User) -> None:
    user.is_active = False
    user.save()


def _socket_world() -> tuple[Thread, Message]:
    author = UserFactory()
    MembershipFactory(member=author, role=Role.MEMBER)
    group_room(author)
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=author)
    return thread, MessageFactory(thread=thread, author=author)


@pytest.mark.django_db(transaction=True)
async def test_permission_matrix_socket_matches_policy_table(
    plan: None, capsys: pytest.CaptureFixture[str]
) -> None:
    thread, seed = await database_sync_to_async(_socket_world)()
    wrong: list[tuple[str, str, str, bool]] = []
    cells = 0
    for role in ROLES:
        user = await database_sync_to_async(make_role)(role)
        found = await socket_cells(user, role, thread, seed)
        cells += len(found)
        probe = Probe(role, "socket", found)
        wrong.extend(mismatches(probe))

    report(
        capsys,
        "PERMISSION-MATRIX (socket)",
        f"{len(ROLES)} roles x 3 actions = {cells} cells, {cells - len(wrong)}/{cells} match",
    )
    assert wrong == []


@pytest.mark.django_db(transaction=True)
async def test_socket_denial_same_for_missing_and_existing_thread(member: User) -> None:
    """An observer posting to a thread they may read and to one that does not exist gets the same
    code; a subscribe to a missing room answers like a forbidden one (`forbidden`)."""
    from tests.reliability.support import member_socket

    observer = await database_sync_to_async(make_role)("observer")
    room = await database_sync_to_async(Room.objects.get)(slug="wg1-a")
    thread = await database_sync_to_async(ThreadFactory)(room=room, author=member)
    codes: list[str] = []
    async with member_socket(observer) as ws:
        await send(ws, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(ws, "subscribed")
        for thread_id in (thread.pk, 999_999):
            await send(
                ws,
                {
                    "type": "message.send",
                    "room": "wg1-a",
                    "thread": thread_id,
                    "body": "hello",
                    "client_id": str(uuid.uuid4()),
                },
            )
            codes.append((await recv_until(ws, "error"))["code"])
        await send(ws, {"type": "subscribe", "room": "wg9-z", "after": None})
        codes.append((await recv_until(ws, "error"))["code"])

    assert codes == ["forbidden", "forbidden", "forbidden"]
