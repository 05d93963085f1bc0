"""Pages of the forums: rooms, threads, messages, moderation and search.

Server-rendered and complete without JavaScript; frontend/static/minga/forum.js adds live
updates. Views parse input, call one service (forums.services, forums.moderation) or selector
and render; a service's refusal is shown on the form in the member's language with what they
typed kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.forms import Form
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST, require_safe

from community import policy
from community.models import User

from . import attachments, moderation, selectors, services
from .forms import (
    EditForm,
    MessageForm,
    MuteForm,
    ReactionForm,
    ReasonForm,
    ResolveForm,
    RoomSettingsForm,
    SearchForm,
    ThreadForm,
)
from .message_markup import MESSAGE_URLS, PageMarkup
from .models import REACTION_EMOJI, Attachment, Message, Report, Room, RoomMute, Thread
from .search import Filters, search

PAGE_SIZE = 50
MENTION_LIMIT = 8
# HTTP status of a page re-shown with a service's refusal, by error code.
_STATUS = {
    "forbidden": 403,
    "room_locked": 403,
    "thread_locked": 403,
    "rate_limited": 429,
    "not_found": 404,
    "too_large": 413,
    "unsupported_type": 415,
}


def show_service_error(form: Form, error: ValidationError | PermissionDenied) -> int:
    """Put a service's error on `form` (under its field when the form has it); the HTTP status."""
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        for name, errors in error.message_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, services.error_detail(error))
    return _STATUS.get(services.error_code(error), 400)


def _member(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def thread_url(thread_id: int, message_id: int | None = None) -> str:
    url = reverse("thread_detail", args=[thread_id])
    return f"{url}#m-{message_id}" if message_id else url


# --- Rooms ------------------------------------------------------------------------------------


@login_required
@require_GET
def room_list(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    rooms = selectors.rooms_readable(member=member)
    groups: OrderedDict[Any, list[Room]] = OrderedDict()
    for room in rooms:
        groups.setdefault(room.working_group, []).append(room)
    return render(request, "forums/room_list.html", {"groups": list(groups.items())})


@login_required
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    member = _member(request)
    room = selectors.room_for_member(slug=slug, member=member)
    form = ThreadForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                thread = services.thread_create(
                    room=room,
                    author=member,
                    title=data["title"],
                    body=data["body"],
                    client_id=data["client_id"],
                )
            except (ValidationError, PermissionDenied) as error:
                status = show_service_error(form, error)
            else:
                return redirect(thread_url(thread.pk))
        else:
            status = 400
    threads = list(selectors.threads_for_room(room=room, member=member))
    context = {
        "room": room,
        "threads": threads,
        "form": form,
        "can_post": policy.can_post_in_room(member, room),
        "can_moderate": policy.can_moderate_room(member, room),
        "mute": moderation.active_mute(member=member, room=room),
    }
    return render(request, "forums/room_detail.html", context, status=status)


@login_required
@require_GET
def room_members(request: HttpRequest, slug: str) -> JsonResponse:
    """Mention autocomplete: members whose handle or name starts with `q` (at most 8).

    The room's working group's members for a group room, every active member otherwise.
    """
    room = selectors.room_for_member(slug=slug, member=_member(request))
    q = request.GET.get("q", "").strip().lstrip("@")[:60]
    if not q:
        return JsonResponse({"members": []})
    people = User.objects.filter(is_active=True, handle__gt="").filter(
        Q(handle__istartswith=q) | Q(name__istartswith=q) | Q(name__icontains=f" {q}")
    )
    if room.working_group_id is not None:
        people = people.filter(memberships__working_group_id=room.working_group_id)
    found = people.select_related("organization").order_by("handle")[:MENTION_LIMIT]
    return JsonResponse({"members": [selectors.member_payload(person) for person in found]})


# --- Threads ----------------------------------------------------------------------------------


def _parse_seq(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def _upload_refused_page(request: HttpRequest, limits: attachments.UploadLimits) -> HttpResponse:
    return render(
        request,
        "forums/upload_refused.html",
        {"max_size": filesizeformat(limits.max_bytes), "max_files": limits.max_files},
        status=413,
    )


# CSRF is checked inside limit_uploads (csrf_protect): the upload handler has to be in place
# before anything parses the body, and the CSRF middleware would parse it first.
@csrf_exempt
@attachments.limit_uploads(attachments.MAX_PER_MESSAGE, refuse=_upload_refused_page)
@csrf_protect
@login_required
def thread_detail(request: HttpRequest, thread_id: int) -> HttpResponse:
    member = _member(request)
    thread = selectors.thread_for_member(thread_id=thread_id, member=member)
    room = thread.room
    # Read before the messages: frames above this seq may repeat messages on the page, and the
    # client drops repeats by id, while none can fall in between.
    room_seq = room.last_seq
    # Likewise the change mark: a change after it is replayed (idempotent), none is missed.
    room_change = room.last_change
    reply_to = _parse_seq(request.GET.get("reply_to"))
    form = MessageForm(request.POST or None, request.FILES or None, initial={"reply_to": reply_to})
    status = 200
    pending: list[int] = []
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            pending = list(data["attachments"])
            try:
                _check_dropped(request.upload_limits)  # type: ignore[attr-defined]
                for uploaded in data["files"]:
                    attachment = services.attachment_upload(
                        room=room, uploader=member, uploaded_file=uploaded
                    )
                    pending.append(attachment.pk)
                message, _created = services.message_post(
                    thread=thread,
                    author=member,
                    body=data["body"],
                    client_id=data["client_id"],
                    reply_to_id=data["reply_to"],
                    attachment_ids=pending,
                )
            except (ValidationError, PermissionDenied) as error:
                if services.error_code(error) in {"too_large", "unsupported_type"}:
                    form.add_error("files", error)
                    status = _STATUS[services.error_code(error)]
                else:
                    status = show_service_error(form, error)
                # Files stored before the refusal wait for the next try (the page lists them).
                form.data = form.data.copy()
                form.data.setlist("attachments", [str(pk) for pk in pending])
            else:
                return redirect(thread_url(thread.pk, message.pk))
        else:
            status = 400
    before = _parse_seq(request.GET.get("before"))
    page, has_older = _thread_page(thread, before)
    state = selectors.read_state_of(member=member, thread=thread)
    last_read_seq = state.last_read_seq if state is not None else 0
    divider_id = None
    if state is not None:
        divider_id = next(
            (m.pk for m in page if m.seq > last_read_seq and m.author_id != member.pk), None
        )
    if before is None and page and page[-1].seq > last_read_seq:
        services.read_mark(member=member, thread=thread, message_id=page[-1].pk)
    mine = selectors.reactions_of(page, member.pk)
    can_moderate = policy.can_moderate_room(member, room)
    mute = moderation.active_mute(member=member, room=room)
    by_id = {m.pk: m for m in page}
    can_post = (
        policy.can_post_in_room(member, room)
        and (not thread.locked or can_moderate)
        and mute is None
    )
    markup = PageMarkup.for_viewer(
        member_id=member.pk,
        can_post=can_post,
        # Reactions and edits follow the posting rules (a locked thread, a mute refuse them).
        can_participate=can_post,
        can_moderate=can_moderate,
        csrf_token=get_token(request),
    )
    messages_markup = _mark_up(page, by_id, mine, markup, divider_id)
    replying_to = by_id.get(form["reply_to"].value()) if form["reply_to"].value() else None
    pending_files = list(
        Attachment.objects.filter(
            pk__in=pending, uploader=member, room=room, message__isnull=True
        ).only("id", "original_name", "size")
        if pending
        else []
    )
    context = {
        "room": room,
        "thread": thread,
        "messages_page": page,
        "messages_markup": messages_markup,
        "has_older": has_older,
        "older_before": page[0].seq if page else None,
        "paged": before is not None,
        "divider_id": divider_id,
        "form": form,
        "replying_to": replying_to,
        "pending_files": pending_files,
        "can_post": can_post,
        "can_moderate": can_moderate,
        "mute": mute,
        "room_seq": room_seq,
        "room_change": room_change,
        "forum_config": {"strings": _client_strings(), "urls": _client_urls()},
    }
    return render(request, "forums/thread_detail.html", context, status=status)


def _mark_up(
    page: list[Message],
    by_id: dict[int, Message],
    mine: set[tuple[int, str]],
    markup: PageMarkup,
    divider_id: int | None,
) -> SafeString:
    """The message list's items: each message's `<li>`, the "New messages" divider before
    `divider_id`, or the empty list's line. Sets each message's `parent` (when on the page),
    `reaction_list` ((emoji, count, mine) in the fixed order) and `markup`, its `<li>`."""
    if not page:
        return markup.empty()
    items = []
    for message in page:
        message.parent = by_id.get(message.reply_to_id) if message.reply_to_id else None  # type: ignore[attr-defined]
        counts = selectors.reaction_counts(message)
        message.reaction_list = [  # type: ignore[attr-defined]
            (emoji, counts.get(emoji, 0), (message.pk, emoji) in mine) for emoji in REACTION_EMOJI
        ]
        message.markup = markup.message(message, message.reaction_list)  # type: ignore[attr-defined]
        if message.pk == divider_id:
            items.append(markup.divider())
        items.append(message.markup)
    return mark_safe("\n".join(items))  # noqa: S308 - PageMarkup escaped every value


def _check_dropped(limits: attachments.UploadLimits) -> None:
    """Raise the service's error for files the upload handler dropped while they streamed in."""
    if limits.too_large:
        raise ValidationError(
            _("%(name)s is too large: at most %(size)s per file.")
            % {"name": limits.too_large[0], "size": filesizeformat(limits.max_bytes)},
            code="too_large",
        )
    if limits.too_many:
        raise ValidationError(
            {
                "files": ngettext(
                    "At most %(count)s file per message.",
                    "At most %(count)s files per message.",
                    limits.max_files,
                )
                % {"count": limits.max_files}
            },
            code="invalid",
        )


@login_required
@require_safe
def attachment_download(request: HttpRequest, attachment_id: int) -> FileResponse:
    """The file, to members who may read its room; 404 for everyone else and anything missing.

    Always a download (`attachment`), with the sniffed type, `nosniff` and a sandboxing CSP, so
    a file is never rendered as a page of this site.
    """
    attachment = selectors.attachment_for_member(
        attachment_id=attachment_id, member=_member(request)
    )
    try:
        handle = attachment.file.storage.open(attachment.file.name, "rb")
    except FileNotFoundError as exc:
        raise Http404(_("No attachment %(id)s.") % {"id": attachment_id}) from exc
    content_type = attachment.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    response = FileResponse(
        handle, as_attachment=True, filename=attachment.original_name, content_type=content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _client_strings() -> dict[str, str]:
    """The words forum.js shows, in the member's language (the page carries them as JSON)."""
    return {
        "new_messages": _("New messages"),
        "deleted": _("This message was deleted."),
        "hidden": _("Hidden by a moderator."),
        "hidden_moderator": _("Hidden by a moderator. Reload the page to see it."),
        "edited": _("(edited)"),
        "reply": _("Reply"),
        "react": _("React"),
        "edit": _("Edit"),
        "delete": _("Delete"),
        "delete_confirm": _("Delete this message?"),
        "report": _("Report"),
        "hide": _("Hide"),
        "unhide": _("Show again"),
        "mute_author": _("Mute author"),
        "replying_to": _("Replying to %(name)s"),
        "in_reply_to": _("In reply to %(name)s"),
        "in_reply_to_earlier": _("In reply to an earlier message"),
        "typing_one": _("%(name)s is typing…"),
        "typing_many": _("%(names)s are typing…"),
        "here_now": _("Here now: %(names)s"),
        "live": _("Live"),
        "offline": _("Offline: new messages appear when the connection is back."),
        "resync": _("Reloading to catch up…"),
        "pinned": pgettext("thread state", "Pinned"),
        "locked": pgettext("thread state", "Locked"),
        "react_with": _("React with"),
        "send_failed": _("Your message was not sent: %(detail)s"),
        "loading": _("Loading…"),
        "no_more": _("This is the beginning of the thread."),
        "attachments": _("Attachments"),
        "file_too_large": _("%(name)s is too large: at most %(size)s per file."),
    }


def _client_urls() -> dict[str, str]:
    """URL patterns forum.js fills in with a message id (the 0 is replaced)."""
    return {name: reverse(f"message_{name}", args=[0]) for name in MESSAGE_URLS}


def _thread_page(thread: Thread, before: int | None) -> tuple[list[Message], bool]:
    """The newest PAGE_SIZE messages (with seq below `before` when given) and whether older
    ones exist."""
    if before is None:
        page = selectors.thread_messages(thread=thread, limit=PAGE_SIZE + 1)
    else:
        anchor = (
            Message.objects.filter(thread=thread, seq__gte=before)
            .order_by("seq")
            .values_list("pk", flat=True)
            .first()
        )
        if anchor is None:
            page = selectors.thread_messages(thread=thread, limit=PAGE_SIZE + 1)
            page = [m for m in page if m.seq < before]
        else:
            page = selectors.thread_messages(thread=thread, before=anchor, limit=PAGE_SIZE + 1)
    return page[-PAGE_SIZE:], len(page) > PAGE_SIZE


@login_required
@require_POST
def thread_moderate(request: HttpRequest, thread_id: int) -> HttpResponse:
    member = _member(request)
    thread = selectors.thread_for_member(thread_id=thread_id, member=member)
    action = request.POST.get("action", "")
    if action in {"pin", "unpin"}:
        moderation.thread_pin_set(thread=thread, actor=member, pinned=action == "pin")
        messages.success(
            request, _("The thread is pinned.") if action == "pin" else _("The thread is unpinned.")
        )
    elif action in {"lock", "unlock"}:
        moderation.thread_lock_set(thread=thread, actor=member, locked=action == "lock")
        messages.success(
            request,
            _("The thread is locked.") if action == "lock" else _("The thread is unlocked."),
        )
    else:
        messages.error(request, _("Unknown action."))
    return redirect(thread_url(thread.pk))


# --- Messages ---------------------------------------------------------------------------------


def _message(request: HttpRequest, message_id: int) -> Message:
    return selectors.message_for_member(message_id=message_id, member=_member(request))


@login_required
def message_edit(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    if message.author_id != member.pk or message.deleted_at is not None:
        raise PermissionDenied(_("Only the author may edit a message."))
    form = EditForm(request.POST or None, initial={"body": message.body})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.message_edit(
                    message=message, editor=member, body=form.cleaned_data["body"]
                )
            except (ValidationError, PermissionDenied) as error:
                status = show_service_error(form, error)
            else:
                return redirect(thread_url(message.thread_id, message.pk))
        else:
            status = 400
    return render(
        request, "forums/message_edit.html", {"message": message, "form": form}, status=status
    )


def _act(
    request: HttpRequest, message: Message, action: Any, success: str | None = None
) -> HttpResponseRedirect:
    """Run a one-button action; its refusal becomes a flash message on the thread page."""
    try:
        action()
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, services.error_detail(error))
    else:
        if success:
            messages.success(request, success)
    return redirect(thread_url(message.thread_id, message.pk))


@login_required
@require_POST
def message_delete(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    return _act(
        request,
        message,
        lambda: services.message_delete(message=message, actor=member),
        _("The message was deleted."),
    )


@login_required
@require_POST
def message_react(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    form = ReactionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Unknown reaction."))
        return redirect(thread_url(message.thread_id, message.pk))
    emoji = form.cleaned_data["emoji"]
    return _act(
        request,
        message,
        lambda: services.reaction_toggle(message=message, member=member, emoji=emoji),
    )


def _reason_page(
    request: HttpRequest,
    message: Message,
    *,
    form: Form,
    template: str,
    action: Any,
    success: str,
) -> HttpResponse:
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                action(form.cleaned_data)
            except (ValidationError, PermissionDenied) as error:
                status = show_service_error(form, error)
            else:
                messages.success(request, success)
                return redirect(thread_url(message.thread_id, message.pk))
        else:
            status = 400
    return render(request, template, {"message": message, "form": form}, status=status)


@login_required
def message_report(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    return _reason_page(
        request,
        message,
        form=ReasonForm(request.POST or None),
        template="forums/message_report.html",
        action=lambda data: moderation.report_create(
            message=message, reporter=member, reason=data["reason"]
        ),
        success=_("Thank you: the moderators of this room will look at your report."),
    )


@login_required
def message_hide(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    if not policy.can_moderate_room(member, message.room):
        raise PermissionDenied(_("Only the moderators of this room may do this."))
    return _reason_page(
        request,
        message,
        form=ReasonForm(request.POST or None),
        template="forums/message_hide.html",
        action=lambda data: moderation.message_hide(
            message=message, actor=member, reason=data["reason"]
        ),
        success=_("The message is hidden."),
    )


@login_required
@require_POST
def message_unhide(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    return _act(
        request,
        message,
        lambda: moderation.message_unhide(message=message, actor=member),
        _("The message is shown again."),
    )


@login_required
def message_mute_author(request: HttpRequest, message_id: int) -> HttpResponse:
    member = _member(request)
    message = _message(request, message_id)
    if not policy.can_moderate_room(member, message.room):
        raise PermissionDenied(_("Only the moderators of this room may do this."))
    return _reason_page(
        request,
        message,
        form=MuteForm(request.POST or None),
        template="forums/message_mute.html",
        action=lambda data: moderation.member_mute(
            room=message.room,
            member=message.author,
            actor=member,
            minutes=data["minutes"],
            reason=data["reason"],
        ),
        success=_("%(name)s is muted in this room.") % {"name": message.author.name},
    )


# --- Moderation queue -------------------------------------------------------------------------


@login_required
def room_moderation(request: HttpRequest, slug: str) -> HttpResponse:
    member = _member(request)
    room = selectors.room_for_member(slug=slug, member=member)
    if not policy.can_moderate_room(member, room):
        raise PermissionDenied(_("Only the moderators of this room may do this."))
    form = RoomSettingsForm(
        request.POST or None,
        initial={"state": room.state, "slow_mode_seconds": room.slow_mode_seconds},
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                moderation.room_settings_set(
                    room=room,
                    actor=member,
                    state=form.cleaned_data["state"],
                    slow_mode_seconds=form.cleaned_data["slow_mode_seconds"],
                )
            except (ValidationError, PermissionDenied) as error:
                status = show_service_error(form, error)
            else:
                messages.success(request, _("The room settings are saved."))
                return redirect("room_moderation", slug=room.slug)
        else:
            status = 400
    context = {
        "room": room,
        "form": form,
        "reports": moderation.open_reports(room=room),
        "mutes": list(moderation.mutes_in_force(room=room)),
    }
    return render(request, "forums/room_moderation.html", context, status=status)


@login_required
@require_POST
def report_resolve(request: HttpRequest, report_id: int) -> HttpResponse:
    member = _member(request)
    report = get_object_or_404(Report.objects.select_related("message__room"), pk=report_id)
    room = report.message.room
    form = ResolveForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Unknown outcome."))
    else:
        try:
            moderation.report_resolve(
                report=report, actor=member, outcome=form.cleaned_data["outcome"]
            )
        except (ValidationError, PermissionDenied) as error:
            messages.error(request, services.error_detail(error))
        else:
            messages.success(request, _("The report is resolved."))
    return redirect("room_moderation", slug=room.slug)


@login_required
@require_POST
def mute_lift(request: HttpRequest, mute_id: int) -> HttpResponse:
    mute = get_object_or_404(RoomMute.objects.select_related("room", "member"), pk=mute_id)
    try:
        moderation.mute_lift(mute=mute, actor=_member(request))
    except PermissionDenied as error:
        messages.error(request, services.error_detail(error))
    else:
        messages.success(request, _("%(name)s may post again.") % {"name": mute.member.name})
    return redirect("room_moderation", slug=mute.room.slug)


# --- Search -----------------------------------------------------------------------------------


@login_required
@require_GET
def forum_search(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    form = SearchForm(request.GET or None)
    results = None
    if form.is_valid() and form.cleaned_data["q"].strip():
        data = form.cleaned_data
        author = None
        if data["author"]:
            author = User.objects.filter(handle__iexact=data["author"]).first()
            if author is None:
                form.add_error(
                    "author",
                    _("No member with the handle @%(handle)s.") % {"handle": data["author"]},
                )
        if not form.errors:
            results = search(
                member=member,
                filters=Filters(
                    q=data["q"],
                    room=data["room"],
                    author=author,
                    since=data["since"],
                    until=data["until"],
                ),
            )
    context = {"form": form, "results": results}
    return render(request, "forums/search.html", context)
