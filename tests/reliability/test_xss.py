"""XSS corpus through every place user text appears, rendered for real.

Each payload becomes, at once, a member's display name and organization name, a thread title, a
message body (then its edit), the mention notification that message sends (inbox page, email
HTML and subject) and an event's title, description, venue and city (event page, calendar list,
iCal). Every output is parsed with html.parser: no script the page did not ship, no on*
attribute, no javascript:/vbscript:/data:text/html URL, no iframe/object/embed/base/meta refresh.
The API's body_html is the same payload the socket pushes (selectors.message_payload).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import icalendar
import pytest
from django.test import Client

from community.models import Role, User
from events import services as event_services
from events.ical import clean_text
from events.models import Event
from forums import services
from forums.models import Room
from notifications.email import build_message
from notifications.models import Notification
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.reliability.support import active_content, report

pytestmark = pytest.mark.django_db

PAYLOADS = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<div style="background:url(javascript:alert(1))">x</div>',
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "{{ 7|add:7 }}</script><script>alert(1)</script>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<details open ontoggle="alert(1)">',
    "x\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nEND:VALARM",
    "x\rATTENDEE:mailto:evil@example.org",
)
START = dt.datetime(2030, 3, 4, 15, 0, tzinfo=dt.UTC)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _html(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _renders(
    n: int, payload: str, *, reader: User, chair: User, readers: Client, capture: Any
) -> dict[str, list[str]]:
    """Every sink of one payload -> the active content found there."""
    organization = OrganizationFactory(name=f"{payload} org {n}")
    author = UserFactory(name=payload[:150], organization=organization)
    MembershipFactory(member=author, role=Role.MEMBER)
    room = Room.objects.get(slug="wg1-a")
    out: dict[str, list[str]] = {}
    with capture(execute=True):  # the mention's notification is written after commit
        thread = services.thread_create(
            room=room,
            author=author,
            title=payload,
            body=f"{payload} @{reader.handle}",
            client_id=uuid.uuid4(),
        )
    out["room page (thread title)"] = active_content(_html(readers.get("/rooms/wg1-a/")))
    out["thread page (body, name, organization)"] = active_content(
        _html(readers.get(f"/threads/{thread.pk}/"))
    )
    api = readers.get(f"/api/v1/threads/{thread.pk}/messages/").json()
    out["API/socket body_html"] = [f for m in api for f in active_content(m["body_html"])]
    message = thread.messages.get()
    with capture(execute=True):
        services.message_edit(message=message, editor=author, body=f"edited {payload}")
    out["thread page after edit"] = active_content(_html(readers.get(f"/threads/{thread.pk}/")))
    edited = readers.get(f"/api/v1/threads/{thread.pk}/messages/").json()
    out["API/socket body_html after edit"] = [
        f for m in edited for f in active_content(m["body_html"])
    ]
    out["inbox page (notification title, snippet)"] = active_content(
        _html(readers.get("/notifications/"))
    )
    row = Notification.objects.filter(recipient=reader).order_by("-pk").first()
    assert row is not None
    email = build_message(row, reader)
    out["email HTML"] = active_content(email.alternatives[0][0])
    event = event_services.event_create(
        actor=chair,
        title=payload[:200],
        description=payload,
        venue=payload[:200],
        city=payload[:100],
        starts_at=START + dt.timedelta(days=n),
        ends_at=START + dt.timedelta(days=n, hours=2),
        timezone="America/Lima",
        working_group=room.working_group,
        visibility=Event.Visibility.PUBLIC,
    )
    out["event page"] = active_content(_html(readers.get(f"/events/{event.pk}/")))
    out["calendar list"] = active_content(
        _html(readers.get("/calendar/list/", {"start": "2030-03-01"}))
    )
    out["iCal"] = _ical_problems(readers.get(f"/events/{event.pk}.ics").content, event)
    return out


def _ical_problems(body: bytes, event: Event) -> list[str]:
    """An injected component or property, or a field that does not round-trip."""
    problems = []
    calendar = icalendar.Calendar.from_ical(body)
    components = [c.name for c in calendar.walk()]
    if components.count("VEVENT") != 1 or "VALARM" in components:
        problems.append(f"components {components}")
    (vevent,) = calendar.walk("VEVENT")
    if "ATTENDEE" in vevent:
        problems.append("ATTENDEE injected")
    if str(vevent.get("SUMMARY")) != clean_text(event.title):
        problems.append("SUMMARY differs")
    for line in body.decode().split("\r\n"):
        if line.startswith(("BEGIN:VALARM", "ATTENDEE")):
            problems.append(f"line {line!r}")
    return problems


def test_xss_corpus_leaves_no_active_content_in_any_sink(
    plan: None,
    chair: User,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1000, 10)
    reader = UserFactory(handle="reader")
    MembershipFactory(member=reader, role=Role.MEMBER)
    readers = _client(reader)
    found: dict[str, list[str]] = {}
    renders = 0
    for n, payload in enumerate(PAYLOADS):
        sinks = _renders(
            n,
            payload,
            reader=reader,
            chair=chair,
            readers=readers,
            capture=django_capture_on_commit_callbacks,
        )
        renders += len(sinks)
        for sink, problems in sinks.items():
            if problems:
                found[f"{payload!r} in {sink}"] = problems

    sinks_count = renders // len(PAYLOADS)
    report(
        capsys,
        "XSS",
        f"{len(PAYLOADS)} payloads x {sinks_count} sinks = {renders} renders, "
        f"active-content renders {len(found)}/{renders}",
    )
    assert found == {}


def test_email_of_event_title_with_newline_can_be_built(
    plan: None, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    reader = UserFactory(handle="reader")
    MembershipFactory(member=reader, role=Role.MEMBER)
    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_create(
            actor=chair,
            title="Budget\r\nBcc: everyone@example.org",
            starts_at=START,
            ends_at=START + dt.timedelta(hours=2),
            timezone="America/Lima",
            working_group=Room.objects.get(slug="wg1-a").working_group,
        )
    row = Notification.objects.get(recipient=reader)

    try:
        subject = build_message(row, reader).message()["Subject"]
    except ValueError:  # Django's refusal of a header with a newline
        subject = None

    assert subject == "[Minga] " + " ".join(row.title.split())
