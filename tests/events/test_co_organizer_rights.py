"""Co-organizers manage THEIR event (community.policy.can_manage_event), over the pages and the
API: edit, dates, agenda, documents, cancel, attendee list, the live room and its moderation.
They do not name co-organizers, move the event to another group or schedule copies."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from community import policy
from community.models import Role, User, WorkingGroup
from community.services import api_token_create
from events import services
from events.models import AgendaItem, Event, EventDocument
from forums.models import Room
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory

from .conftest import FUTURE
from .test_pages import create_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def co_organizer(plan: None) -> User:
    """A participant with no role in any working group."""
    return UserFactory(handle="bea", name="Beatriz Alves")


@pytest.fixture
def event(workshop: Event, chair: User, co_organizer: User) -> Event:
    services.event_update(event=workshop, actor=chair, changes={"organizers": [co_organizer]})
    return Event.objects.get(pk=workshop.pk)


def _api(member: User) -> Client:
    _token, key = api_token_create(member=member, name="tests")
    return Client(headers={"Authorization": f"Token {key}"})


def _send(client: Client, method: str, url: str, body: Any) -> Any:
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def _page(member: User) -> Client:
    client = Client()
    client.force_login(member)
    return client


def _edit_data(event: Event, **overrides: str) -> dict[str, str]:
    values = {
        "title": event.title,
        "starts_at": "2030-03-12T10:00",
        "ends_at": "2030-03-12T12:00",
        "timezone": event.timezone,
    }
    return create_form_data(**{**values, **overrides})


# --- The rule -----------------------------------------------------------------------------------


def test_policy_co_organizer_manages_only_their_event(
    event: Event, co_organizer: User, member: User, make_event: Callable[..., Event]
) -> None:
    other = make_event(title="Another workshop")

    assert policy.can_manage_event(co_organizer, event) is True
    assert policy.can_manage_event(co_organizer, other) is False
    assert policy.can_manage_event(member, event) is False
    assert policy.can_name_co_organizers(co_organizer, event) is False


def test_policy_deactivated_co_organizer_manages_nothing(event: Event, co_organizer: User) -> None:
    co_organizer.is_active = False

    assert policy.can_manage_event(co_organizer, event) is False


def test_policy_chair_names_co_organizers(event: Event, chair: User, secretariat: User) -> None:
    assert policy.can_name_co_organizers(chair, event) is True
    assert policy.can_name_co_organizers(secretariat, event) is True


# --- Pages --------------------------------------------------------------------------------------


def test_event_page_co_organizer_sees_organizer_actions_but_no_duplicate(
    event: Event, co_organizer: User, member: User
) -> None:
    page = _page(co_organizer).get(f"/events/{event.pk}/").content.decode()
    plain = _page(member).get(f"/events/{event.pk}/").content.decode()

    assert f"/events/{event.pk}/edit/" in page
    assert f"/events/{event.pk}/registrations/" in page
    assert f"/events/{event.pk}/duplicate/" not in page
    assert f"/events/{event.pk}/edit/" not in plain


def test_edit_page_co_organizer_saves_but_cannot_rename_the_co_organizers(
    event: Event, co_organizer: User, chair: User
) -> None:
    # Arrange: the co-organizer types another co-organizer and another group.
    UserFactory(handle="carl", name="Carl Zimmer")
    client = _page(co_organizer)
    form = client.get(f"/events/{event.pk}/edit/").context["form"]

    # Act
    response = client.post(
        f"/events/{event.pk}/edit/",
        _edit_data(event, title="Renamed by Bea", organizers="carl", working_group="wg2"),
    )

    # Assert: the title changed; the disabled fields kept their values.
    event.refresh_from_db()
    assert form.fields["organizers"].disabled is True
    assert form.fields["working_group"].disabled is True
    assert response.status_code == 302
    assert event.title == "Renamed by Bea"
    assert event.working_group.slug == "wg1"
    assert sorted(u.handle for u in event.organizers.all()) == ["bea", chair.handle]


def test_edit_page_other_event_and_plain_member_forbidden(
    event: Event, co_organizer: User, member: User, make_event: Callable[..., Event]
) -> None:
    other = make_event(title="Another workshop")

    denied_other = _page(co_organizer).post(
        f"/events/{other.pk}/edit/", _edit_data(other, title="Hijacked")
    )
    denied_member = _page(member).post(
        f"/events/{event.pk}/edit/", _edit_data(event, title="Hijacked")
    )

    assert (denied_other.status_code, denied_member.status_code) == (403, 403)
    assert set(Event.objects.values_list("title", flat=True)) == {
        "Labor inspection workshop",
        "Another workshop",
    }


def test_registrations_agenda_documents_pages_co_organizer_allowed(
    event: Event, co_organizer: User
) -> None:
    client = _page(co_organizer)

    registrations = client.get(f"/events/{event.pk}/registrations/")
    csv = client.get(f"/events/{event.pk}/registrations.csv")
    agenda = client.post(
        f"/events/{event.pk}/agenda/",
        {"title": "Opening", "starts_at": "2030-03-12T10:00", "ends_at": "2030-03-12T10:30"},
    )
    documents = client.post(
        f"/events/{event.pk}/documents/", {"title": "Programme", "url": "https://example.org/p"}
    )

    assert (registrations.status_code, csv.status_code) == (200, 200)
    assert (agenda.status_code, documents.status_code) == (302, 302)
    assert list(AgendaItem.objects.filter(event=event).values_list("title", flat=True)) == [
        "Opening"
    ]
    assert list(EventDocument.objects.filter(event=event).values_list("title", flat=True)) == [
        "Programme"
    ]


def test_registrations_page_plain_member_forbidden(event: Event, member: User) -> None:
    client = _page(member)

    assert client.get(f"/events/{event.pk}/registrations/").status_code == 403
    assert client.get(f"/events/{event.pk}/registrations.csv").status_code == 403


def test_cancel_page_co_organizer_cancels_and_locks_the_live_room(
    event: Event, co_organizer: User
) -> None:
    # Arrange
    client = _page(co_organizer)
    client.post(f"/events/{event.pk}/live-room/")
    room = Room.objects.get(slug=f"event-{event.pk}")

    # Act
    response = client.post(f"/events/{event.pk}/cancel/", {"message": "Postponed."})

    # Assert
    event.refresh_from_db()
    room.refresh_from_db()
    assert response.status_code == 302
    assert (event.status, event.room_id, room.state) == ("cancelled", room.pk, "locked")


def test_duplicate_page_co_organizer_refused(event: Event, co_organizer: User) -> None:
    response = _page(co_organizer).post(
        f"/events/{event.pk}/duplicate/", {"starts_at": "2030-03-19T10:00"}
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert Event.objects.count() == 1


# --- API ----------------------------------------------------------------------------------------


def test_api_co_organizer_patches_and_cancels(event: Event, co_organizer: User) -> None:
    client = _api(co_organizer)
    url = f"/api/v1/events/{event.pk}/"

    patched = _send(client, "patch", url, {"title": "Renamed over the API", "capacity": 30})
    room = client.post(f"{url}live-room/")
    cancelled = client.delete(url)

    assert (patched.status_code, patched.json()["title"]) == (200, "Renamed over the API")
    assert (room.status_code, room.json()["room"]) == (201, f"event-{event.pk}")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")


def test_api_co_organizer_cannot_change_co_organizers_or_group(
    event: Event, co_organizer: User, chair: User
) -> None:
    # Arrange
    UserFactory(handle="carl", name="Carl Zimmer")
    client = _api(co_organizer)
    url = f"/api/v1/events/{event.pk}/"

    # Act
    renamed = _send(client, "patch", url, {"organizers": ["carl", "bea"]})
    moved = _send(client, "patch", url, {"working_group": "wg2"})
    same = _send(client, "patch", url, {"organizers": ["bea"], "working_group": "wg1"})

    # Assert: the list sent back as it is, and the group named again, are no change.
    event.refresh_from_db()
    assert (renamed.status_code, renamed.json()["code"]) == (403, "forbidden")
    assert (moved.status_code, moved.json()["code"]) == (403, "forbidden")
    assert (same.status_code, same.json()["organizers"]) == (200, ["bea", chair.handle])
    assert event.working_group.slug == "wg1"


def test_api_other_event_and_plain_member_forbidden(
    event: Event, co_organizer: User, member: User, make_event: Callable[..., Event]
) -> None:
    other = make_event(title="Another workshop")

    denied_other = _send(_api(co_organizer), "patch", f"/api/v1/events/{other.pk}/", {"title": "x"})
    denied_member = _send(_api(member), "patch", f"/api/v1/events/{event.pk}/", {"title": "x"})
    not_cancelled = _api(member).delete(f"/api/v1/events/{event.pk}/")

    assert [r.status_code for r in (denied_other, denied_member, not_cancelled)] == [403] * 3
    assert Event.objects.get(pk=event.pk).status == "scheduled"


def test_api_chair_still_names_co_organizers(event: Event, chair: User) -> None:
    UserFactory(handle="carl", name="Carl Zimmer")

    response = _send(_api(chair), "patch", f"/api/v1/events/{event.pk}/", {"organizers": ["carl"]})

    assert (response.status_code, response.json()["organizers"]) == (200, ["carl", chair.handle])


def test_api_co_organizer_moves_one_date_of_a_series(
    make_event: Callable[..., Event], chair: User, co_organizer: User
) -> None:
    series = make_event(title="Weekly", recurrence="FREQ=WEEKLY;COUNT=3", organizers=[co_organizer])
    second = FUTURE + timedelta(days=7)

    response = _send(
        _api(co_organizer),
        "put",
        f"/api/v1/events/{series.pk}/occurrences/{second:%Y%m%dT%H%M%SZ}/",
        {"starts_at": "2030-03-20T14:00:00Z", "ends_at": "2030-03-20T16:00:00Z"},
    )

    assert response.status_code == 200
    assert series.overrides.get().original_start == second


# --- Seeing a working-group-only event ----------------------------------------------------------


def test_group_only_event_visible_to_its_co_organizer_outside_the_group(
    make_event: Callable[..., Event], co_organizer: User
) -> None:
    # Arrange
    mine = make_event(title="Closed meeting", visibility="working_group", organizers=[co_organizer])
    hidden = make_event(title="Other closed meeting", visibility="working_group")
    client = _api(co_organizer)

    # Act
    listed = client.get("/api/v1/events/").json()

    # Assert
    assert [e["title"] for e in listed] == ["Closed meeting"]
    assert client.get(f"/api/v1/events/{mine.pk}/").status_code == 200
    assert client.get(f"/api/v1/events/{hidden.pk}/").status_code == 404
    assert _page(co_organizer).get(f"/events/{mine.pk}/").status_code == 200


# --- The live room ------------------------------------------------------------------------------


def test_co_organizer_reads_and_moderates_the_event_room_only(
    make_event: Callable[..., Event], chair: User, co_organizer: User, member: User
) -> None:
    # Arrange: a working-group-only event, its own live room with a member's message.
    closed = make_event(
        title="Closed meeting", visibility="working_group", organizers=[co_organizer]
    )
    room = services.live_room_create(event=closed, actor=chair)
    message = MessageFactory(thread=ThreadFactory(room=room, author=member), author=member)
    topic_room = Room.objects.get(slug="wg1-a")

    # Act: hide the message through the forum page.
    response = _page(co_organizer).post(f"/messages/{message.pk}/hide/", {"reason": "off topic"})

    # Assert
    message.refresh_from_db()
    assert policy.can_read_room(co_organizer, room) is True
    assert policy.can_moderate_room(co_organizer, room) is True
    assert policy.can_moderate_room(co_organizer, topic_room) is False
    assert response.status_code == 302
    assert message.hidden_at is not None


def test_a_co_organizer_outside_the_group_is_told_of_mentions_in_the_event_room(
    make_event: Callable[..., Event], chair: User, co_organizer: User, member: User
) -> None:
    # Arrange: a working-group-only event, its own live room; an outsider with no role.
    from notifications import recipients

    closed = make_event(
        title="Closed meeting", visibility="working_group", organizers=[co_organizer]
    )
    room = services.live_room_create(event=closed, actor=chair)
    thread = ThreadFactory(room=room, author=member)
    outsider = UserFactory(handle="olga")

    # Act: the notification rules' reader check, as for an @mention of both.
    told = recipients.mentioned(
        member_ids=[co_organizer.pk, outsider.pk], author_id=member.pk, thread_id=thread.pk
    )

    # Assert: the same answer as policy.can_read_room.
    assert told == [co_organizer.pk]
    assert policy.can_read_room(co_organizer, room) is True
    assert policy.can_read_room(outsider, room) is False


def test_linked_topic_room_is_not_moderated_by_co_organizers(
    make_event: Callable[..., Event], co_organizer: User
) -> None:
    topic_room = Room.objects.get(slug="wg1-a")
    make_event(room=topic_room, organizers=[co_organizer])

    assert policy.can_moderate_room(co_organizer, topic_room) is False


def test_co_organizer_taken_off_loses_the_room_and_their_sockets_recheck(
    make_event: Callable[..., Event],
    chair: User,
    co_organizer: User,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    closed = make_event(
        title="Closed meeting", visibility="working_group", organizers=[co_organizer]
    )
    room = services.live_room_create(event=closed, actor=chair)
    published: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        services.bus, "publish_on_commit", lambda group, frame: published.append((group, frame))
    )

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        services.event_update(event=closed, actor=chair, changes={"organizers": []})

    # Assert
    fresh = User.objects.get(pk=co_organizer.pk)
    assert policy.can_read_room(fresh, room) is False
    assert policy.can_moderate_room(fresh, room) is False
    assert published == [(f"user.{co_organizer.pk}", {"type": "access.changed"})]


def test_room_of_no_event_named_like_one_gives_no_rights(
    event: Event, co_organizer: User, wg1: WorkingGroup
) -> None:
    # A room that merely looks like the event's (not linked from it) is not its live room.
    room = Room.objects.create(slug=f"event-{event.pk}", title="Look-alike", working_group=wg1)

    assert policy.can_moderate_room(co_organizer, room) is False


def test_chair_of_another_group_co_organizing_keeps_role_rules(
    event: Event, co_organizer: User
) -> None:
    # A co-organizer who chairs wg2 still may not move the wg1 event to wg2.
    MembershipFactory(
        member=co_organizer, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.CHAIR
    )
    policy.forget_roles(co_organizer)

    response = _send(
        _api(co_organizer), "patch", f"/api/v1/events/{event.pk}/", {"working_group": "wg2"}
    )

    assert response.status_code == 403
    assert Event.objects.get(pk=event.pk).working_group.slug == "wg1"


def test_edit_page_co_organizer_of_a_network_wide_event(
    make_event: Callable[..., Event], secretariat: User, co_organizer: User
) -> None:
    # Arrange: an event of the whole network, scheduled by the secretariat.
    network = make_event(actor=secretariat, working_group=None, organizers=[co_organizer])

    # Act
    response = _page(co_organizer).post(
        f"/events/{network.pk}/edit/", _edit_data(network, title="Regional forum", working_group="")
    )

    # Assert
    network.refresh_from_db()
    assert response.status_code == 302
    assert (network.title, network.working_group_id) == ("Regional forum", None)
