"""ICAL-INJECTION: hostile text in every field an iCalendar feed carries, through both feeds.

Each payload (CR, LF and CRLF with property and component lines behind them, "END:VEVENT",
"BEGIN:VALARM", folding tricks, commas, semicolons and backslashes, very long ASCII and
multi-byte lines, NUL and other control characters, Unicode line separators) becomes at once an
event's title, description, venue and city, and its organizer's name (ORGANIZER CN) and
organization (which no feed carries). The feed owner's own name is hostile too (ATTENDEE CN,
the private feed's X-WR-CALNAME).

Both feeds are read as a calendar program would: the per-event `/events/<id>.ics` (anonymous,
public events) and the member's private feed (`/events/feeds/<token>.ics`, with ATTENDEE and
VALARMs). Every output is parsed with the `icalendar` library and must hold exactly the
components and properties expected, each text value equal to what was stored (line breaks as
LF, control characters dropped: docs/calendar.md). The raw bytes are checked line by line: CRLF
only, no physical line over 75 octets, continuation lines start with a blank, and no line ends
inside a multi-byte character.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

import icalendar
import pytest
from django.test import Client
from icalendar.parser import rfc_6868_unescape, unescape_backslash

from community.models import Role, User, WorkingGroup
from events import services as event_services
from events.models import Event
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.reliability.support import report

pytestmark = pytest.mark.django_db

PAYLOADS: tuple[str, ...] = (
    "a\r\nATTENDEE:mailto:evil@example.org",
    "a\nATTENDEE;CN=Evil;ROLE=CHAIR:mailto:evil@example.org",
    "a\rATTENDEE:mailto:evil@example.org",
    "a\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:injected@evil\r\nSUMMARY:Injected\r\nDTSTART:20300101T000000Z",
    "x\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nEND:VALARM",
    "x\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\nVERSION:2.0",
    "x\r\n DESCRIPTION:a continuation line",
    "x\n\tSTATUS:CANCELLED",
    "x\r\nRRULE:FREQ=DAILY;COUNT=1000",
    "x\r\nMETHOD:CANCEL",
    "x\r\nORGANIZER;CN=Boss:mailto:boss@example.org",
    "x\r\nURL:https://evil.example/",
    "x\r\nX-WR-CALNAME:Hijacked",
    "x\r\nATTACH;VALUE=BINARY;ENCODING=BASE64:TVqQAAMAAAAEAAAA",
    "x\r\n\r\nBEGIN:VEVENT",
    "\r\n\r\n\r\n",
    "<script>alert(1)</script>\r\nCLASS:PUBLIC",
    "x\x00\r\nATTENDEE:mailto:nul@example.org",
    "a,b;c\\d",
    "\\n is not a newline, \\N neither; \\; \\, stay text",
    "C:\\path\\to\\file; rm -rf /",
    "C:\\Nuevos documentos\\Nómina, 2030",
    ";;;,,,\\\\\\",
    '"quoted" name; with: a colon',
    "trailing backslash \\",
    "^n caret escapes ^' ^^ (RFC 6868)",
    "x" * 500,
    "é" * 300,
    "日本語" * 100,
    "😀" * 100,
    "a" * 73 + "😀" + "b" * 73 + "é" + "c",
    "a" + "é" * 40 + "😀" * 20 + "日" * 30,
    "👩\u200d👩\u200d👧\u200d👦" * 20,
    "e\u0301" * 100,
    "NUL\x00inside",
    "bell\x07 backspace\x08 vt\x0b ff\x0c esc\x1b del\x7f end",
    "\x00\x01\x02\x03",
    "\u2028line separator\u2029paragraph separator\u0085next line",
    "\u202eRTL override\u202c",
    "tab\there\tand\tthere",
    "x\\r\\nATTENDEE:mailto:escaped-literal@example.org",
)
START = dt.datetime(2030, 5, 6, 15, 0, tzinfo=dt.UTC)
ZONE = "America/Lima"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTENT_LINE = re.compile(r"^[A-Za-z0-9-]+[;:]")
BASE_PROPERTIES = Counter(
    [
        "UID",
        "DTSTAMP",
        "SEQUENCE",
        "LAST-MODIFIED",
        "CREATED",
        "SUMMARY",
        "URL",
        "CATEGORIES",
        "STATUS",
        "CLASS",
        "ORGANIZER",
        "DTSTART",
        "DTEND",
    ]
)
ALARMS = 2  # the default reminders: 24 hours and 1 hour


def expected_text(stored: str) -> str:
    """What a calendar must read back: line breaks as LF, no control characters."""
    return _CONTROL.sub("", stored.replace("\r\n", "\n").replace("\r", "\n"))


def _db_safe(text: str) -> str:
    # PostgreSQL refuses NUL in text: a name or organization cannot hold one anywhere.
    return text.replace("\x00", "")


def fold_problems(body: bytes) -> tuple[list[str], list[str]]:
    """Raw RFC 5545 framing: CRLF endings, 75-octet lines, blanks before continuations, no
    line cut inside a UTF-8 sequence, every unfolded line a content line."""
    problems = []
    if not body.endswith(b"\r\n"):
        problems.append("does not end with CRLF")
    lines = body.split(b"\r\n")[:-1]
    unfolded: list[str] = []
    for number, line in enumerate(lines):
        if b"\r" in line or b"\n" in line:
            problems.append(f"line {number}: bare CR or LF")
        if len(line) > 75:
            problems.append(f"line {number}: {len(line)} octets")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"line {number}: cut inside a UTF-8 sequence")
            continue
        if text[:1] in {" ", "\t"}:
            if not unfolded:
                problems.append("continuation first")
            else:
                unfolded[-1] += text[1:]
        else:
            unfolded.append(text)
    problems += [f"not a content line: {u[:40]!r}" for u in unfolded if not _CONTENT_LINE.match(u)]
    return problems, unfolded


def vevent_lines(unfolded: list[str]) -> dict[str, list[str]]:
    """UID -> the unfolded lines of that VEVENT (alarms included)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in unfolded:
        if line == "BEGIN:VEVENT":
            current = []
        elif line == "END:VEVENT" and current is not None:
            uid = next((x[4:] for x in current if x.startswith("UID:")), "")
            out[uid] = current
            current = None
        elif current is not None:
            current.append(line)
    return out


def cn_of(lines: list[str], name: str) -> str:
    """The CN parameter of property `name` as RFC 5545 and RFC 6868 read it from the raw
    unfolded line: no backslash escapes in a parameter value, only DQUOTE quoting and the ^n,
    ^' and ^^ escapes. (icalendar's parser also undoes backslash escapes in parameters, which
    a strict reader does not, so its reading is not the oracle here.)"""
    for line in lines:
        if line.startswith(f"{name};"):
            match = re.match(rf'{name};(?:[^:"]|"[^"]*")*?CN=(?:"([^"]*)"|([^;:]*))', line)
            if match is None:
                return ""
            return rfc_6868_unescape(match[1] if match[1] is not None else match[2])
    return ""


def vevent_problems(
    vevent: Any, lines: list[str], event: Event, *, attendee: User | None, alarms: int
) -> tuple[list[str], list[str]]:
    """(injected or missing components/properties, text that does not round-trip)."""
    expected = Counter(BASE_PROPERTIES)
    if expected_text(event.description):
        expected["DESCRIPTION"] += 1
    if expected_text(event.location):
        expected["LOCATION"] += 1
    if attendee is not None:
        expected["ATTENDEE"] += 1
    found = Counter(name for name, _value in vevent.property_items(recursive=False))
    found -= Counter(["BEGIN", "END"])
    structure = [
        f"{name} x{found[name]} (expected {expected[name]})"
        for name in found | expected
        if found[name] != expected[name]
    ]
    subs = [c.name for c in vevent.subcomponents]
    if subs != ["VALARM"] * alarms:
        structure.append(f"subcomponents {subs}")
    text = []
    checks = [
        ("SUMMARY", str(vevent.get("SUMMARY")), expected_text(event.title)),
        ("DESCRIPTION", str(vevent.get("DESCRIPTION", "")), expected_text(event.description)),
        ("LOCATION", str(vevent.get("LOCATION", "")), expected_text(event.location)),
    ]
    organizer = event.organizers.get()
    checks.append(("ORGANIZER", str(vevent.get("ORGANIZER")), f"mailto:{organizer.email}"))
    checks.append(("ORGANIZER CN", cn_of(lines, "ORGANIZER"), expected_text(organizer.name)))
    if attendee is not None and "ATTENDEE" in vevent:
        checks.append(("ATTENDEE", str(vevent.get("ATTENDEE")), f"mailto:{attendee.email}"))
        checks.append(("ATTENDEE CN", cn_of(lines, "ATTENDEE"), expected_text(attendee.name)))
    for alarm in vevent.subcomponents:
        checks.append(
            ("VALARM DESCRIPTION", str(alarm.get("DESCRIPTION")), expected_text(event.title))
        )
    text += [f"{name}: {got!r} != {want!r}" for name, got, want in checks if got != want]
    return structure, text


def calendar_problems(
    body: bytes, events: list[Event], *, name: str, attendee: User | None, alarms: int
) -> dict[str, dict[str, list[str]]]:
    """Per event id: 'injected' (structure), 'text' and 'folds' problems of one feed."""
    out: dict[str, dict[str, list[str]]] = {}
    folds, unfolded = fold_problems(body)
    raw_vevents = vevent_lines(unfolded)
    calendar = icalendar.Calendar.from_ical(body)
    top = Counter(c.name for c in calendar.subcomponents)
    if top != Counter({"VEVENT": len(events), "VTIMEZONE": 1}):
        out["calendar"] = {"injected": [f"components {dict(top)}"]}
    # An X- property has no known type: the parser leaves it escaped; read it as TEXT.
    calname = unescape_backslash(calendar["X-WR-CALNAME"].to_ical().decode())
    if calname != " ".join(expected_text(name).split()):
        out.setdefault("calendar", {})["text"] = [f"X-WR-CALNAME {calname!r}"]
    by_uid = {str(v["UID"]): v for v in calendar.walk("VEVENT")}
    for event in events:
        uid = f"event-{event.pk}@minga.calendar"
        vevent = by_uid.get(uid)
        if vevent is None:
            out[str(event.pk)] = {"injected": ["VEVENT missing"]}
            continue
        structure, text = vevent_problems(
            vevent, raw_vevents.get(uid, []), event, attendee=attendee, alarms=alarms
        )
        found = {"injected": structure, "text": text}
        out[str(event.pk)] = {k: v for k, v in found.items() if v}
    if folds:
        out.setdefault("calendar", {})["folds"] = folds
    return {k: v for k, v in out.items() if v}


def test_ical_injection_corpus_through_both_feeds(
    plan: None, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.MINGA_CALENDAR_DOMAIN = "minga.calendar"
    reader = UserFactory(
        handle="reader",
        name=_db_safe('Reader\r\nATTENDEE:mailto:evil@example.org; CN="x"')[:150],
    )
    MembershipFactory(member=reader, role=Role.MEMBER)
    events: list[Event] = []
    for n, payload in enumerate(PAYLOADS):
        organizer = UserFactory(
            handle=f"organizer{n}",
            name=_db_safe(payload)[:150] or "x",
            organization=OrganizationFactory(name=_db_safe(f"{n} {payload}")[:200]),
        )
        MembershipFactory(member=organizer, role=Role.CHAIR)
        event = event_services.event_create(
            actor=organizer,
            title=f"T{n} {payload}"[:200],
            description=payload,
            venue=payload[:200],
            city=payload[:100],
            starts_at=START + dt.timedelta(days=n),
            ends_at=START + dt.timedelta(days=n, hours=2),
            timezone=ZONE,
            working_group=WorkingGroup.objects.get(slug="wg1"),
        )
        event_services.registration_create(event=event, member=reader, now=START)
        events.append(event)
    _token, raw = event_services.feed_token_regenerate(member=reader)

    problems: dict[str, dict[str, dict[str, list[str]]]] = {}
    anonymous = Client()
    for event in events:
        response = anonymous.get(f"/events/{event.pk}.ics")
        assert response.status_code == 200
        found = calendar_problems(
            response.content, [event], name=event.title, attendee=None, alarms=0
        )
        if found:
            problems[f"event {event.pk} .ics"] = found
    response = Client().get(f"/events/feeds/{raw}.ics")
    assert response.status_code == 200
    found = calendar_problems(
        response.content, events, name=f"Minga ({reader.name})", attendee=reader, alarms=ALARMS
    )
    if found:
        problems["private feed"] = found

    def count(kind: str) -> int:
        return sum(
            len(parts.get(kind, [])) for feed in problems.values() for parts in feed.values()
        )

    report(
        capsys,
        "ICAL-INJECTION",
        f"{len(PAYLOADS)} payloads x 5 fields x 2 feeds, {count('injected')} injected or "
        f"missing properties/components, {count('text')} values not round-tripped, "
        f"{count('folds')} broken folds",
    )
    assert problems == {}
