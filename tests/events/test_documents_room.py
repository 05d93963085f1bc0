"""Event documents, the live room made on request, one date of a series, bad input in pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.test import Client

from community.models import User
from events import services
from events.models import Event, EventDocument, EventOccurrenceOverride, Registration
from forums import selectors as forum_selectors
from forums.models import Room
from notifications import bus
from tests.factories import UserFactory

from .conftest import FUTURE

pytestmark = pytest.mark.django_db

MakeEvent = Callable[..., Event]
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48 + b"PE\x00\x00"
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def error_codes(error: ValidationError) -> dict[str, list[str]]:
    return {f: [e.code for e in errs] for f, errs in error.error_dict.items()}  # type: ignore[misc]


def outsider() -> User:
    """A verified participant of no working group."""
    return UserFactory(email="out@example.org", name="Olga Outsider", handle="olga")


# --- Documents: service -----------------------------------------------------------------------


def test_document_add_file_sniffed_and_stored_under_generated_name(
    workshop: Event, chair: User, media: Path
) -> None:
    # Act
    document = services.document_add(
        event=workshop,
        actor=chair,
        title="Programme",
        uploaded_file=ContentFile(PDF, name="../../programme.exe"),
    )

    # Assert
    document.refresh_from_db()
    assert (document.content_type, document.size, document.original_name) == (
        "application/pdf",
        len(PDF),
        "programme.exe.pdf",
    )
    assert document.file.name.startswith("event-documents/")
    assert "programme" not in document.file.name
    assert [p.read_bytes() for p in stored_files(media)] == [PDF]


@pytest.mark.parametrize(
    ("data", "code"), [(EXE, "unsupported_type"), (HTML, "unsupported_type"), (b"", "invalid")]
)
def test_document_add_refused_file_stores_nothing(
    workshop: Event, chair: User, media: Path, data: bytes, code: str
) -> None:
    # Act
    with pytest.raises(ValidationError) as caught:
        services.document_add(
            event=workshop, actor=chair, title="X", uploaded_file=ContentFile(data, name="a.pdf")
        )

    # Assert
    assert error_codes(caught.value) == {"file": [code]}
    assert (EventDocument.objects.count(), stored_files(media)) == (0, [])


def test_document_add_too_large_uses_attachment_limit(
    workshop: Event, chair: User, media: Path, settings: Any
) -> None:
    # Arrange
    settings.FORUMS_ATTACHMENT_MAX_BYTES = len(PDF) - 1

    # Act
    with pytest.raises(ValidationError) as caught:
        services.document_add(
            event=workshop, actor=chair, title="X", uploaded_file=ContentFile(PDF, name="a.pdf")
        )

    # Assert
    assert error_codes(caught.value) == {"file": ["too_large"]}
    assert (EventDocument.objects.count(), stored_files(media)) == (0, [])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"url": "javascript:alert(1)"}, {"url": ["invalid"]}),
        ({"url": "ftp://files.example.org/a.pdf"}, {"url": ["invalid"]}),
        ({}, {"file": ["file_or_link"]}),
        (
            {"url": "https://example.org/a.pdf", "uploaded_file": ContentFile(PDF, name="a.pdf")},
            {"file": ["file_or_link"]},
        ),
    ],
)
def test_document_add_bad_link_refused(
    workshop: Event,
    chair: User,
    media: Path,
    values: dict[str, Any],
    expected: dict[str, list[str]],
) -> None:
    # Act
    with pytest.raises(ValidationError) as caught:
        services.document_add(event=workshop, actor=chair, title="X", **values)

    # Assert
    assert error_codes(caught.value) == expected
    assert (EventDocument.objects.count(), stored_files(media)) == (0, [])


def test_document_add_by_member_refused(workshop: Event, member: User, media: Path) -> None:
    with pytest.raises(PermissionDenied):
        services.document_add(
            event=workshop, actor=member, title="X", url="https://example.org/a.pdf"
        )
    assert EventDocument.objects.count() == 0


def test_document_delete_removes_file_after_commit(
    workshop: Event,
    chair: User,
    media: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Arrange
    document = services.document_add(
        event=workshop, actor=chair, title="P", uploaded_file=ContentFile(PDF, name="p.pdf")
    )

    # Act
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.document_delete(document=document, actor=chair)
    still_there = stored_files(media)
    for callback in callbacks:
        callback()

    # Assert
    assert (len(still_there), stored_files(media), EventDocument.objects.count()) == (1, [], 0)


def test_agenda_item_links_only_documents_of_its_event(
    make_event: MakeEvent, chair: User, media: Path
) -> None:
    # Arrange
    first, second = make_event(), make_event(title="Other")
    foreign = services.document_add(
        event=second, actor=chair, title="F", url="https://example.org/f.pdf"
    )

    # Act
    with pytest.raises(ValidationError) as caught:
        services.agenda_item_create(
            event=first,
            actor=chair,
            title="Opening",
            starts_at=first.starts_at,
            ends_at=first.ends_at,
            documents=[foreign],
        )

    # Assert
    assert error_codes(caught.value) == {"documents": ["document_outside_event"]}
    assert first.agenda_items.count() == 0


# --- Documents: pages and API -----------------------------------------------------------------


def test_document_download_is_attachment_with_nosniff(
    workshop: Event, chair: User, member: User, media: Path
) -> None:
    # Arrange
    document = services.document_add(
        event=workshop, actor=chair, title="P", uploaded_file=ContentFile(PDF, name="p.pdf")
    )

    # Act
    response = signed_in(member).get(f"/events/{workshop.pk}/documents/{document.pk}/")
    body = b"".join(response.streaming_content)

    # Assert
    assert response.status_code == 200
    assert body == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="p.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"


def test_document_of_group_only_event_hidden_from_outsider(
    make_event: MakeEvent, chair: User, media: Path
) -> None:
    # Arrange
    event = make_event(visibility=Event.Visibility.WORKING_GROUP)
    document = services.document_add(
        event=event, actor=chair, title="P", uploaded_file=ContentFile(PDF, name="p.pdf")
    )
    client = signed_in(outsider())

    # Act
    download = client.get(f"/events/{event.pk}/documents/{document.pk}/")
    api = client.get(f"/api/v1/events/{event.pk}/")
    wrong_event = signed_in(chair).get(f"/events/{event.pk + 999}/documents/{document.pk}/")

    # Assert
    assert (download.status_code, api.status_code, wrong_event.status_code) == (404, 404, 404)


def test_event_page_lists_documents_and_agenda_links(
    workshop: Event, chair: User, member: User, media: Path
) -> None:
    # Arrange
    slides = services.document_add(
        event=workshop, actor=chair, title="Slides <b>", url="https://example.org/s.pdf"
    )
    services.agenda_item_create(
        event=workshop,
        actor=chair,
        title="Opening",
        starts_at=workshop.starts_at,
        ends_at=workshop.ends_at,
        documents=[slides],
    )

    # Act
    page = signed_in(member).get(f"/events/{workshop.pk}/").content.decode()

    # Assert
    link = '<a class="event-document" href="https://example.org/s.pdf" rel="noopener noreferrer nofollow external">Slides &lt;b&gt;</a>'
    assert page.count(link) == 2  # under the agenda item and in the documents list
    assert "Slides <b>" not in page


def test_documents_page_upload_and_refusals(workshop: Event, chair: User, media: Path) -> None:
    # Arrange
    client = signed_in(chair)
    url = f"/events/{workshop.pk}/documents/"

    # Act
    refused = client.post(url, {"title": "Bad", "file": SimpleUploadedFile("x.pdf", EXE)})
    neither = client.post(url, {"title": "Nothing"})
    added = client.post(url, {"title": "Programme", "file": SimpleUploadedFile("p.pdf", PDF)})

    # Assert
    assert refused.status_code == 400
    assert "This kind of file cannot be added." in refused.content.decode()
    assert neither.status_code == 400
    assert "Give a file or a link" in neither.content.decode()
    assert added.status_code == 302
    assert list(EventDocument.objects.values_list("title", "content_type")) == [
        ("Programme", "application/pdf")
    ]
    assert len(stored_files(media)) == 1


def test_documents_page_too_large_413_nothing_stored(
    workshop: Event, chair: User, media: Path, settings: Any
) -> None:
    # Arrange
    settings.FORUMS_ATTACHMENT_MAX_BYTES = 10

    # Act
    response = signed_in(chair).post(
        f"/events/{workshop.pk}/documents/",
        {"title": "Big", "file": SimpleUploadedFile("p.pdf", PDF)},
    )

    # Assert
    assert response.status_code == 413
    assert (EventDocument.objects.count(), stored_files(media)) == (0, [])


def test_documents_page_member_forbidden(workshop: Event, member: User, media: Path) -> None:
    response = signed_in(member).post(
        f"/events/{workshop.pk}/documents/", {"title": "x", "url": "https://example.org/"}
    )
    assert response.status_code == 403
    assert EventDocument.objects.count() == 0


def test_api_event_detail_lists_documents(
    workshop: Event, chair: User, member: User, media: Path
) -> None:
    # Arrange
    file_doc = services.document_add(
        event=workshop, actor=chair, title="P", uploaded_file=ContentFile(PDF, name="p.pdf")
    )
    link_doc = services.document_add(
        event=workshop, actor=chair, title="L", url="https://example.org/l"
    )

    # Act
    data = signed_in(member).get(f"/api/v1/events/{workshop.pk}/").json()

    # Assert
    assert data["documents"] == [
        {
            "id": file_doc.pk,
            "title": "P",
            "kind": "file",
            "url": f"http://127.0.0.1:8000/events/{workshop.pk}/documents/{file_doc.pk}/",
            "name": "p.pdf",
            "content_type": "application/pdf",
            "size": len(PDF),
            "agenda_items": [],
        },
        {
            "id": link_doc.pk,
            "title": "L",
            "kind": "link",
            "url": "https://example.org/l",
            "name": None,
            "content_type": None,
            "size": None,
            "agenda_items": [],
        },
    ]


# --- The live room ----------------------------------------------------------------------------


def test_live_room_create_makes_and_links_room(workshop: Event, chair: User) -> None:
    # Act
    room = services.live_room_create(event=workshop, actor=chair)

    # Assert
    workshop.refresh_from_db()
    assert (room.slug, room.title, room.working_group_id, room.state) == (
        f"event-{workshop.pk}",
        workshop.title,
        workshop.working_group_id,
        Room.State.OPEN,
    )
    assert workshop.room_id == room.pk


def test_live_room_create_twice_refused(workshop: Event, chair: User) -> None:
    services.live_room_create(event=workshop, actor=chair)
    with pytest.raises(ValidationError) as caught:
        services.live_room_create(event=workshop, actor=chair)
    assert error_codes(caught.value) == {"room": ["live_room_exists"]}
    assert Room.objects.filter(slug__startswith="event-").count() == 1


def test_live_room_for_group_only_event_is_read_by_the_group_only(
    make_event: MakeEvent, chair: User, secretariat: User
) -> None:
    # Arrange
    event = make_event(visibility=Event.Visibility.WORKING_GROUP)
    stranger = outsider()

    # Act
    room = services.live_room_create(event=event, actor=chair)

    # Assert
    event.refresh_from_db()
    assert (event.room_id, room.visibility, room.working_group_id) == (
        room.pk,
        Room.Visibility.WORKING_GROUP,
        event.working_group_id,
    )
    readers = [who for who in (chair, secretariat, stranger) if _reads(who, room.slug)]
    assert readers == [chair, secretariat]


def _reads(member: User, slug: str) -> bool:
    try:
        forum_selectors.room_for_member(slug=slug, member=member)
    except Http404:
        return False
    return True


def test_event_visibility_change_follows_into_its_own_room(
    workshop: Event, chair: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    room = services.live_room_create(event=workshop, actor=chair)
    stranger = outsider()
    assert room.visibility == Room.Visibility.NETWORK
    published: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(bus, "publish_on_commit", lambda g, f: published.append((g, dict(f))))

    # Act
    services.event_update(
        event=workshop, actor=chair, changes={"visibility": Event.Visibility.WORKING_GROUP}
    )
    narrowed = Room.objects.get(pk=room.pk).visibility
    readable_then = _reads(stranger, room.slug)
    services.event_update(
        event=workshop, actor=chair, changes={"visibility": Event.Visibility.PUBLIC}
    )

    # Assert
    assert (narrowed, readable_then) == (Room.Visibility.WORKING_GROUP, False)
    assert Room.objects.get(pk=room.pk).visibility == Room.Visibility.NETWORK
    assert _reads(stranger, room.slug)
    # Subscribers re-check their access after each change (forums.services.room_visibility_set).
    access = [item for item in published if item[1] == {"type": "access.changed"}]
    assert access == [(bus.room_group(room.pk), {"type": "access.changed"})] * 2


def test_event_visibility_change_leaves_a_linked_topic_room_alone(
    make_event: MakeEvent, chair: User
) -> None:
    # Arrange
    topic_room = Room.objects.get(slug="wg1-a")
    event = make_event(room=topic_room)

    # Act
    services.event_update(
        event=event, actor=chair, changes={"visibility": Event.Visibility.WORKING_GROUP}
    )

    # Assert
    event.refresh_from_db()
    topic_room.refresh_from_db()
    assert (event.visibility, event.room_id, topic_room.visibility) == (
        Event.Visibility.WORKING_GROUP,
        topic_room.pk,
        Room.Visibility.NETWORK,
    )


def test_live_room_button_creates_room_and_page_links_it(
    workshop: Event, chair: User, member: User
) -> None:
    # Arrange
    client = signed_in(chair)
    before = client.get(f"/events/{workshop.pk}/").content.decode()

    # Act
    response = client.post(f"/events/{workshop.pk}/live-room/")
    after = signed_in(member).get(f"/events/{workshop.pk}/").content.decode()

    # Assert
    assert "Create a live room" in before
    assert response.status_code == 302
    assert f'href="/rooms/event-{workshop.pk}/"' in after
    assert "Create a live room" not in after


def test_live_room_button_of_group_only_event_makes_a_group_room(
    make_event: MakeEvent, chair: User
) -> None:
    # Arrange
    event = make_event(visibility=Event.Visibility.WORKING_GROUP)
    client = signed_in(chair)
    before = client.get(f"/events/{event.pk}/").content.decode()

    # Act
    response = client.post(f"/events/{event.pk}/live-room/")
    room_page = client.get(f"/rooms/event-{event.pk}/").content.decode()

    # Assert
    assert "Create a live room" in before
    assert response.status_code == 302
    assert Room.objects.get(slug=f"event-{event.pk}").visibility == Room.Visibility.WORKING_GROUP
    assert "Working group only" in room_page


def test_live_room_button_member_forbidden(workshop: Event, member: User) -> None:
    response = signed_in(member).post(f"/events/{workshop.pk}/live-room/")
    assert response.status_code == 403
    assert Room.objects.filter(slug=f"event-{workshop.pk}").count() == 0


# --- One date of a series ---------------------------------------------------------------------


@pytest.fixture
def series(make_event: MakeEvent) -> Event:
    return make_event(recurrence="FREQ=WEEKLY;COUNT=4")


def key(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def test_event_page_shows_moved_occurrence(series: Event, chair: User, member: User) -> None:
    # Arrange
    second = FUTURE + timedelta(weeks=1)
    services.occurrence_reschedule(
        event=series,
        actor=chair,
        original_start=second,
        starts_at=second + timedelta(days=1),
        ends_at=second + timedelta(days=1, hours=2),
    )

    # Act
    page = signed_in(member).get(f"/events/{series.pk}/?occurrence={key(second)}").content.decode()

    # Assert: Port of Spain is UTC-4; the moved date is Wed 20 Mar 2030, 10:00-12:00 there.
    assert f'data-occurrence="{key(second)}"' in page
    assert "Wed 20 Mar 2030, 10:00" in page
    assert "Moved" in page
    assert "Registration is for every date of the series." in page


def test_event_page_unknown_occurrence_says_so(series: Event, member: User) -> None:
    page = signed_in(member).get(f"/events/{series.pk}/?occurrence=20300313T140000Z")
    assert page.status_code == 200
    assert "is not a date of this event" in page.content.decode()


def test_calendar_links_each_occurrence(series: Event, member: User) -> None:
    page = signed_in(member).get("/calendar/?month=2030-03").content.decode()
    assert f'/events/{series.pk}/?occurrence={key(FUTURE + timedelta(weeks=2))}"' in page


def test_occurrence_page_cancels_one_date(series: Event, chair: User) -> None:
    # Arrange
    third = FUTURE + timedelta(weeks=2)

    # Act
    response = signed_in(chair).post(
        f"/events/{series.pk}/dates/{key(third)}/", {"action": "cancel", "message": "Holiday"}
    )

    # Assert
    assert response.status_code == 302
    assert list(EventOccurrenceOverride.objects.values_list("original_start", "cancelled")) == [
        (third, True)
    ]


def test_occurrence_page_bad_move_changes_nothing(series: Event, chair: User) -> None:
    # Act
    response = signed_in(chair).post(
        f"/events/{series.pk}/dates/{key(FUTURE)}/",
        {"action": "move", "starts_at": "2030-03-12T12:00", "ends_at": "2030-03-12T11:00"},
    )

    # Assert
    assert response.status_code == 400
    assert "The event must end after it starts." in response.content.decode()
    assert EventOccurrenceOverride.objects.count() == 0


def test_occurrence_page_not_a_date_404(series: Event, chair: User) -> None:
    response = signed_in(chair).get(f"/events/{series.pk}/dates/20300313T140000Z/")
    assert response.status_code == 404


def test_occurrence_page_member_forbidden(series: Event, member: User) -> None:
    response = signed_in(member).post(
        f"/events/{series.pk}/dates/{key(FUTURE)}/", {"action": "cancel"}
    )
    assert response.status_code == 403
    assert EventOccurrenceOverride.objects.count() == 0


# --- Bad input in the pages and the API changes nothing ---------------------------------------


def create_data(**overrides: str) -> dict[str, str]:
    data = {
        "title": "Focus session",
        "kind": "focus_session",
        "working_group": "wg1",
        "starts_at": "2030-04-09T10:00",
        "ends_at": "2030-04-09T12:00",
        "timezone": "America/Port_of_Spain",
        "visibility": "public",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ends_at": "2030-04-09T09:00"}, "The event must end after it starts."),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus is not a known time zone"),
        ({"recurrence": "FREQ=FORTNIGHTLY"}, ""),
        (
            {
                "registration_opens_at": "2030-04-01T10:00",
                "registration_closes_at": "2030-03-01T10:00",
            },
            "Registration must close after it opens.",
        ),
    ],
)
def test_create_form_bad_input_shows_error_and_creates_nothing(
    chair: User, plan: None, overrides: dict[str, str], message: str
) -> None:
    response = signed_in(chair).post("/events/new/", create_data(**overrides))
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert message in response.content.decode()
    assert Event.objects.count() == 0


def test_edit_form_capacity_below_registrations_changes_nothing(
    make_event: MakeEvent, chair: User, member: User
) -> None:
    # Arrange
    event = make_event(capacity=5)
    services.registration_create(event=event, member=member)
    services.registration_create(event=event, member=chair)
    data = create_data(
        title=event.title,
        kind=event.kind,
        starts_at="2030-03-12T10:00",
        ends_at="2030-03-12T12:00",
        capacity="1",
    )

    # Act
    response = signed_in(chair).post(f"/events/{event.pk}/edit/", data)

    # Assert
    assert "2 members are already registered; the capacity cannot be lower." in (
        response.content.decode()
    )
    event.refresh_from_db()
    assert event.capacity == 5


def test_register_outside_window_page_and_api_change_nothing(
    make_event: MakeEvent, member: User
) -> None:
    # Arrange
    event = make_event(
        registration_opens_at=FUTURE - timedelta(days=2),
        registration_closes_at=FUTURE - timedelta(days=1),
    )
    client = signed_in(member)

    # Act
    page = client.post(f"/events/{event.pk}/register/", follow=True)
    api = client.put(f"/api/v1/events/{event.pk}/registration/")

    # Assert
    assert "Registration for this event is not open now." in page.content.decode()
    assert api.status_code == 400
    assert api.json()["errors"] == [
        {
            "field": "event",
            "code": "registration_closed",
            "message": "Registration for this event is not open now.",
        }
    ]
    assert Registration.objects.filter(event=event).count() == 0


def test_agenda_page_adds_item_with_member_speaker_and_document(
    workshop: Event, chair: User, member: User, media: Path
) -> None:
    # Arrange
    document = services.document_add(
        event=workshop, actor=chair, title="Slides", url="https://example.org/s.pdf"
    )

    # Act
    response = signed_in(chair).post(
        f"/events/{workshop.pk}/agenda/",
        {
            "title": "Opening",
            "starts_at": "2030-03-12T10:00",
            "ends_at": "2030-03-12T10:30",
            "speaker_members": [str(member.pk)],
            "speakers": "Guest Speaker",
            "documents": [str(document.pk)],
        },
    )

    # Assert
    assert response.status_code == 302
    item = workshop.agenda_items.get()
    assert list(item.speaker_members.all()) == [member]
    assert list(item.documents.all()) == [document]
    page = signed_in(member).get(f"/events/{workshop.pk}/").content.decode()
    assert "Ana Pérez, Guest Speaker" in page


def test_agenda_item_documents_form_replaces_links(
    workshop: Event, chair: User, media: Path
) -> None:
    # Arrange
    first = services.document_add(event=workshop, actor=chair, title="A", url="https://a.example/")
    second = services.document_add(event=workshop, actor=chair, title="B", url="https://b.example/")
    item = services.agenda_item_create(
        event=workshop,
        actor=chair,
        title="Opening",
        starts_at=workshop.starts_at,
        ends_at=workshop.ends_at,
        documents=[first],
    )

    # Act
    response = signed_in(chair).post(
        f"/events/{workshop.pk}/agenda/{item.pk}/documents/", {"documents": [str(second.pk)]}
    )

    # Assert
    assert response.status_code == 302
    assert list(item.documents.all()) == [second]


def test_occurrence_change_of_cancelled_series_refused(series: Event, chair: User) -> None:
    services.event_cancel(event=series, actor=chair)
    with pytest.raises(ValidationError) as caught:
        services.occurrence_cancel(event=series, actor=chair, original_start=FUTURE)
    assert caught.value.code == "event_cancelled"
    assert EventOccurrenceOverride.objects.count() == 0


def test_occurrence_change_of_excluded_date_refused(make_event: MakeEvent, chair: User) -> None:
    second = FUTURE + timedelta(weeks=1)
    series = make_event(recurrence="FREQ=WEEKLY;COUNT=4", exdates=[second])
    with pytest.raises(ValidationError) as caught:
        services.occurrence_cancel(event=series, actor=chair, original_start=second)
    assert error_codes(caught.value) == {"original_start": ["not_an_occurrence"]}
    assert EventOccurrenceOverride.objects.count() == 0


# --- API: documents, the live room, one date -------------------------------------------------


def test_api_document_upload_and_delete(workshop: Event, chair: User, media: Path) -> None:
    # Arrange
    client = signed_in(chair)
    url = f"/api/v1/events/{workshop.pk}/documents/"

    # Act
    created = client.post(url, {"title": "Programme", "file": SimpleUploadedFile("p.pdf", PDF)})
    document_id = created.json()["id"]
    deleted = client.delete(f"{url}{document_id}/")

    # Assert
    assert created.status_code == 201
    assert created.json()["content_type"] == "application/pdf"
    assert deleted.status_code == 204
    assert EventDocument.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"title": "Exe", "file": "exe"}, (415, ["unsupported_type"])),
        ({"title": "Nothing"}, (400, ["file_or_link"])),
        ({"title": "Script", "url": "javascript:alert(1)"}, (400, ["invalid"])),
    ],
)
def test_api_document_refused_stores_nothing(
    workshop: Event, chair: User, media: Path, data: dict[str, Any], expected: tuple[int, list[str]]
) -> None:
    # Arrange
    if data.get("file") == "exe":
        data = {**data, "file": SimpleUploadedFile("x.pdf", EXE)}

    # Act
    response = signed_in(chair).post(f"/api/v1/events/{workshop.pk}/documents/", data)

    # Assert
    assert (response.status_code, [e["code"] for e in response.json()["errors"]]) == expected
    assert (EventDocument.objects.count(), stored_files(media)) == (0, [])


def test_api_document_upload_member_forbidden(workshop: Event, member: User, media: Path) -> None:
    response = signed_in(member).post(
        f"/api/v1/events/{workshop.pk}/documents/", {"title": "x", "url": "https://example.org/"}
    )
    assert response.status_code == 403
    assert EventDocument.objects.count() == 0


def test_api_live_room_create(workshop: Event, chair: User) -> None:
    client = signed_in(chair)
    first = client.post(f"/api/v1/events/{workshop.pk}/live-room/")
    second = client.post(f"/api/v1/events/{workshop.pk}/live-room/")
    assert (first.status_code, first.json()["room"]) == (201, f"event-{workshop.pk}")
    assert (second.status_code, second.json()["errors"][0]["code"]) == (400, "live_room_exists")


def test_api_occurrence_move_and_cancel(series: Event, chair: User) -> None:
    # Arrange
    client = signed_in(chair)
    second = FUTURE + timedelta(weeks=1)
    third = FUTURE + timedelta(weeks=2)

    # Act
    moved = client.put(
        f"/api/v1/events/{series.pk}/occurrences/{key(second)}/",
        {"starts_at": "2030-03-20T10:00:00-04:00", "ends_at": "2030-03-20T12:00:00-04:00"},
        content_type="application/json",
    )
    cancelled = client.delete(
        f"/api/v1/events/{series.pk}/occurrences/{key(third)}/",
        {"message": "Holiday"},
        content_type="application/json",
    )
    backwards = client.put(
        f"/api/v1/events/{series.pk}/occurrences/{key(FUTURE)}/",
        {"starts_at": "2030-03-12T12:00:00-04:00", "ends_at": "2030-03-12T11:00:00-04:00"},
        content_type="application/json",
    )
    unknown = client.delete(f"/api/v1/events/{series.pk}/occurrences/20300313T140000Z/")

    # Assert
    assert moved.json() == {
        "original_start": "2030-03-19T10:00:00-04:00",
        "starts_at": "2030-03-20T10:00:00-04:00",
        "ends_at": "2030-03-20T12:00:00-04:00",
        "cancelled": False,
    }
    assert (cancelled.status_code, cancelled.json()["cancelled"]) == (200, True)
    assert backwards.status_code == 400
    assert backwards.json()["errors"][0]["code"] == "end_before_start"
    assert unknown.status_code == 404
    assert EventOccurrenceOverride.objects.count() == 2


def test_calendar_filters_apply_with_a_button_not_on_change(member: User, plan: None) -> None:
    # A keyboard user stepping through a select with the arrow keys must not leave the page.
    page = signed_in(member).get("/calendar/").content.decode()
    start = page.index('<form class="calendar-filters"')
    filters = page[start : page.index("</form>", start)]
    assert "data-autosubmit" not in filters
    assert '<button class="button-small" type="submit">Filter</button>' in filters


def test_duplicate_keeps_topic_room_not_own_live_room(make_event: MakeEvent, chair: User) -> None:
    # Arrange
    topic_room = Room.objects.get(slug="wg1-a")
    with_topic_room = make_event(room=topic_room)
    with_own_room = make_event(title="Own")
    services.live_room_create(event=with_own_room, actor=chair)

    # Act
    copy_topic = services.event_duplicate(
        event=with_topic_room, actor=chair, starts_at=FUTURE + timedelta(days=30)
    )
    copy_own = services.event_duplicate(
        event=with_own_room, actor=chair, starts_at=FUTURE + timedelta(days=30)
    )

    # Assert
    assert (copy_topic.room_id, copy_own.room_id) == (topic_room.pk, None)


# The same at 1 and 3 documents: documents, agenda items, their speakers and their documents
# are one query each, whatever their number.
PAGE_QUERIES = 14
API_QUERIES = 10


@pytest.mark.parametrize("count", [1, 3])
def test_event_page_and_api_detail_queries_do_not_grow_with_documents(
    workshop: Event, chair: User, member: User, django_assert_num_queries: Any, count: int
) -> None:
    # Arrange: `count` documents, each linked from its own agenda item.
    for n in range(count):
        document = services.document_add(
            event=workshop, actor=chair, title=f"D{n}", url=f"https://example.org/{n}"
        )
        services.agenda_item_create(
            event=workshop,
            actor=chair,
            title=f"Item {n}",
            starts_at=workshop.starts_at,
            ends_at=workshop.ends_at,
            documents=[document],
            speaker_members=[member],
        )
    client = signed_in(member)
    client.get(f"/events/{workshop.pk}/")  # session and language settle

    # Act / Assert
    with django_assert_num_queries(PAGE_QUERIES):
        page = client.get(f"/events/{workshop.pk}/")
    with django_assert_num_queries(API_QUERIES):
        api = client.get(f"/api/v1/events/{workshop.pk}/")
    assert page.content.decode().count('class="event-document"') == 2 * count
    assert len(api.json()["documents"]) == count


def test_occurrence_move_signal_carries_the_date_after_commit(
    series: Event, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    from events import signals

    received: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        received.append({k: kwargs[k] for k in ("changed", "original_start", "starts_at")})

    signals.event_changed.connect(receive, weak=False)
    second = FUTURE + timedelta(weeks=1)
    moved = second + timedelta(days=1)

    # Act
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.occurrence_reschedule(
                event=series,
                actor=chair,
                original_start=second,
                starts_at=moved,
                ends_at=moved + timedelta(hours=1),
            )
        before_commit = list(received)
        for callback in callbacks:
            callback()
    finally:
        signals.event_changed.disconnect(receive)

    # Assert
    assert before_commit == []
    assert received == [{"changed": ["occurrence"], "original_start": second, "starts_at": moved}]
