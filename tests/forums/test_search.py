"""Search: PostgreSQL full-text over messages and thread titles, the basic fallback, the page."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from community.models import User
from forums import search
from forums.models import Room, Thread
from forums.search import Filters, highlight
from tests.factories import UserFactory
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=timezone.get_current_timezone())


def ids(results: search.Results) -> tuple[list[int], list[int]]:
    return [t.pk for t in results.threads], [m.pk for m in results.messages]


# --- Highlighting -----------------------------------------------------------------------------


def test_highlight_escapes_everything_but_marks() -> None:
    text = "<script>x</script> \ue000inspección\ue001 & <b>"

    result = highlight(text)

    assert result == ("&lt;script&gt;x&lt;/script&gt; <mark>inspección</mark> &amp; &lt;b&gt;")


def test_highlight_drops_unpaired_sentinel() -> None:
    assert highlight("a \ue000b") == "a b"


# --- PostgreSQL full-text ---------------------------------------------------------------------


@pytest.mark.postgres
def test_search_fulltext_finds_spanish_word_with_mark(member: User, thread: Thread) -> None:
    assert connection.vendor == "postgresql"
    found = MessageFactory(thread=thread, body="La inspección laboral en Jamaica funciona bien.")
    MessageFactory(thread=thread, body="Nothing to see here.")

    results = search.search(member=member, filters=Filters(q="inspección"))

    assert [m.pk for m in results.messages] == [found.pk]
    assert "<mark>inspección</mark>" in results.messages[0].snippet


@pytest.mark.postgres
def test_search_fulltext_snippet_escapes_html_in_body(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body='<img src=x onerror="alert(1)"> training <script>')

    results = search.search(member=member, filters=Filters(q="training"))

    snippet = str(results.messages[0].snippet)
    assert ("<img" in snippet, "<script" in snippet, "<mark>training</mark>" in snippet) == (
        False,
        False,
        True,
    )


@pytest.mark.postgres
@pytest.mark.parametrize("word", ["trabalho", "travail", "employment"])
def test_search_fulltext_works_in_each_language(member: User, thread: Thread, word: str) -> None:
    found = MessageFactory(thread=thread, body=f"Ministério do {word} e emprego")

    results = search.search(member=member, filters=Filters(q=word))

    assert [m.pk for m in results.messages] == [found.pk]


@pytest.mark.postgres
def test_search_fulltext_thread_titles(member: User, room: Room) -> None:
    thread = ThreadFactory(room=room, author=member, title="Certificación de competencias")
    ThreadFactory(room=room, author=member, title="Otro tema")

    results = search.search(member=member, filters=Filters(q="competencias"))

    assert [t.pk for t in results.threads] == [thread.pk]
    assert results.threads[0].snippet == "Certificación de <mark>competencias</mark>"


@pytest.mark.postgres
def test_search_fulltext_excludes_deleted(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body="salary survey", deleted_at=timezone.now())

    results = search.search(member=member, filters=Filters(q="salary"))

    assert results.messages == []


@pytest.mark.postgres
def test_search_fulltext_hidden_only_for_moderators(
    member: User, chair: User, thread: Thread
) -> None:
    hidden = MessageFactory(thread=thread, body="offensive salary remark", hidden_at=timezone.now())

    as_member = search.search(member=member, filters=Filters(q="salary"))
    as_chair = search.search(member=chair, filters=Filters(q="salary"))

    assert (ids(as_member)[1], ids(as_chair)[1]) == ([], [hidden.pk])


@pytest.mark.postgres
def test_search_fulltext_filters_room_author_and_dates(member: User, room: Room) -> None:
    other = member_in("wg1")
    wg1b = Room.objects.get(slug="wg1-b")
    here = ThreadFactory(room=room, author=member)
    there = ThreadFactory(room=wg1b, author=member)
    day = date(2026, 3, 10)
    mine = MessageFactory(thread=here, author=member, body="pension reform", created_at=at(day))
    MessageFactory(thread=here, author=other, body="pension reform", created_at=at(day))
    MessageFactory(thread=there, author=member, body="pension reform", created_at=at(day))
    MessageFactory(
        thread=here, author=member, body="pension reform", created_at=at(day + timedelta(days=2))
    )

    results = search.search(
        member=member,
        filters=Filters(q="pension", room=room, author=member, since=day, until=day),
    )

    assert [m.pk for m in results.messages] == [mine.pk]


@pytest.mark.postgres
def test_search_fulltext_unverified_member_finds_nothing(plan: None, thread: Thread) -> None:
    MessageFactory(thread=thread, body="youth employment")
    stranger = UserFactory(verified=False)

    results = search.search(member=stranger, filters=Filters(q="youth"))

    assert ids(results) == ([], [])


@pytest.mark.postgres
def test_search_fulltext_websearch_syntax_does_not_fail(member: User, thread: Thread) -> None:
    found = MessageFactory(thread=thread, body="social dialogue works")

    results = search.search(member=member, filters=Filters(q='"social dialogue" -strike ('))

    assert [m.pk for m in results.messages] == [found.pk]


@pytest.mark.postgres
def test_search_fulltext_uses_gin_index_expression(member: User) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('forums_message', "
            "'forums_thread') AND indexdef LIKE '%%to_tsvector%%' ORDER BY indexname"
        )
        names = [row[0] for row in cursor.fetchall()]

    assert names == ["forums_message_body_fts", "forums_thread_title_fts"]


# --- Basic fallback (any database) ------------------------------------------------------------


def test_search_basic_requires_every_word(member: User, thread: Thread) -> None:
    found = MessageFactory(thread=thread, body="Labour Inspection in the Caribbean")
    MessageFactory(thread=thread, body="Inspection only")

    results = search.search_basic(member=member, filters=Filters(q="caribbean inspection"))

    assert [m.pk for m in results.messages] == [found.pk]
    assert results.messages[0].snippet == (
        "Labour <mark>Inspection</mark> in the <mark>Caribbean</mark>"
    )


def test_search_basic_escapes_html(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body="<b>bold</b> claim")

    results = search.search_basic(member=member, filters=Filters(q="claim"))

    assert results.messages[0].snippet == "&lt;b&gt;bold&lt;/b&gt; <mark>claim</mark>"


def test_search_basic_hidden_excluded_for_members(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body="secret claim", hidden_at=timezone.now())

    results = search.search_basic(member=member, filters=Filters(q="claim"))

    assert results.messages == []


def test_search_empty_query_returns_nothing(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body="anything")

    assert ids(search.search(member=member, filters=Filters(q="  "))) == ([], [])


# --- The page ---------------------------------------------------------------------------------


def test_search_page_shows_marked_snippet(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body="Youth employment programs")

    response = signed_in(member).get(reverse("forum_search"), {"q": "employment"})

    html = response.content.decode()
    assert (response.status_code, "<mark>employment</mark>" in html) == (200, True)


def test_search_page_unknown_author_is_form_error(member: User) -> None:
    response = signed_in(member).get(
        reverse("forum_search"), {"q": "anything", "author": "@nobody"}
    )

    assert (response.context["results"], response.context["form"].errors["author"]) == (
        None,
        ["No member with the handle @nobody."],
    )


def test_search_page_room_filter_by_slug(member: User, room: Room) -> None:
    here = MessageFactory(thread=ThreadFactory(room=room, author=member), body="minimum wage")
    MessageFactory(
        thread=ThreadFactory(room=Room.objects.get(slug="wg2-a"), author=member),
        body="minimum wage",
    )

    response = signed_in(member).get(
        reverse("forum_search"), {"q": "wage", "room": "wg1-a", "author": "@ana"}
    )

    assert [m.pk for m in response.context["results"].messages] == [here.pk]


def test_search_page_dates_reversed_is_form_error(member: User) -> None:
    response = signed_in(member).get(
        reverse("forum_search"), {"q": "x", "since": "2026-05-02", "until": "2026-05-01"}
    )

    assert response.context["form"].errors["until"] == ["The end date is before the start date."]
