"""The calendar pages: month, week, list, the event page, registration and organizer pages."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone, translation
from django.utils.formats import date_format

from community.models import Organization, Role, User, WorkingGroup
from events import services
from events.models import AgendaItem, Event, Registration
from events.views import Day
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

from .conftest import FUTURE

MakeEvent = Callable[..., Event]
DASH = "\N{EN DASH}"


def logged_in(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def create_form_data(**overrides: str) -> dict[str, str]:
    data = {
        "title": "Focus session on labor inspection",
        "kind": "focus_session",
        "working_group": "wg1",
        "description": "We compare **inspection** methods.",
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


# --- Access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/calendar/", "/calendar/week/", "/calendar/list/", "/events/new/"],
)
def test_calendar_pages_anonymous_redirect_to_login(client: Client, plan: None, url: str) -> None:
    # Act
    response = client.get(url)

    # Assert
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_event_page_anonymous_redirects_to_login(client: Client, workshop: Event) -> None:
    # Act
    response = client.get(f"/events/{workshop.pk}/")

    # Assert
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/events/{workshop.pk}/"


def test_event_create_page_member_forbidden(client: Client, member: User) -> None:
    # Act
    response = logged_in(client, member).get("/events/new/")

    # Assert
    assert response.status_code == 403


@pytest.mark.parametrize(
    "suffix",
    [
        "edit/",
        "reschedule/",
        "cancel/",
        "duplicate/",
        "registrations/",
        "agenda/",
        "registrations.csv",
    ],
)
def test_organizer_pages_member_forbidden(
    client: Client, member: User, workshop: Event, suffix: str
) -> None:
    # Act
    response = logged_in(client, member).get(f"/events/{workshop.pk}/{suffix}")

    # Assert
    assert response.status_code == 403


def test_event_page_hidden_event_not_found(client: Client, secretariat: User, plan: None) -> None:
    # Arrange: a wg2-only event and a member of wg1 only.
    wg2 = WorkingGroup.objects.get(slug="wg2")
    event = services.event_create(
        actor=secretariat,
        title="WG2 internal meeting",
        working_group=wg2,
        visibility=Event.Visibility.WORKING_GROUP,
        starts_at=FUTURE,
        ends_at=FUTURE + timedelta(hours=1),
        timezone="UTC",
    )
    outsider = UserFactory()
    MembershipFactory(member=outsider, role=Role.MEMBER)

    # Act
    response = logged_in(client, outsider).get(f"/events/{event.pk}/")

    # Assert
    assert response.status_code == 404


@pytest.mark.parametrize("user_fixture", ["member", "chair", "secretariat"])
def test_event_pages_render_for_each_role(
    client: Client, workshop: Event, user_fixture: str, request: pytest.FixtureRequest
) -> None:
    # Arrange
    user: User = request.getfixturevalue(user_fixture)
    logged_in(client, user)

    # Act
    statuses = [
        client.get(url).status_code
        for url in (
            "/calendar/?month=2030-03",
            "/calendar/week/?week=2030-W11",
            "/calendar/list/?start=2030-03-01",
            f"/events/{workshop.pk}/",
        )
    ]

    # Assert
    assert statuses == [200, 200, 200, 200]


def test_event_page_organizer_sees_manage_links(
    client: Client, chair: User, workshop: Event
) -> None:
    # Act
    body = logged_in(client, chair).get(f"/events/{workshop.pk}/").content.decode()

    # Assert
    assert f'href="/events/{workshop.pk}/edit/"' in body
    assert f'href="/events/{workshop.pk}/registrations/"' in body


def test_event_page_member_sees_no_manage_links(
    client: Client, member: User, workshop: Event
) -> None:
    # Act
    body = logged_in(client, member).get(f"/events/{workshop.pk}/").content.decode()

    # Assert
    assert f'href="/events/{workshop.pk}/edit/"' not in body
    assert f'href="/events/{workshop.pk}.ics"' in body


def test_event_page_links_live_room(client: Client, member: User, make_event: MakeEvent) -> None:
    # Arrange
    from forums.models import Room

    event = make_event(room=Room.objects.get(slug="wg1-a"), online=True)

    # Act
    body = logged_in(client, member).get(f"/events/{event.pk}/").content.decode()

    # Assert
    assert 'href="/rooms/wg1-a/"' in body


# --- Times in two zones -----------------------------------------------------------------------


def test_event_page_viewer_in_other_zone_sees_both_times(
    client: Client, member: User, workshop: Event
) -> None:
    # Arrange: 14:00 UTC is 10:00 in Port of Spain (UTC-4) and 11:00 in Santiago (UTC-3 in March).
    member.timezone = "America/Santiago"
    member.save(update_fields=["timezone"])

    # Act
    body = logged_in(client, member).get(f"/events/{workshop.pk}/").content.decode()

    # Assert
    assert (
        f'<span class="time-event-zone">Tue 12 Mar 2030, 10:00{DASH}12:00 Port of Spain</span>'
        f' <span class="time-sep">/</span> <span class="time-viewer-zone">11:00{DASH}13:00 your time'
        "</span>"
    ) in body


def test_event_page_viewer_with_same_offset_sees_one_time(
    client: Client, member: User, workshop: Event
) -> None:
    # Arrange: Caracas has Port of Spain's offset (UTC-4): one time is enough.
    member.timezone = "America/Caracas"
    member.save(update_fields=["timezone"])

    # Act
    body = logged_in(client, member).get(f"/events/{workshop.pk}/").content.decode()

    # Assert
    expected = (
        f'<time datetime="2030-03-12T14:00:00+00:00">Tue 12 Mar 2030, 10:00{DASH}12:00</time>'
    )
    assert expected in body
    assert "your time" not in body


def test_month_view_places_event_on_viewer_local_day(
    client: Client, member: User, make_event: MakeEvent
) -> None:
    # Arrange: 22:00 in Port of Spain on the 12th is already the 13th in UTC+9 (Tokyo).
    start = datetime(2030, 3, 13, 2, 0, tzinfo=UTC)
    make_event(title="Late session", starts_at=start, ends_at=start + timedelta(hours=1))
    member.timezone = "Asia/Tokyo"
    member.save(update_fields=["timezone"])

    # Act
    response = logged_in(client, member).get("/calendar/?month=2030-03")

    # Assert
    days = {
        day.day.isoformat(): [o.event.title for o in day.occurrences]
        for week in response.context["weeks"]
        for day in week
        if day.occurrences
    }
    assert days == {"2030-03-13": ["Late session"]}


# --- Calendar views and filters ---------------------------------------------------------------


@pytest.fixture
def mixed_events(make_event: MakeEvent, secretariat: User) -> list[Event]:
    wg2 = WorkingGroup.objects.get(slug="wg2")
    return [
        make_event(title="WG1 workshop"),
        make_event(
            title="WG1 meeting",
            kind=Event.Kind.MEETING,
            starts_at=FUTURE + timedelta(days=1),
            ends_at=FUTURE + timedelta(days=1, hours=1),
        ),
        services.event_create(
            actor=secretariat,
            title="WG2 webinar",
            kind=Event.Kind.WEBINAR,
            working_group=wg2,
            starts_at=FUTURE + timedelta(days=2),
            ends_at=FUTURE + timedelta(days=2, hours=1),
            timezone="America/New_York",
        ),
    ]


def titles_in(response: object) -> list[str]:
    context = response.context  # type: ignore[attr-defined]
    days = [d for week in context["weeks"] for d in week] if "weeks" in context else context["days"]
    return [o.event.title for d in days for o in d.occurrences]


@pytest.mark.parametrize(
    ("url", "query", "expected"),
    [
        ("/calendar/?month=2030-03", "", ["WG1 workshop", "WG1 meeting", "WG2 webinar"]),
        ("/calendar/?month=2030-03", "&working_group=wg2", ["WG2 webinar"]),
        ("/calendar/?month=2030-03", "&kind=meeting", ["WG1 meeting"]),
        ("/calendar/week/?week=2030-W11", "&working_group=wg1", ["WG1 workshop", "WG1 meeting"]),
        ("/calendar/week/?week=2030-W11", "&kind=webinar", ["WG2 webinar"]),
        ("/calendar/list/?start=2030-03-01", "&working_group=wg1&kind=workshop", ["WG1 workshop"]),
        ("/calendar/list/?start=2030-03-13", "", ["WG1 meeting", "WG2 webinar"]),
    ],
)
def test_calendar_views_with_filters_list_matching_events(
    *,
    client: Client,
    member: User,
    mixed_events: list[Event],
    url: str,
    query: str,
    expected: list[str],
) -> None:
    # Act
    response = logged_in(client, member).get(url + query)

    # Assert
    assert titles_in(response) == expected


def test_month_view_navigation_links_keep_filters(
    client: Client, member: User, mixed_events: list[Event]
) -> None:
    # Act
    body = (
        logged_in(client, member).get("/calendar/?month=2030-03&working_group=wg2").content.decode()
    )

    # Assert
    assert 'href="?month=2030-02&amp;working_group=wg2"' in body
    assert 'href="?month=2030-04&amp;working_group=wg2"' in body
    assert 'href="/calendar/week/?working_group=wg2"' in body


def test_month_view_marks_today_and_uses_table_headers(
    client: Client, member: User, plan: None
) -> None:
    # Act
    response = logged_in(client, member).get("/calendar/")

    # Assert
    body = response.content.decode()
    today = [d for week in response.context["weeks"] for d in week if d.is_today]
    assert len(today) == 1
    assert body.count('aria-current="date"') == 1
    assert body.count('<th scope="col">') == 7


@pytest.mark.parametrize("language", ["en", "es", "pt", "fr"])
def test_month_grid_names_each_day_as_the_date_filter_would(language: str) -> None:
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(0, 366, 5)]

    with translation.override(language):
        named = [Day(d).full_name for d in days]
        filtered = [date_format(d, "l j F") for d in days]

    assert named == filtered
    assert len(set(named)) == len(days)


def test_month_view_bad_month_shows_error_and_current_month(
    client: Client, member: User, plan: None
) -> None:
    # Act
    response = logged_in(client, member).get("/calendar/?month=2030-13")

    # Assert
    assert response.status_code == 200
    assert response.context["param_error"] == (
        "“2030-13” is not a month; use the form YYYY-MM, e.g. 2026-03. Showing this month."
    )
    assert response.context["is_current"] is True


def test_calendar_unknown_filter_shows_error_and_no_filter(
    client: Client, member: User, mixed_events: list[Event]
) -> None:
    # Act
    response = logged_in(client, member).get("/calendar/?month=2030-03&kind=party")

    # Assert
    assert response.context["filters"].form.errors == {
        "kind": ["Select a valid choice. party is not one of the available choices."]
    }
    assert titles_in(response) == ["WG1 workshop", "WG1 meeting", "WG2 webinar"]


def test_week_view_series_shows_each_occurrence(
    client: Client, member: User, make_event: MakeEvent
) -> None:
    # Arrange
    make_event(title="Daily stand-up", recurrence="FREQ=DAILY;COUNT=3")

    # Act
    response = logged_in(client, member).get("/calendar/week/?week=2030-W11")

    # Assert
    days = {
        d.day.isoformat(): [o.event.title for o in d.occurrences] for d in response.context["days"]
    }
    assert days == {
        "2030-03-11": [],
        "2030-03-12": ["Daily stand-up"],
        "2030-03-13": ["Daily stand-up"],
        "2030-03-14": ["Daily stand-up"],
        "2030-03-15": [],
        "2030-03-16": [],
        "2030-03-17": [],
    }


def test_month_view_query_count_same_for_one_and_three_events(
    client: Client,
    member: User,
    make_event: MakeEvent,
    django_assert_num_queries: Callable[..., object],
) -> None:
    # Arrange
    logged_in(client, member)
    first = make_event()
    services.registration_create(event=first, member=member, now=FUTURE - timedelta(days=1))
    client.get("/calendar/?month=2030-03")  # the session and the first-request caches

    # Act / Assert: one event. Session, user, verified address, roles, events, overrides,
    # topics, my registrations, the bell's unread count, the filter's working groups.
    with django_assert_num_queries(10):  # type: ignore[attr-defined]
        client.get("/calendar/?month=2030-03")
    for offset in (1, 2):
        make_event(
            title=f"Workshop {offset}",
            recurrence="FREQ=WEEKLY;COUNT=2" if offset == 2 else "",
            starts_at=FUTURE + timedelta(days=offset),
            ends_at=FUTURE + timedelta(days=offset, hours=2),
        )

    # Act / Assert: three events (one a series)
    with django_assert_num_queries(10):  # type: ignore[attr-defined]
        response = client.get("/calendar/?month=2030-03")
    assert len(titles_in(response)) == 4


# --- Registration through the page ------------------------------------------------------------


def test_event_register_page_registered_then_waitlisted_when_full(
    client: Client, member: User, make_event: MakeEvent
) -> None:
    # Arrange: one place; a second member of wg1.
    event = make_event(capacity=1)
    second = UserFactory(name="Second Delegate")
    MembershipFactory(member=second, role=Role.MEMBER)

    # Act
    first_response = logged_in(client, member).post(f"/events/{event.pk}/register/", follow=True)
    second_client = logged_in(Client(), second)
    second_response = second_client.post(f"/events/{event.pk}/register/", follow=True)

    # Assert
    assert first_response.context["state"].state == "registered"
    assert second_response.context["state"].state == "waitlisted"
    assert second_response.context["state"].position == 1
    assert "You are on the waitlist, position 1." in second_response.content.decode()
    assert list(
        Registration.objects.filter(event=event).order_by("pk").values_list("status", "position")
    ) == [("registered", None), ("waitlisted", 1)]


def test_event_page_full_event_offers_waitlist(
    client: Client, member: User, chair: User, make_event: MakeEvent
) -> None:
    # Arrange
    event = make_event(capacity=1)
    services.registration_create(event=event, member=chair)

    # Act
    response = logged_in(client, member).get(f"/events/{event.pk}/")

    # Assert
    assert response.context["state"].state == "full"
    assert "Join the waitlist" in response.content.decode()


def test_event_register_twice_shows_service_error(
    client: Client, member: User, workshop: Event
) -> None:
    # Arrange
    logged_in(client, member)
    client.post(f"/events/{workshop.pk}/register/", follow=True)

    # Act
    response = client.post(f"/events/{workshop.pk}/register/", follow=True)

    # Assert
    assert [str(m) for m in response.context["messages"]] == [
        "You are already registered for this event."
    ]
    assert Registration.objects.filter(event=workshop).count() == 1


def test_event_withdraw_page_frees_place(client: Client, member: User, workshop: Event) -> None:
    # Arrange
    logged_in(client, member)
    client.post(f"/events/{workshop.pk}/register/")

    # Act
    response = client.post(f"/events/{workshop.pk}/withdraw/", follow=True)

    # Assert
    assert response.context["state"].state == "open"
    assert Registration.objects.get(event=workshop, member=member).status == "withdrawn"


def test_event_register_cancelled_event_shows_state(
    client: Client, member: User, chair: User, workshop: Event
) -> None:
    # Arrange
    services.event_cancel(event=workshop, actor=chair, message="")

    # Act
    response = logged_in(client, member).post(f"/events/{workshop.pk}/register/", follow=True)

    # Assert
    assert [str(m) for m in response.context["messages"]] == ["This event was cancelled."]
    assert response.context["state"].state == "cancelled"


# --- Organizer pages --------------------------------------------------------------------------


def test_event_create_page_defaults_to_organizer_zone_and_groups(
    client: Client, chair: User
) -> None:
    # Arrange
    chair.timezone = "America/Sao_Paulo"
    chair.save(update_fields=["timezone"])

    # Act
    response = logged_in(client, chair).get("/events/new/")

    # Assert
    form = response.context["form"]
    assert form["timezone"].value() == "America/Sao_Paulo"
    assert [g.slug for g in form.fields["working_group"].queryset] == ["wg1"]


def test_event_create_page_round_trip_creates_event(client: Client, chair: User) -> None:
    # Act
    response = logged_in(client, chair).post(
        "/events/new/", create_form_data(capacity="20", recurrence="FREQ=WEEKLY;COUNT=3")
    )

    # Assert
    event = Event.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/events/{event.pk}/"
    assert (event.title, event.kind, event.working_group.slug, event.capacity) == (
        "Focus session on labor inspection",
        "focus_session",
        "wg1",
        20,
    )
    assert event.starts_at == datetime(2030, 4, 9, 14, 0, tzinfo=UTC)
    assert event.recurrence == "FREQ=WEEKLY;COUNT=3"


def test_event_create_registration_window_read_in_chosen_zone(client: Client, chair: User) -> None:
    # Act
    logged_in(client, chair).post(
        "/events/new/",
        create_form_data(registration_closes_at="2030-04-08T18:00"),
    )

    # Assert: 18:00 in Port of Spain is 22:00 UTC.
    assert Event.objects.get().registration_closes_at == datetime(2030, 4, 8, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        (
            {"ends_at": "2030-04-09T09:00"},
            "ends_at",
            "The event must end after it starts.",
        ),
        (
            {"timezone": "Mars/Olympus_Mons"},
            "timezone",
            "Mars/Olympus_Mons is not a known time zone; use an IANA name such as America/Lima.",
        ),
        (
            {"starts_at": "next tuesday"},
            "starts_at",
            "Enter a date and time such as 2026-03-18 10:00.",
        ),
        ({"working_group": "wg2"}, "working_group", None),
    ],
)
def test_event_create_bad_input_shows_field_error_and_creates_nothing(
    client: Client, chair: User, overrides: dict[str, str], field: str, error: str | None
) -> None:
    # Act
    response = logged_in(client, chair).post("/events/new/", create_form_data(**overrides))

    # Assert
    form = response.context["form"]
    assert response.status_code == 200
    assert list(form.errors) == [field]
    if error is not None:
        assert form.errors[field] == [error]
    assert form["title"].value() == "Focus session on labor inspection"
    assert 'value="Focus session on labor inspection"' in response.content.decode()
    assert Event.objects.count() == 0


def test_event_create_unknown_zone_stays_selected(client: Client, chair: User) -> None:
    # Act
    response = logged_in(client, chair).post(
        "/events/new/", create_form_data(timezone="Mars/Olympus_Mons")
    )

    # Assert
    body = response.content.decode()
    assert '<option value="Mars/Olympus_Mons" selected>Mars/Olympus_Mons</option>' in body


def test_event_create_invalid_rrule_shows_recurrence_error(client: Client, chair: User) -> None:
    # Act
    response = logged_in(client, chair).post(
        "/events/new/", create_form_data(recurrence="FREQ=SOMETIMES")
    )

    # Assert
    form = response.context["form"]
    assert list(form.errors) == ["recurrence"]
    assert form["recurrence"].value() == "FREQ=SOMETIMES"
    assert Event.objects.count() == 0


def test_event_create_errors_in_member_language(client: Client, chair: User) -> None:
    # Arrange
    chair.language = "es"
    chair.save(update_fields=["language"])

    # Act
    response = logged_in(client, chair).post(
        "/events/new/", create_form_data(ends_at="2030-04-09T09:00")
    )

    # Assert: the message is the service's own, translated (or English until translated).
    from django.utils import translation

    with translation.override("es"):
        expected = str(translation.gettext("The event must end after it starts."))
    assert response.context["form"].errors["ends_at"] == [expected]


def test_event_edit_page_changes_title_and_keeps_times(
    client: Client, chair: User, workshop: Event
) -> None:
    # Arrange
    logged_in(client, chair)
    form = client.get(f"/events/{workshop.pk}/edit/").context["form"]
    data = {
        name: ("" if value is None else value)
        for name, value in ((n, form[n].value()) for n in form.fields)
    }
    data = {k: (v.slug if isinstance(v, WorkingGroup) else v) for k, v in data.items()}
    data["topics"] = []
    data["starts_at"] = "2030-03-12T10:00"
    data["ends_at"] = "2030-03-12T12:00"
    data["title"] = "Labor inspection workshop (day 1)"
    data = {k: v for k, v in data.items() if v is not False}

    # Act
    response = client.post(f"/events/{workshop.pk}/edit/", data)

    # Assert
    workshop.refresh_from_db()
    assert response.status_code == 302
    assert (workshop.title, workshop.starts_at, workshop.sequence) == (
        "Labor inspection workshop (day 1)",
        FUTURE,
        1,
    )


def test_event_reschedule_page_moves_event(client: Client, chair: User, workshop: Event) -> None:
    # Act
    response = logged_in(client, chair).post(
        f"/events/{workshop.pk}/reschedule/",
        {
            "starts_at": "2030-03-19T09:00",
            "ends_at": "2030-03-19T11:00",
            "timezone": "America/Port_of_Spain",
            "message": "One week later.",
        },
    )

    # Assert
    workshop.refresh_from_db()
    assert response.status_code == 302
    assert workshop.starts_at == datetime(2030, 3, 19, 13, 0, tzinfo=UTC)


def test_event_reschedule_page_end_before_start_keeps_event(
    client: Client, chair: User, workshop: Event
) -> None:
    # Act
    response = logged_in(client, chair).post(
        f"/events/{workshop.pk}/reschedule/",
        {
            "starts_at": "2030-03-19T09:00",
            "ends_at": "2030-03-19T08:00",
            "timezone": "America/Port_of_Spain",
            "message": "",
        },
    )

    # Assert
    workshop.refresh_from_db()
    assert response.context["form"].errors == {"ends_at": ["The event must end after it starts."]}
    assert workshop.starts_at == FUTURE


def test_event_cancel_page_cancels_with_message(
    client: Client,
    chair: User,
    workshop: Event,
    django_capture_on_commit_callbacks: Callable[..., object],
) -> None:
    # Act
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[attr-defined]
        response = logged_in(client, chair).post(
            f"/events/{workshop.pk}/cancel/", {"message": "The venue is closed."}
        )

    # Assert
    workshop.refresh_from_db()
    assert response.status_code == 302
    assert workshop.status == "cancelled"
    assert len(callbacks) >= 1  # type: ignore[arg-type]


def test_event_duplicate_page_creates_copy_at_new_date(
    client: Client, chair: User, workshop: Event
) -> None:
    # Act
    response = logged_in(client, chair).post(
        f"/events/{workshop.pk}/duplicate/", {"starts_at": "2030-05-07T10:00"}
    )

    # Assert
    copy = Event.objects.exclude(pk=workshop.pk).get()
    assert response["Location"] == f"/events/{copy.pk}/"
    assert (copy.title, copy.starts_at, copy.duration) == (
        workshop.title,
        datetime(2030, 5, 7, 14, 0, tzinfo=UTC),
        timedelta(hours=2),
    )


def test_agenda_page_adds_and_deletes_items(client: Client, chair: User, workshop: Event) -> None:
    # Arrange
    logged_in(client, chair)

    # Act
    client.post(
        f"/events/{workshop.pk}/agenda/",
        {
            "title": "Opening",
            "starts_at": "2030-03-12T10:00",
            "ends_at": "2030-03-12T10:30",
            "speakers": "",
        },
    )
    item = AgendaItem.objects.get()
    client.post(f"/events/{workshop.pk}/agenda/{item.pk}/delete/")

    # Assert
    assert (item.title, item.starts_at) == ("Opening", FUTURE)
    assert AgendaItem.objects.count() == 0


def test_agenda_page_end_before_start_shows_field_error(
    client: Client, chair: User, workshop: Event
) -> None:
    # Act
    response = logged_in(client, chair).post(
        f"/events/{workshop.pk}/agenda/",
        {"title": "Opening", "starts_at": "2030-03-12T10:30", "ends_at": "2030-03-12T10:00"},
    )

    # Assert
    assert response.context["form"].errors == {
        "ends_at": ["The agenda item must end after it starts."]
    }
    assert AgendaItem.objects.count() == 0


# --- Registrations, attendance and CSV --------------------------------------------------------


@pytest.fixture
def registrants(workshop: Event) -> list[User]:
    people = [
        UserFactory(
            name="Beatriz Souza",
            organization=OrganizationFactory(
                name="CSA", kind=Organization.Kind.WORKERS, country="BR"
            ),
        ),
        UserFactory(
            name="Diego Mora",
            organization=OrganizationFactory(
                name="Ministerio de Trabajo de Chile", kind=Organization.Kind.MINISTRY, country="CL"
            ),
        ),
    ]
    for person in people:
        MembershipFactory(member=person, role=Role.MEMBER)
        services.registration_create(event=workshop, member=person)
    return people


def test_registrations_page_lists_by_delegation(
    client: Client, chair: User, workshop: Event, registrants: list[User]
) -> None:
    # Act
    response = logged_in(client, chair).get(f"/events/{workshop.pk}/registrations/")

    # Assert
    delegations = [
        (d.constituency, d.organization, [r.member.name for r in d.registrations])
        for d in response.context["delegations"]
    ]
    assert delegations == [
        ("Government", "Ministerio de Trabajo de Chile", ["Diego Mora"]),
        ("Workers", "CSA", ["Beatriz Souza"]),
    ]


def test_registrations_page_marks_attendance(
    client: Client, chair: User, workshop: Event, registrants: list[User]
) -> None:
    # Act
    response = logged_in(client, chair).post(
        f"/events/{workshop.pk}/registrations/",
        {"member": str(registrants[0].pk), "attended": "yes"},
    )

    # Assert
    assert response.status_code == 302
    assert Registration.objects.get(member=registrants[0]).attended is True


def test_registrations_csv_export_content_type_and_rows(
    client: Client, chair: User, workshop: Event, registrants: list[User]
) -> None:
    # Act
    response = logged_in(client, chair).get(f"/events/{workshop.pk}/registrations.csv")

    # Assert
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="event-{workshop.pk}-registrations.csv"'
    )
    assert [row[0] for row in rows] == ["Name", "Diego Mora", "Beatriz Souza"]
    assert [row[5] for row in rows[1:]] == ["Registered", "Registered"]


# --- Dashboard --------------------------------------------------------------------------------


def test_dashboard_upcoming_events_lists_registrations_first(
    client: Client, member: User, make_event: MakeEvent
) -> None:
    # Arrange: two events in the coming days; the member registered for the later one.
    soon = timezone.now().replace(microsecond=0) + timedelta(days=2)
    make_event(title="Sooner meeting", starts_at=soon, ends_at=soon + timedelta(hours=1))
    later = make_event(
        title="Later workshop",
        starts_at=soon + timedelta(days=3),
        ends_at=soon + timedelta(days=3, hours=1),
    )
    services.registration_create(event=later, member=member)

    # Act
    response = logged_in(client, member).get("/dashboard/")

    # Assert
    titles = [o.event.title for o in response.context["upcoming_events"]]
    assert titles == ["Later workshop", "Sooner meeting"]
    assert 'href="/calendar/"' in response.content.decode()
