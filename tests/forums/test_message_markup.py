"""A thread page's messages, written by forums.message_markup: the markup of the template they
replaced (tests/forums/_message_reference.html), its escaping, and no database reads.

The reference is the `_message.html` the thread page included until ADR 0015. forum.js renders
live messages into the same structure and updates them in place, so the structure is a
contract: when it changes on purpose, change the reference with it, and forum.js.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from django.template import Context, Engine
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from community.models import User
from forums import message_markup, selectors
from forums.message_markup import PageMarkup
from forums.models import Attachment, Message, Reaction, Room, Thread
from tests.factories import UserFactory
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db

REFERENCE = Engine(libraries={"i18n": "django.templatetags.i18n"}).from_string(
    (Path(__file__).parent / "_message_reference.html").read_text()
)
HOSTILE = "<script>alert('x')</script> & \"Q\""


def _attach(message: Message, name: str, size: int) -> None:
    Attachment.objects.create(
        message=message,
        room=message.room,
        uploader=message.author,
        file="attachments/2026/11/0123456789abcdef",
        original_name=name,
        content_type="application/pdf",
        size=size,
        sha256="0" * 64,
    )


def _thread_of_every_kind(room: Room, viewer: User) -> Thread:
    """Messages in every state the page draws, some by `viewer`, with hostile text in every
    field a member writes."""
    other = member_in("wg1", name=HOSTILE)
    loner = member_in("wg1", organization=None, name="Loner")
    thread = ThreadFactory(room=room, author=other)
    plain = MessageFactory(thread=thread, author=other)
    mine = MessageFactory(thread=thread, author=viewer)
    MessageFactory(thread=thread, author=loner, reply_to=plain)  # its parent is on the page
    orphan = MessageFactory(thread=thread, author=other)
    with_files = MessageFactory(thread=thread, author=viewer)
    hidden = MessageFactory(thread=thread, author=other)
    deleted = MessageFactory(thread=thread, author=viewer)
    now = timezone.now()
    Message.objects.filter(pk=mine.pk).update(edited_at=now)
    # A reply whose parent is not on the page (it is in another thread here).
    Message.objects.filter(pk=orphan.pk).update(reply_to=MessageFactory(author=other))
    Message.objects.filter(pk=hidden.pk).update(hidden_at=now, hidden_reason=HOSTILE)
    Message.objects.filter(pk=deleted.pk).update(deleted_at=now, edited_at=now)
    _attach(with_files, HOSTILE, 2_500_000)
    _attach(with_files, "plan.pdf", 812)
    for member, emoji in ((viewer, "👀"), (other, "👀"), (loner, "🎉"), (other, "👍")):
        Reaction.objects.create(message=plain, member=member, emoji=emoji)
    Reaction.objects.create(message=with_files, member=other, emoji="❤️")
    return thread


def _reference(m: Message, viewer: User, page: dict[str, object], csrf: str) -> str:
    context = {"m": m, "user": viewer, "csrf_token": csrf, **page}
    return REFERENCE.render(Context(context))


def _squeezed(html: str) -> str:
    """Whitespace runs as one space: the template's indentation is not part of the markup."""
    return re.sub(r"\s+", " ", html).strip()


@pytest.mark.parametrize("language", ["en", "es", "pt", "fr"])
@pytest.mark.parametrize("viewer_kind", ["member", "chair", "locked_out"])
def test_a_message_reads_as_the_template_it_replaced(
    member: User, chair: User, room: Room, language: str, viewer_kind: str
) -> None:
    viewer = chair if viewer_kind == "chair" else member
    User.objects.filter(pk=viewer.pk).update(language=language, timezone="America/Lima")
    thread = _thread_of_every_kind(room, viewer)
    if viewer_kind == "locked_out":  # a locked thread: no posting, reacting or editing
        Thread.objects.filter(pk=thread.pk).update(locked=True)
    client = Client()
    client.force_login(viewer)

    response = client.get(reverse("thread_detail", args=[thread.pk]))

    context = response.context
    page = {k: context[k] for k in ("can_post", "can_moderate")}
    page["can_participate"] = page["can_post"]  # the view's rule: reacting and editing are posting
    assert (page["can_moderate"], page["can_post"]) == (
        viewer_kind == "chair",
        viewer_kind != "locked_out",
    )
    messages = context["messages_page"]
    assert len(messages) == 7
    with translation.override(language), timezone.override("America/Lima"):
        for m in messages:
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', m.markup)
            expected = _reference(m, viewer, page, csrf.group(1) if csrf else "")
            assert _squeezed(m.markup) == _squeezed(expected), m.pk
    assert response.content.decode().count(str(messages[0].markup)) == 1


def test_every_value_a_member_writes_is_escaped(member: User, chair: User, room: Room) -> None:
    thread = _thread_of_every_kind(room, chair)
    client = Client()
    client.force_login(chair)

    body = client.get(reverse("thread_detail", args=[thread.pk])).content.decode()

    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;Q&quot;"
    # The author's name on 3 messages and in their 3 reply links, the "In reply to" of a reply
    # to one of them, the hiding reason, the attachment's name.
    assert ("<script>alert" in body, body.count(escaped)) == (False, 9)


def _moderators_markup(viewer: User) -> PageMarkup:
    return PageMarkup.for_viewer(
        member_id=viewer.pk,
        can_post=True,
        can_participate=True,
        can_moderate=True,
        csrf_token="t0ken",
    )


def test_a_page_of_messages_is_written_without_a_query(
    member: User, room: Room, django_assert_num_queries: object
) -> None:
    thread = _thread_of_every_kind(room, member)
    page = selectors.thread_messages(thread=thread, limit=50)
    markup = _moderators_markup(member)

    with django_assert_num_queries(0):  # type: ignore[operator]
        written = [markup.message(m, [("👍", 0, False)]) for m in page]

    assert [f'data-id="{m.pk}"' in html for m, html in zip(page, written, strict=True)] == [
        True
    ] * len(page)


def test_message_urls_are_the_reversed_ones(member: User) -> None:
    markup = _moderators_markup(member)

    names = ["edit", "delete", "react", "report", "hide", "unhide", "mute"]
    assert [markup._url(name, 987) for name in names] == [
        reverse(f"message_{name}", args=[987]) for name in names
    ]


def test_a_chair_is_offered_moderation_and_a_member_is_not(
    member: User, chair: User, room: Room
) -> None:
    thread = ThreadFactory(room=room, author=UserFactory())
    message = MessageFactory(thread=thread)
    pages = {}
    for who in (member, chair):
        client = Client()
        client.force_login(who)
        pages[who.pk] = client.get(reverse("thread_detail", args=[thread.pk])).content.decode()

    links = [
        f'href="{reverse(name, args=[message.pk])}"' for name in ("message_hide", "message_mute")
    ]
    offered = {pk: [link in html for link in links] for pk, html in pages.items()}
    assert offered == {member.pk: [False, False], chair.pk: [True, True]}


def _times_shown(markup: PageMarkup, page: list[Message]) -> list[str]:
    return [
        re.search(r"<time [^>]+>([^<]*)</time>", str(markup.message(m, []))).group(1)  # type: ignore[union-attr]
        for m in page
    ]


def test_each_minute_is_formatted_once_and_every_message_shows_its_own(
    member: User, room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread = ThreadFactory(room=room, author=member)
    at = timezone.now().replace(hour=12, minute=0, second=5, microsecond=0)
    for when in (at, at.replace(second=55), at.replace(minute=1, second=0)):
        MessageFactory(thread=thread, author=member, created_at=when)
    page = list(selectors.thread_messages(thread=thread, limit=50))[-3:]
    formatted = []
    format_date = message_markup.dateformat.format

    def counted(value: datetime, fmt: str) -> str:
        formatted.append(value)
        return format_date(value, fmt)

    monkeypatch.setattr(message_markup.dateformat, "format", counted)
    with translation.override("es"), timezone.override("America/Lima"):
        markup = _moderators_markup(member)
        shown = _times_shown(markup, page)
        expected = [
            format_date(timezone.localtime(m.created_at), markup.datetime_format) for m in page
        ]

    # 07:00 in Lima twice, then 07:01: one formatting each minute.
    assert (shown, len(formatted)) == (expected, 2)
    assert shown[0] == shown[1] != shown[2]


@pytest.mark.parametrize(
    ("datetime_format", "by_minute"),
    [
        ("N j, Y, P", True),  # English
        (r"j \d\e F \d\e Y \a \l\a\s H:i", True),  # Spanish: "\s" is a literal s
        (r"j \d\e F \d\e Y à\s H:i", True),  # Portuguese
        ("j F Y H:i", True),  # French
        ("H:i:s", False),
        ("c", False),
        ("r", False),
        ("U", False),
        ("H:i.u", False),
    ],
)
def test_a_format_that_shows_seconds_is_formatted_per_message(
    datetime_format: str, by_minute: bool
) -> None:
    assert message_markup.shows_only_minutes(datetime_format) is by_minute
