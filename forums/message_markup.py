"""A thread page's messages as HTML, written in Python (ADR 0015).

The thread page lists up to fifty messages. Through the template engine each message cost about
4,200 Python calls: every `{{ }}` is resolved, localized and escaped, every `{% url %}` reversed,
every `{% translate %}` looked up again, for six reaction buttons twice over. That made the
template most of a busy thread's page. Here the words, the URL patterns, the CSRF field and the
date format are looked up once per page (`PageMarkup`), and each message is one function that
escapes every value it writes.

The markup is the contract forum.js keeps (it renders live messages into the same structure and
updates them in place): class names, `data-` attributes and the order of controls. Escaping
follows the template engine's rules, so the bytes are those `_message.html` produced: every
value a member wrote is escaped; translations are written as they are, as `{% translate %}`
writes them; the message body is HTML the renderer sanitized when the message was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from html import escape
from typing import TYPE_CHECKING

from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.formats import get_format
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from .models import Message

# The URLs a message links to, by name without the "message_" prefix; each takes the message's
# id. forum.js gets the same patterns (forums.views._client_urls).
MESSAGE_URLS = ("edit", "delete", "react", "report", "hide", "unhide", "mute")

# Django's date format characters that show something finer than the minute: seconds,
# microseconds, Unix time, and the ISO 8601 and RFC 5322 forms (both with seconds). A backslash
# makes the next character a literal (Spanish: "j \d\e F \d\e Y \a \l\a\s H:i").
_FINER_THAN_A_MINUTE = frozenset("sucrU")
_LITERAL = re.compile(r"\\.")


def shows_only_minutes(datetime_format: str) -> bool:
    """Whether `datetime_format` (Django's `date` syntax) shows nothing finer than a minute."""
    return _FINER_THAN_A_MINUTE.isdisjoint(_LITERAL.sub("", datetime_format))


def _pattern(name: str) -> tuple[str, str]:
    """The reversed URL split around its id, so an id is filled in without reversing again."""
    prefix, suffix = reverse(name, args=[0]).rsplit("/0/", 1)
    return prefix + "/", "/" + suffix


@dataclass(frozen=True, slots=True)
class Words:
    """The page's words in the active language. Like `{% translate %}`, the translations are
    written as they are: they are trusted text (ADR 0006), not a member's."""

    edited: str
    in_reply_to: str  # filled with an escaped name, as `{% blocktranslate %}` fills it
    in_reply_to_earlier: str
    deleted: str
    hidden: str
    only_moderators: str
    reason: str
    attachments: str
    react_with: str
    react: str
    reply: str
    edit: str
    delete: str
    delete_confirm: str
    report: str
    show_again: str
    hide: str
    mute: str
    new_messages: str
    no_messages: str

    @classmethod
    def translated(cls) -> Words:
        return cls(
            edited=_("(edited)"),
            in_reply_to=_("In reply to %(name)s"),
            in_reply_to_earlier=_("In reply to an earlier message"),
            deleted=_("This message was deleted."),
            hidden=_("Hidden by a moderator."),
            only_moderators=_("Only moderators see it."),
            reason=_("Reason:"),
            attachments=_("Attachments"),
            react_with=_("React with"),
            react=_("React"),
            reply=_("Reply"),
            edit=_("Edit"),
            delete=_("Delete"),
            delete_confirm=_("Delete this message?"),
            report=_("Report"),
            show_again=_("Show again"),
            hide=_("Hide"),
            mute=_("Mute author"),
            new_messages=_("New messages"),
            no_messages=_("No messages yet."),
        )


@dataclass(frozen=True, slots=True)
class PageMarkup:
    """What every message of one page shares: the viewer, their rights, words and patterns.

    Build it inside the request (the active language and time zone are read here) with
    `PageMarkup.for_viewer`, then call `message(m)` for each message of the page.
    """

    member_id: int
    can_post: bool
    can_participate: bool  # react and edit: posting rules (a locked thread, a mute refuse them)
    can_moderate: bool
    csrf_field: str
    words: Words
    urls: dict[str, tuple[str, str]]
    attachment_url: tuple[str, str]
    zone: tzinfo
    datetime_format: str
    # Each minute's text, formatted once a page: a meeting's messages share their minutes, and
    # formatting was half of writing a message. Only where the format shows nothing finer
    # (derived from `datetime_format`).
    by_minute: bool = field(init=False)
    _minutes: dict[datetime, str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_minute", shows_only_minutes(self.datetime_format))

    @classmethod
    def for_viewer(
        cls,
        *,
        member_id: int,
        can_post: bool,
        can_participate: bool,
        can_moderate: bool,
        csrf_token: str,
    ) -> PageMarkup:
        return cls(
            member_id=member_id,
            can_post=can_post,
            can_participate=can_participate,
            can_moderate=can_moderate,
            csrf_field=(
                f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf_token)}">'
            ),
            words=Words.translated(),
            urls={name: _pattern(f"message_{name}") for name in MESSAGE_URLS},
            attachment_url=_pattern("attachment_download"),
            zone=timezone.get_current_timezone(),
            datetime_format=get_format("DATETIME_FORMAT"),
        )

    def _url(self, name: str, pk: int) -> str:
        prefix, suffix = self.urls[name]
        return f"{prefix}{pk}{suffix}"

    # The divider and the empty list's line hold translations only, written as they are.
    def divider(self) -> SafeString:
        """The "New messages" line before the first message the viewer has not read."""
        return mark_safe(  # noqa: S308
            '<li class="new-divider" id="new-messages" data-divider>'
            f"<span>{self.words.new_messages}</span></li>\n"
        )

    def empty(self) -> SafeString:
        """The list of a thread without messages."""
        return mark_safe(f'<li class="muted" data-empty>{self.words.no_messages}</li>\n')  # noqa: S308

    def message(self, m: Message, reactions: list[tuple[str, int, bool]]) -> SafeString:
        """One message's `<li>`. `m` comes from a list selector (author, organization,
        attachments and reactions already read) with `parent` set by the view to the replied-to
        message when it is on the page, else None; `reactions` is (emoji, count, mine) in the
        fixed order. Reads nothing from the database."""
        pk = m.pk
        own = m.author_id == self.member_id
        author_name = escape(m.author.name)
        classes = "msg"
        if m.hidden_at:
            classes += " msg-hidden"
        if m.deleted_at:
            classes += " msg-deleted"
        if own:
            classes += " msg-own"
        out = [
            f'<li class="{classes}" id="m-{pk}" data-id="{pk}" data-seq="{m.seq}">\n'
            f'<article aria-labelledby="m-{pk}-author">\n',
            self._head(m, author_name),
            self._body(m),
        ]
        if not m.deleted_at:
            out.append(self._reactions(pk, reactions))
            out.append(self._actions(m, own, author_name))
        out.append("</article>\n</li>")
        return mark_safe("".join(out))  # noqa: S308 every value above is escaped

    def _head(self, m: Message, author_name: str) -> str:
        w = self.words
        pk = m.pk
        created = m.created_at.astimezone(self.zone)
        out = [
            '<header class="msg-head">\n'
            f'<span class="msg-author" id="m-{pk}-author">{author_name}</span>\n'
        ]
        if m.author.organization is not None:
            out.append(f'<span class="muted msg-org">{escape(m.author.organization.name)}</span>')
        out.append(
            f'\n<a class="msg-time muted" href="#m-{pk}"><time datetime="{created.isoformat()}">'
            f"{self._shown_time(created)}</time></a>\n"
        )
        if m.edited_at and not m.deleted_at:
            out.append(f'<span class="muted msg-edited">{w.edited}</span>')
        out.append("\n</header>\n")
        if m.reply_to_id:
            parent = getattr(m, "parent", None)
            if parent is not None:
                reply_ref = (
                    f'<a href="#m-{parent.pk}">'
                    f"{w.in_reply_to % {'name': escape(parent.author.name)}}</a>"
                )
            else:
                reply_ref = w.in_reply_to_earlier
            out.append(f'<p class="msg-reply-ref muted">{reply_ref}</p>\n')
        return "".join(out)

    def _shown_time(self, created: datetime) -> str:
        """`created` (in the viewer's zone) in the viewer's format, escaped."""
        if not self.by_minute:
            return escape(dateformat.format(created, self.datetime_format))
        # The hour a clock repeats when summer time ends shares its keys with the first one;
        # Django shows no zone for those ambiguous times, so their texts are the same too.
        minute = created.replace(second=0, microsecond=0)
        shown = self._minutes.get(minute)
        if shown is None:
            shown = self._minutes[minute] = escape(dateformat.format(created, self.datetime_format))
        return shown

    def _body(self, m: Message) -> str:
        w = self.words
        if m.deleted_at:
            return f'<p class="msg-body muted">{w.deleted}</p>\n'
        if m.hidden_at and not self.can_moderate:
            return f'<p class="msg-body muted">{w.hidden}</p>\n'
        out = []
        if m.hidden_at:
            out.append(
                f'<p class="msg-hidden-note" role="note"><strong>{w.hidden}</strong> '
                f"{w.only_moderators} {w.reason} {escape(m.hidden_reason)}</p>\n"
            )
        out.append(f'<div class="msg-body">{m.body_html}</div>\n')
        files = m.attachments.all()
        if files:
            prefix, suffix = self.attachment_url
            out.append(f'<ul class="msg-attachments" aria-label="{w.attachments}">\n')
            out.extend(
                f'<li><a href="{prefix}{f.pk}{suffix}" download>{escape(f.original_name)}'
                f'</a> <span class="muted">({escape(filesizeformat(f.size))})</span></li>'
                for f in files
            )
            out.append("\n</ul>\n")
        return "".join(out)

    def _reactions(self, pk: int, reactions: list[tuple[str, int, bool]]) -> str:
        react_with = self.words.react_with
        disabled = "" if self.can_participate else " disabled"
        out = [
            f'<form class="reactions" method="post" action="{self._url("react", pk)}">\n'
            f"{self.csrf_field}\n"
        ]
        for emoji, count, mine in reactions:
            if count:
                e = escape(emoji)
                out.append(
                    f'<button type="submit" name="emoji" value="{e}" class="reaction" '
                    f'aria-pressed="{"true" if mine else "false"}"{disabled}>'
                    f'<span aria-hidden="true">{e}</span> <span class="visually-hidden">'
                    f"{react_with} {e}:</span> {count}</button>"
                )
        if self.can_participate:
            out.append(
                f'\n<details class="reaction-picker">\n<summary>{self.words.react}</summary>\n'
            )
            for emoji, _count, _mine in reactions:
                e = escape(emoji)
                out.append(
                    f'<button type="submit" name="emoji" value="{e}" class="reaction" '
                    f'aria-label="{react_with} {e}">{e}</button>'
                )
            out.append("\n</details>")
        out.append("\n</form>\n")
        return "".join(out)

    def _actions(self, m: Message, own: bool, author_name: str) -> str:
        w = self.words
        pk = m.pk
        out = ['<ul class="msg-actions">\n']
        if self.can_post:
            out.append(
                f'<li><a href="?reply_to={pk}#compose" data-reply="{pk}" '
                f'data-reply-name="{author_name}">{w.reply}</a></li>\n'
            )
        if own and self.can_participate:
            out.append(f'<li><a href="{self._url("edit", pk)}">{w.edit}</a></li>\n')
        if (own and self.can_participate) or self.can_moderate:
            out.append(
                f'<li><form method="post" action="{self._url("delete", pk)}" '
                f'data-confirm="{w.delete_confirm}">{self.csrf_field}'
                f'<button type="submit" class="link-button">{w.delete}</button></form></li>\n'
            )
        if not own:
            out.append(f'<li><a href="{self._url("report", pk)}">{w.report}</a></li>\n')
        if self.can_moderate:
            if m.hidden_at:
                out.append(
                    f'<li><form method="post" action="{self._url("unhide", pk)}">'
                    f'{self.csrf_field}<button type="submit" class="link-button">'
                    f"{w.show_again}</button></form></li>\n"
                )
            else:
                out.append(f'<li><a href="{self._url("hide", pk)}">{w.hide}</a></li>\n')
            if not own:
                out.append(f'<li><a href="{self._url("mute", pk)}">{w.mute}</a></li>\n')
        out.append("</ul>\n")
        return "".join(out)
