"""The forum pages over HTTP: rooms, threads, posting by form, permissions and query counts."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from community.models import Role, User
from forums import views
from forums.models import REACTION_EMOJI, Message, Reaction, ReadState, Room, Thread
from tests.factories import UserFactory
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_message(client: Client, thread: Thread, body: str, **extra: str) -> object:
    data = {"body": body, "client_id": str(uuid.uuid4()), **extra}
    return client.post(reverse("thread_detail", args=[thread.pk]), data)


# --- Access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [("room_list", []), ("room_detail", ["wg1-a"]), ("forum_search", [])],
)
def test_pages_anonymous_redirected_to_login(plan: None, name: str, args: list[str]) -> None:
    response = Client().get(reverse(name, args=args))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_thread_page_anonymous_redirected_to_login(thread: Thread) -> None:
    response = Client().get(reverse("thread_detail", args=[thread.pk]))

    assert (response.status_code, response["Location"].split("?")[0]) == (
        302,
        reverse("account_login"),
    )


def test_room_page_unknown_slug_is_404(member: User) -> None:
    response = signed_in(member).get(reverse("room_detail", args=["wg9-z"]))

    assert response.status_code == 404


def test_room_page_unverified_member_sees_no_room(plan: None) -> None:
    # The same 404 as a room that does not exist: a denial reveals nothing.
    user = UserFactory(verified=False)

    response = signed_in(user).get(reverse("room_detail", args=["wg1-a"]))

    assert response.status_code == 404


# --- Room list and room page ------------------------------------------------------------------


def test_room_list_shows_unread_count(member: User, room: Room) -> None:
    other = member_in("wg1")
    thread = ThreadFactory(room=room, author=other)
    MessageFactory.create_batch(2, thread=thread)

    response = signed_in(member).get(reverse("room_list"))

    wg1a = next(r for _g, rooms in response.context["groups"] for r in rooms if r.slug == "wg1-a")
    assert (response.status_code, wg1a.unread_count) == (200, 2)
    assert "2 unread" in response.content.decode()


def test_room_page_lists_pinned_thread_first(member: User, room: Room) -> None:
    old_pinned = ThreadFactory(room=room, author=member, title="Rules of the room", pinned=True)
    MessageFactory(thread=old_pinned)
    newer = ThreadFactory(room=room, author=member, title="Newest talk")
    MessageFactory(thread=newer)

    response = signed_in(member).get(reverse("room_detail", args=[room.slug]))

    assert [t.title for t in response.context["threads"]] == ["Rules of the room", "Newest talk"]


def test_room_page_new_thread_created_and_redirects(member: User, room: Room) -> None:
    client_id = uuid.uuid4()

    response = signed_in(member).post(
        reverse("room_detail", args=[room.slug]),
        {"title": "Skills certification", "body": "Shall we compare?", "client_id": client_id},
    )

    thread = Thread.objects.get(room=room)
    assert (response.status_code, response["Location"]) == (
        302,
        reverse("thread_detail", args=[thread.pk]),
    )
    assert (thread.title, thread.messages.get().body) == (
        "Skills certification",
        "Shall we compare?",
    )


def test_room_page_new_thread_without_title_keeps_body(member: User, room: Room) -> None:
    response = signed_in(member).post(
        reverse("room_detail", args=[room.slug]),
        {"title": "", "body": "My long text", "client_id": uuid.uuid4()},
    )

    assert (response.status_code, Thread.objects.count()) == (400, 0)
    assert response.context["form"]["body"].value() == "My long text"


def _room_page_queries(member: User, room: Room, count: int) -> Client:
    for _ in range(count):
        MessageFactory(thread=ThreadFactory(room=room, author=member))
    return signed_in(member)


@pytest.mark.parametrize("count", [1, 3])
def test_room_page_query_count_constant(
    member: User, room: Room, count: int, django_assert_num_queries: object
) -> None:
    client = _room_page_queries(member, room, count)
    url = reverse("room_detail", args=[room.slug])

    # session, user, room, verified email, threads with unread counts, memberships, active
    # mute, the notification bell's count.
    with django_assert_num_queries(8):  # type: ignore[operator]
        response = client.get(url)

    assert len(response.context["threads"]) == count


@pytest.mark.parametrize("count", [1, 3])
def test_room_list_query_count_constant(
    member: User, room: Room, count: int, django_assert_num_queries: object
) -> None:
    client = _room_page_queries(member, room, count)

    # session, user, rooms, verified email, one grouped unread count, memberships (the nav's
    # policy), the notification bell's count.
    with django_assert_num_queries(7):  # type: ignore[operator]
        response = client.get(reverse("room_list"))

    assert response.status_code == 200


# --- Thread page ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3])
def test_thread_page_query_count_constant(
    member: User, room: Room, count: int, django_assert_num_queries: object
) -> None:
    other = member_in("wg1")
    thread = ThreadFactory(room=room, author=other)
    MessageFactory.create_batch(count, thread=thread, author=other)
    client = signed_in(member)

    # session, user, thread, verified email, messages + reactions + mentions + attachments,
    # read state;
    # read_mark: one upsert; memberships, mute, the notification bell's count. (My reactions
    # come from the reactions read with the messages.)
    with django_assert_num_queries(13):  # type: ignore[operator]
        response = client.get(reverse("thread_detail", args=[thread.pk]))

    assert len(response.context["messages_page"]) == count


def test_thread_page_carries_the_room_marks_for_a_lossless_catch_up(
    member: User, thread: Thread
) -> None:
    from forums import services

    message = MessageFactory(thread=thread, author=member)
    services.message_edit(message=message, editor=member, body="edited")
    room = Room.objects.get(pk=thread.room_id)

    page = signed_in(member).get(reverse("thread_detail", args=[thread.pk])).content.decode()

    assert room.last_change > 0
    assert f'data-after="{room.last_seq}"' in page
    assert f'data-after-change="{room.last_change}"' in page


def test_thread_page_post_creates_message(member: User, thread: Thread) -> None:
    response = post_message(signed_in(member), thread, "Hello **all**")

    message = Message.objects.get(thread=thread)
    assert (response.status_code, response["Location"]) == (
        302,
        f"{reverse('thread_detail', args=[thread.pk])}#m-{message.pk}",
    )
    assert message.body_html == "<p>Hello <strong>all</strong></p>\n"


def test_thread_page_double_submit_makes_one_message(member: User, thread: Thread) -> None:
    client = signed_in(member)
    data = {"body": "Only once", "client_id": str(uuid.uuid4())}
    url = reverse("thread_detail", args=[thread.pk])

    first = client.post(url, data)
    second = client.post(url, data)

    assert (first["Location"], Message.objects.filter(thread=thread).count()) == (
        second["Location"],
        1,
    )


def test_thread_page_form_carries_fresh_client_id(member: User, thread: Thread) -> None:
    client = signed_in(member)
    url = reverse("thread_detail", args=[thread.pk])

    first = client.get(url).context["form"]["client_id"].value()
    second = client.get(url).context["form"]["client_id"].value()

    assert first != second


def test_thread_page_reply_to_prefilled(member: User, thread: Thread) -> None:
    parent = MessageFactory(thread=thread)

    response = signed_in(member).get(
        reverse("thread_detail", args=[thread.pk]), {"reply_to": parent.pk}
    )

    assert (response.context["form"]["reply_to"].value(), response.context["replying_to"]) == (
        parent.pk,
        parent,
    )


def test_thread_page_reply_posts_reply_to(member: User, thread: Thread) -> None:
    parent = MessageFactory(thread=thread)

    post_message(signed_in(member), thread, "Agreed", reply_to=str(parent.pk))

    assert Message.objects.get(body="Agreed").reply_to_id == parent.pk


def test_thread_page_observer_has_no_form_and_cannot_post(observer: User, thread: Thread) -> None:
    client = signed_in(observer)
    url = reverse("thread_detail", args=[thread.pk])

    page = client.get(url)
    response = post_message(client, thread, "Let me in")

    assert ("data-compose" in page.content.decode(), response.status_code) == (False, 403)
    assert Message.objects.filter(thread=thread).count() == 0
    assert response.context["form"]["body"].value() == "Let me in"


def test_thread_page_archived_room_is_read_only(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread, body="Kept for the record")
    Room.objects.filter(pk=thread.room_id).update(state=Room.State.ARCHIVED)
    client = signed_in(member)

    page = client.get(reverse("thread_detail", args=[thread.pk]))
    response = post_message(client, thread, "Too late")

    html = page.content.decode()
    assert ("Kept for the record" in html, "data-compose" in html) == (True, False)
    assert (response.status_code, Message.objects.filter(thread=thread).count()) == (403, 1)


def test_thread_page_locked_thread_refuses_member(member: User, thread: Thread) -> None:
    Thread.objects.filter(pk=thread.pk).update(locked=True)

    response = post_message(signed_in(member), thread, "Still here")

    assert (response.status_code, Message.objects.filter(thread=thread).count()) == (403, 0)
    assert "locked" in response.context["form"].non_field_errors()[0]


def test_thread_page_rate_limited_keeps_body(
    member: User, thread: Thread, settings: object
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 60)  # type: ignore[attr-defined]
    client = signed_in(member)
    post_message(client, thread, "First")

    response = post_message(client, thread, "Second, with care")

    assert (response.status_code, Message.objects.filter(thread=thread).count()) == (429, 1)
    assert response.context["form"]["body"].value() == "Second, with care"
    assert 'role="alert"' in response.content.decode()


def test_thread_page_empty_body_is_form_error(member: User, thread: Thread) -> None:
    response = post_message(signed_in(member), thread, "   ")

    assert (response.status_code, Message.objects.count()) == (400, 0)


def test_thread_page_marks_read_to_newest(member: User, thread: Thread) -> None:
    messages = MessageFactory.create_batch(2, thread=thread, author=member_in("wg1"))

    signed_in(member).get(reverse("thread_detail", args=[thread.pk]))

    state = ReadState.objects.get(member=member, thread=thread)
    assert (state.last_read_message_id, state.last_read_seq) == (messages[1].pk, messages[1].seq)


def test_thread_page_divider_at_first_unread(member: User, thread: Thread) -> None:
    other = member_in("wg1")
    read = MessageFactory(thread=thread, author=other)
    ReadState.objects.create(
        member=member, thread=thread, last_read_message=read, last_read_seq=read.seq
    )
    unread = MessageFactory(thread=thread, author=other)

    response = signed_in(member).get(reverse("thread_detail", args=[thread.pk]))

    html = response.content.decode()
    assert response.context["divider_id"] == unread.pk
    assert html.index('id="new-messages"') < html.index(f'id="m-{unread.pk}"')
    assert html.index(f'id="m-{read.pk}"') < html.index('id="new-messages"')


def test_thread_page_no_divider_when_all_read(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))
    ReadState.objects.create(
        member=member, thread=thread, last_read_message=message, last_read_seq=message.seq
    )

    response = signed_in(member).get(reverse("thread_detail", args=[thread.pk]))

    assert (response.context["divider_id"], 'id="new-messages"' in response.content.decode()) == (
        None,
        False,
    )


@pytest.mark.parametrize("language", ["en", "es"])
def test_thread_page_before_its_first_message_says_there_are_none(
    member: User, thread: Thread, language: str
) -> None:
    first = MessageFactory(thread=thread)
    User.objects.filter(pk=member.pk).update(language=language)

    response = signed_in(member).get(
        reverse("thread_detail", args=[thread.pk]), {"before": first.seq}
    )

    empty = {"en": "No messages yet.", "es": "Todavía no hay mensajes."}[language]
    html = response.content.decode()
    assert (
        response.context["messages_page"],
        html.count("data-empty"),
        f"m-{first.pk}" in html,
    ) == (
        [],
        1,
        False,
    )
    assert f'<li class="muted" data-empty>{empty}</li>' in html


def test_thread_page_before_pages_back(
    member: User, thread: Thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    messages = MessageFactory.create_batch(5, thread=thread)
    client = signed_in(member)
    url = reverse("thread_detail", args=[thread.pk])

    newest = client.get(url).context
    older = client.get(url, {"before": newest["older_before"]}).context
    oldest = client.get(url, {"before": older["older_before"]}).context

    assert [m.pk for m in newest["messages_page"]] == [m.pk for m in messages[3:]]
    assert [m.pk for m in older["messages_page"]] == [m.pk for m in messages[1:3]]
    assert ([m.pk for m in oldest["messages_page"]], oldest["has_older"]) == (
        [messages[0].pk],
        False,
    )


def test_thread_page_hidden_message_for_members_and_moderators(
    member: User, chair: User, thread: Thread
) -> None:
    MessageFactory(
        thread=thread, body="Offensive words", hidden_reason="Insults", hidden_at=thread.created
    )

    as_member = signed_in(member).get(reverse("thread_detail", args=[thread.pk])).content.decode()
    as_chair = signed_in(chair).get(reverse("thread_detail", args=[thread.pk])).content.decode()

    assert ("Offensive words" in as_member, "Hidden by a moderator." in as_member) == (False, True)
    assert ("Offensive words" in as_chair, "Insults" in as_chair) == (True, True)


def test_thread_page_escapes_script_in_body(member: User, thread: Thread) -> None:
    post_message(signed_in(member), thread, "<script>alert(1)</script>")

    html = signed_in(member).get(reverse("thread_detail", args=[thread.pk])).content.decode()

    assert (
        "<script>alert(1)</script>" in html,
        "&lt;script&gt;alert(1)&lt;/script&gt;" in html,
    ) == (
        False,
        True,
    )


def test_thread_page_has_no_inline_script_or_style(member: User, thread: Thread) -> None:
    MessageFactory(thread=thread)

    html = signed_in(member).get(reverse("thread_detail", args=[thread.pk])).content.decode()

    scripts = html.count("<script")
    external_or_data = html.count('<script type="module" src=') + html.count(
        '<script id="forum-config" type="application/json">'
    )
    assert (scripts, " style=" in html) == (external_or_data, False)


# --- Message actions --------------------------------------------------------------------------


def test_message_edit_own_saves_new_body(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread, author=member, body="Frist")

    response = signed_in(member).post(reverse("message_edit", args=[message.pk]), {"body": "First"})

    message.refresh_from_db()
    assert (response.status_code, message.body, message.revisions.get().body) == (
        302,
        "First",
        "Frist",
    )


def test_message_edit_someone_elses_forbidden(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"))

    response = signed_in(member).post(reverse("message_edit", args=[message.pk]), {"body": "Mine"})

    assert response.status_code == 403


def test_message_delete_own_leaves_tombstone(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread, author=member)

    signed_in(member).post(reverse("message_delete", args=[message.pk]))

    message.refresh_from_db()
    assert (message.body, message.deleted_at is not None) == ("", True)


def test_message_delete_someone_elses_refused(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread, author=member_in("wg1"), body="Theirs")

    response = signed_in(member).post(reverse("message_delete", args=[message.pk]), follow=True)

    message.refresh_from_db()
    assert (message.body, [str(m) for m in response.context["messages"]]) == (
        "Theirs",
        ["Only the author or a moderator may delete a message."],
    )


def test_message_react_toggles(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread)
    client = signed_in(member)
    url = reverse("message_react", args=[message.pk])

    client.post(url, {"emoji": "🎉"})
    after_one = list(Reaction.objects.values_list("member_id", "emoji"))
    client.post(url, {"emoji": "🎉"})

    assert (after_one, Reaction.objects.count()) == ([(member.pk, "🎉")], 0)


def test_message_react_unknown_emoji_refused(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread)

    signed_in(member).post(reverse("message_react", args=[message.pk]), {"emoji": "💩"})

    assert Reaction.objects.count() == 0


def test_thread_page_shows_my_reaction_pressed(member: User, thread: Thread) -> None:
    message = MessageFactory(thread=thread)
    Reaction.objects.create(message=message, member=member, emoji="👀")

    response = signed_in(member).get(reverse("thread_detail", args=[thread.pk]))

    page_message = response.context["messages_page"][0]
    assert [r for r in page_message.reaction_list if r[1]] == [("👀", 1, True)]


# --- Mention autocomplete ---------------------------------------------------------------------


def test_room_members_matches_handle_prefix_in_group(member: User, room: Room) -> None:
    member_in("wg1", handle="anabel", name="Anabel Ruiz")
    member_in("wg2", handle="anatole", name="Anatole Blanc")

    response = signed_in(member).get(reverse("room_members", args=[room.slug]), {"q": "@ana"})

    assert [m["handle"] for m in response.json()["members"]] == ["ana", "anabel"]


def test_room_members_empty_query_returns_nothing(member: User, room: Room) -> None:
    response = signed_in(member).get(reverse("room_members", args=[room.slug]), {"q": ""})

    assert response.json() == {"members": []}


def test_room_members_chair_role_listed(member: User, room: Room) -> None:
    member_in("wg1", handle="zeca", name="Zeca Lima", role=Role.CHAIR)

    response = signed_in(member).get(reverse("room_members", args=[room.slug]), {"q": "lima"})

    assert [m["handle"] for m in response.json()["members"]] == ["zeca"]


@pytest.mark.parametrize("language", ["es", "pt", "fr"])
def test_thread_page_renders_in_member_language(
    member: User, thread: Thread, language: str
) -> None:
    MessageFactory(thread=thread)
    User.objects.filter(pk=member.pk).update(language=language)
    client = signed_in(member)

    response = client.get(reverse("thread_detail", args=[thread.pk]))

    assert (response.status_code, f'<html lang="{language}">' in response.content.decode()) == (
        200,
        True,
    )


@pytest.mark.parametrize(
    ("language", "react_with"),
    [("en", "React with"), ("es", "Reaccionar con"), ("pt", "Reagir com"), ("fr", "Réagir avec")],
)
def test_every_reaction_button_of_every_message_is_labelled_in_the_member_language(
    member: User, room: Room, language: str, react_with: str
) -> None:
    other = member_in("wg1")
    thread = ThreadFactory(room=room, author=other)
    MessageFactory.create_batch(2, thread=thread, author=other)
    User.objects.filter(pk=member.pk).update(language=language)

    body = signed_in(member).get(reverse("thread_detail", args=[thread.pk])).content.decode()

    labels = [f'aria-label="{react_with} {emoji}"' for emoji in REACTION_EMOJI]
    assert [body.count(label) for label in labels] == [2] * len(REACTION_EMOJI)
