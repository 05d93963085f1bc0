"""Search over the messages and thread titles a member may read.

PostgreSQL: full-text search with the 'simple' configuration (no stemming, no stop words), so
English, Spanish, Portuguese and French text is found alike; GIN indexes on the same expressions
(migration 0004) keep it fast. Snippets come from ts_headline and are escaped here: the only HTML
in a snippet is <mark>. Elsewhere (SQLite, the embedded default): every word must occur,
case-insensitively, and the snippet is cut around the first match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from community import policy
from community.models import User

from .models import Message, Room, Thread

CONFIG = "simple"
MAX_QUERY_CHARS = 200
DEFAULT_LIMIT = 30
SNIPPET_CHARS = 160
# Private-use characters mark the highlights inside ts_headline's text: the text is escaped
# first and only then are they turned into <mark>, so nothing else in a snippet is HTML.
_START, _STOP = "\ue000", "\ue001"
_HIGHLIGHT = re.compile(f"{_START}(.*?){_STOP}", re.DOTALL)


@dataclass
class Filters:
    q: str
    room: Room | None = None
    author: User | None = None
    since: date | None = None
    until: date | None = None


@dataclass
class Results:
    threads: list[Thread] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


def highlight(text: str) -> SafeString:
    """Escape `text` and turn the sentinel-marked spans into <mark>; stray sentinels go."""
    escaped = escape(text)
    marked = _HIGHLIGHT.sub(r"<mark>\1</mark>", escaped)
    return mark_safe(marked.replace(_START, "").replace(_STOP, ""))  # noqa: S308 - escaped above


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _scope(member: Any, filters: Filters) -> tuple[list[int], list[int]]:
    """(room ids the member may read, room ids they moderate), narrowed to filters.room."""
    rooms = [filters.room] if filters.room is not None else list(Room.objects.all())
    readable = [r for r in rooms if policy.can_read_room(member, r)]
    moderated = [r.pk for r in readable if policy.can_moderate_room(member, r)]
    return [r.pk for r in readable], moderated


def _messages(member: Any, filters: Filters) -> QuerySet[Message]:
    readable, moderated = _scope(member, filters)
    qs = Message.objects.filter(room_id__in=readable, deleted_at__isnull=True).filter(
        Q(hidden_at__isnull=True) | Q(room_id__in=moderated)
    )
    if filters.author is not None:
        qs = qs.filter(author=filters.author)
    if filters.since is not None:
        qs = qs.filter(created_at__gte=_day_start(filters.since))
    if filters.until is not None:
        qs = qs.filter(created_at__lt=_day_start(filters.until + timedelta(days=1)))
    return qs.select_related("author", "author__organization", "room", "thread")


def _threads(member: Any, filters: Filters) -> QuerySet[Thread]:
    readable, _moderated = _scope(member, filters)
    qs = Thread.objects.filter(room_id__in=readable)
    if filters.author is not None:
        qs = qs.filter(author=filters.author)
    if filters.since is not None:
        qs = qs.filter(last_activity_at__gte=_day_start(filters.since))
    if filters.until is not None:
        qs = qs.filter(created__lt=_day_start(filters.until + timedelta(days=1)))
    return qs.select_related("author", "room")


def search(*, member: Any, filters: Filters, limit: int = DEFAULT_LIMIT) -> Results:
    """Threads whose title and messages whose body match `filters.q`, best first.

    Each result carries `snippet` (safe HTML, only <mark>). Deleted messages are never found;
    hidden ones only by the room's moderators.
    """
    if not filters.q.strip():
        return Results()
    if connection.vendor == "postgresql":
        return search_fulltext(member=member, filters=filters, limit=limit)
    return search_basic(member=member, filters=filters, limit=limit)


def search_fulltext(*, member: Any, filters: Filters, limit: int = DEFAULT_LIMIT) -> Results:
    """PostgreSQL full-text search ('simple' configuration, web-search query syntax)."""
    query = SearchQuery(filters.q, config=CONFIG, search_type="websearch")
    options = {
        "config": CONFIG,
        "start_sel": _START,
        "stop_sel": _STOP,
        "max_words": 30,
        "min_words": 12,
        "max_fragments": 2,
        "fragment_delimiter": " … ",
    }
    body = SearchVector("body", config=CONFIG)
    messages = list(
        _messages(member, filters)
        .annotate(_match=body)
        .filter(_match=query)
        .annotate(rank=SearchRank(body, query), headline=SearchHeadline("body", query, **options))
        .order_by("-rank", "-created_at")[:limit]
    )
    title = SearchVector("title", config=CONFIG)
    threads = list(
        _threads(member, filters)
        .annotate(_match=title, headline=SearchHeadline("title", query, **options))
        .filter(_match=query)
        .order_by("-last_activity_at", "-id")[:limit]
    )
    for item in [*messages, *threads]:
        item.snippet = highlight(item.headline)  # type: ignore[union-attr]
    return Results(threads=threads, messages=messages)


def _words(q: str) -> list[str]:
    return [w for w in (part.strip("\"'") for part in q.split()) if w][:10]


def _snippet(text: str, words: list[str]) -> SafeString:
    """Up to SNIPPET_CHARS of `text` around the first match, every match marked."""
    lowered = text.casefold()
    first = min((i for i in (lowered.find(w.casefold()) for w in words) if i >= 0), default=0)
    start = max(first - SNIPPET_CHARS // 3, 0)
    piece = text[start : start + SNIPPET_CHARS]
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    marked = pattern.sub(lambda m: f"{_START}{m.group(0)}{_STOP}", piece.replace(_START, ""))
    prefix = "… " if start else ""
    suffix = " …" if start + SNIPPET_CHARS < len(text) else ""
    return highlight(f"{prefix}{marked}{suffix}")


def search_basic(*, member: Any, filters: Filters, limit: int = DEFAULT_LIMIT) -> Results:
    """Any database: every word occurs in the text (case-insensitive), newest first."""
    words = _words(filters.q)
    if not words:
        return Results()
    body_q, title_q = Q(), Q()
    for word in words:
        body_q &= Q(body__icontains=word)
        title_q &= Q(title__icontains=word)
    messages = list(_messages(member, filters).filter(body_q).order_by("-created_at")[:limit])
    threads = list(
        _threads(member, filters)
        .filter(title_q)
        .order_by(F("last_activity_at").desc(), "-id")[:limit]
    )
    for message in messages:
        message.snippet = _snippet(message.body, words)  # type: ignore[attr-defined]
    for thread in threads:
        thread.snippet = _snippet(thread.title, words)  # type: ignore[attr-defined]
    return Results(threads=threads, messages=messages)
