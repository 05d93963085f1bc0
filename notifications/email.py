"""Email for notifications: one immediate message per inbox row, digests, one-click unsubscribe.

Exactly once: a row is sent only while its `email_state` is pending, under a row lock taken with
`select_for_update(skip_locked=True)`, and marked in the same transaction as the send. A second
worker (a retried task, the sweep) skips the locked row or finds it no longer pending. The
`Message-ID` is derived from the row id, so a mail server can drop the copy of a message whose
"sent" mark was lost with a crashed worker.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import zoneinfo
from collections.abc import Iterable

from django.conf import settings
from django.core import mail, signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from community.models import User

from .models import (
    EmailMode,
    EmailState,
    Kind,
    Notification,
    NotificationPreference,
    NotificationSettings,
)

logger = logging.getLogger("notifications.email")

MAX_ATTEMPTS = 5
DIGEST_HOUR = 8  # the member's local morning
UNSUBSCRIBE_SALT = "notifications.unsubscribe"
# Kinds whose email still goes out when the row was read in the app first: a registration, a
# change or a cancellation of an event is a record members keep, and its email carries the
# calendar invitation that the app cannot deliver.
NOT_SUPPRESSIBLE = frozenset({Kind.EVENT_CANCELLED, Kind.EVENT_CHANGED, Kind.REGISTRATION})


def base_url() -> str:
    """The public address (settings.MINGA_SITE_URL): emails are made outside any request."""
    return str(settings.MINGA_SITE_URL).rstrip("/")


def absolute(path: str) -> str:
    return path if path.startswith(("http://", "https://")) else base_url() + path


def _mail_domain() -> str:
    sender = settings.DEFAULT_FROM_EMAIL
    return sender.rsplit("@", 1)[-1].strip("> ") or "minga.localhost"


# --- One-click unsubscribe (RFC 8058) -----------------------------------------------------------


def unsubscribe_token(*, member_id: int, kind: str) -> str:
    return signing.dumps({"m": member_id, "k": kind}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_read(token: str) -> tuple[int, str]:
    """(member_id, kind) from a token; raises signing.BadSignature when forged or damaged."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    if not isinstance(data, dict) or "m" not in data or "k" not in data:
        raise signing.BadSignature("incomplete token")
    return int(data["m"]), str(data["k"])


def unsubscribe_url(*, member_id: int, kind: str) -> str:
    token = unsubscribe_token(member_id=member_id, kind=kind)
    return absolute(reverse("notifications:unsubscribe", kwargs={"token": token}))


# --- Calendar attachments -----------------------------------------------------------------------

# Kinds whose email carries the event's .ics (an invitation is only useful in the email itself).
# `event_scheduled` goes to a working group's members, who have not registered: no invitation.
CALENDAR_KINDS = frozenset(
    {Kind.REGISTRATION, Kind.EVENT_CHANGED, Kind.EVENT_CANCELLED, Kind.EVENT_REMINDER}
)
ICS_FILENAME = "invite.ics"


def calendar_attachment(row: Notification, member: User) -> tuple[str, bytes] | None:
    """(METHOD, .ics bytes) for the row's email, or None when it carries no invitation.

    Built from the event as it is at send time, so a late email never moves a calendar back:
    a cancelled event gets METHOD:CANCEL (registered and waitlisted members); otherwise a
    registered member gets METHOD:REQUEST with the current SEQUENCE. A waitlisted or
    withdrawn member gets no REQUEST: they hold no place to put in a calendar. A cancelled
    occurrence of a series is a REQUEST of the whole series (its RECURRENCE-ID VEVENT says
    STATUS:CANCELLED): a CANCEL would remove every occurrence.
    """
    if row.kind not in CALENDAR_KINDS or row.target_type != "events.event":
        return None
    from events import ical
    from events.models import Event, Registration

    event = (
        Event.objects.select_related("working_group")
        .prefetch_related("overrides", "organizers")
        .filter(pk=row.target_id)
        .first()
    )
    if event is None:
        return None
    status = (
        Registration.objects.filter(event=event, member=member)
        .values_list("status", flat=True)
        .first()
    )
    if event.status == Event.Status.CANCELLED:
        if status not in {Registration.Status.REGISTERED, Registration.Status.WAITLISTED}:
            return None
        method = "CANCEL"
    elif status == Registration.Status.REGISTERED:
        method = "REQUEST"
    else:
        return None
    return method, ical.invitation_for(event, member=member, method=method)


# --- Building messages --------------------------------------------------------------------------


def _headers(*, message_id: str, unsubscribe: str) -> dict[str, str]:
    return {
        "Message-ID": message_id,
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-generated",
    }


def build_message(row: Notification, member: User) -> EmailMultiAlternatives:
    """The email of one inbox row, in the member's language (times were rendered in their zone).

    An event kind's email carries the event's invitation as `invite.ics`
    (`calendar_attachment`): the only email a registrant gets for the happening.
    """
    calendar = calendar_attachment(row, member)
    with translation.override(member.language):
        unsubscribe = unsubscribe_url(member_id=member.pk, kind=row.kind)
        context = {
            "member": member,
            "row": row,
            "url": absolute(row.url),
            "kind_label": Kind(row.kind).label,
            "unsubscribe_url": unsubscribe,
            "preferences_url": absolute(reverse("notifications:preferences")),
            "calendar_method": calendar[0] if calendar else "",
        }
        # One line: a title may hold CR/LF (event titles keep them), which no header may.
        subject = f"[Minga] {' '.join(row.title.split())}"
        text = render_to_string("notifications/email/notification.txt", context)
        html = render_to_string("notifications/email/notification.html", context)
    message = EmailMultiAlternatives(
        subject,
        text,
        settings.DEFAULT_FROM_EMAIL,
        [member.email],
        headers=_headers(
            message_id=f"<notification.{row.pk}@{_mail_domain()}>", unsubscribe=unsubscribe
        ),
    )
    message.attach_alternative(html, "text/html")
    if calendar is not None:
        method, body = calendar
        message.attach(ICS_FILENAME, body, f"text/calendar; method={method}; charset=UTF-8")
    return message


# --- Sending ------------------------------------------------------------------------------------


class SendError(Exception):
    def __init__(self, permanent: bool, detail: str) -> None:
        super().__init__(detail)
        self.permanent = permanent
        self.detail = detail


def classify(exc: Exception) -> SendError:
    """4xx and connection trouble are transient; 5xx (refused recipient, rejected data) is not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return SendError(permanent, f"recipient refused: {codes}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return SendError(exc.smtp_code >= 500, f"{exc.smtp_code} {exc.smtp_error!r}"[:300])
    return SendError(False, f"{type(exc).__name__}: {exc}"[:300])


def _send(messages: list[EmailMultiAlternatives]) -> None:
    connection = mail.mailers.default
    try:
        connection.send_messages(messages)
    except Exception as exc:
        raise classify(exc) from exc


def backoff_seconds(attempts: int) -> int:
    """60 s, 2 min, 4 min, 8 min, ... capped at one hour."""
    return min(60 * 2 ** max(attempts - 1, 0), 3600)


def _not_to_send(row: Notification, now: dt.datetime) -> str | None:
    """Why a locked pending row is not sent now (its state updated), or None to send it."""
    outcome: str | None = None
    if row.in_app and row.read_at is not None and row.kind not in NOT_SUPPRESSIBLE:
        row.email_state, outcome = EmailState.SUPPRESSED, "suppressed"
    elif row.email_due_at is not None and row.email_due_at > now:
        return "held"
    elif not row.recipient.is_active:
        row.email_state, outcome = EmailState.SKIPPED, "skipped"
    else:
        # The member may have changed their mind since the row was written (a one-click
        # unsubscribe, a switch to a digest): the current choice wins.
        current = _current_email_modes(row.recipient_id, [row.kind])[row.kind]
        if current == EmailMode.OFF:
            row.email_mode, row.email_state, outcome = current, EmailState.SKIPPED, "skipped"
        elif current != EmailMode.IMMEDIATE:
            row.email_mode, outcome = current, "digest"
    if outcome is not None:
        row.save(update_fields=["email_mode", "email_state"])
    return outcome


def deliver(notification_id: int, *, now: dt.datetime | None = None) -> str:
    """Send the row's email if it is still pending and due; returns what happened.

    Outcomes: "sent", "suppressed" (read in the app first), "held" (quiet hours or backoff),
    "retry" (transient error, attempts recorded), "failed" (5xx or attempts used up),
    "digest" (the member switched the kind to a digest since), "skipped" (not pending, locked
    by another worker, not an immediate email, or the member turned the kind's email off).
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = (
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("recipient")
            .filter(
                pk=notification_id,
                email_state=EmailState.PENDING,
                email_mode=EmailMode.IMMEDIATE,
            )
            .first()
        )
        if row is None:
            return "skipped"
        reason = _not_to_send(row, now)
        if reason is not None:
            return reason
        row.email_attempts += 1
        try:
            _send([build_message(row, row.recipient)])
        except SendError as err:
            row.email_error = err.detail
            if err.permanent or row.email_attempts >= MAX_ATTEMPTS:
                row.email_state = EmailState.FAILED
                outcome = "failed"
            else:
                row.email_due_at = now + dt.timedelta(seconds=backoff_seconds(row.email_attempts))
                outcome = "retry"
            row.save(update_fields=["email_state", "email_attempts", "email_error", "email_due_at"])
            logger.warning(
                "notification email %s",
                outcome,
                extra={"notification": row.pk, "error": err.detail},
            )
            return outcome
        row.email_state = EmailState.SENT
        row.emailed_at = now
        row.email_error = ""
        row.save(update_fields=["email_state", "emailed_at", "email_attempts", "email_error"])
        return "sent"


def _current_email_modes(member_id: int, kinds: Iterable[str]) -> dict[str, str]:
    """{kind: the member's email choice now} in one query."""
    from . import selectors

    result = {}
    for kind in set(kinds):
        result[kind] = selectors.default_preference(kind)["email"]
    rows = NotificationPreference.objects.filter(member_id=member_id, kind__in=list(result))
    for kind, email in rows.values_list("kind", "email"):
        result[kind] = email
    return result


SWEEP_GRACE = dt.timedelta(minutes=2)
SWEEP_LIMIT = 500


def sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Send immediate emails whose task was lost, held ones now due, and retries now due.

    A row is picked up SWEEP_GRACE after it became due, so the normal task goes first; if both
    run, the row lock and the pending state make one of them a no-op.
    """
    now = now or timezone.now()
    ids = list(
        Notification.objects.filter(
            email_state=EmailState.PENDING,
            email_mode=EmailMode.IMMEDIATE,
            email_due_at__lte=now - SWEEP_GRACE,
        )
        .order_by("email_due_at")
        .values_list("pk", flat=True)[:SWEEP_LIMIT]
    )
    outcomes: dict[str, int] = {}
    for pk in ids:
        outcome = deliver(pk, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


# --- Digests ------------------------------------------------------------------------------------


def digest_slot(*, now: dt.datetime, tz_name: str, mode: str, weekday: int) -> dt.datetime:
    """The latest local DIGEST_HOUR (on `weekday` for weekly digests) at or before `now`."""
    try:
        zone = zoneinfo.ZoneInfo(tz_name)
    except zoneinfo.ZoneInfoNotFoundError:
        zone = zoneinfo.ZoneInfo("UTC")
    local = now.astimezone(zone)
    slot = dt.datetime.combine(local.date(), dt.time(DIGEST_HOUR), tzinfo=zone)
    if slot > local:
        slot -= dt.timedelta(days=1)
    if mode == EmailMode.WEEKLY:
        slot -= dt.timedelta(days=(slot.weekday() - weekday) % 7)
    return slot.astimezone(dt.UTC)


def build_digest(
    *, member: User, mode: str, rows: list[Notification], slot: dt.datetime
) -> EmailMultiAlternatives:
    grouped: dict[str, list[Notification]] = {}
    for row in sorted(rows, key=lambda r: (r.group_label, r.created)):
        grouped.setdefault(row.group_label, []).append(row)
    with translation.override(member.language):
        # The digest unsubscribes from the kinds it carries: one link per kind would be noise,
        # so the List-Unsubscribe link turns off the most frequent kind and the footer links
        # to the preferences page for the rest.
        main_kind = max({r.kind for r in rows}, key=lambda k: sum(r.kind == k for r in rows))
        unsubscribe = unsubscribe_url(member_id=member.pk, kind=main_kind)
        groups = [
            {
                "label": label or _("Minga"),
                "items": [{"row": r, "url": absolute(r.url)} for r in items],
            }
            for label, items in grouped.items()
        ]
        context = {
            "member": member,
            "groups": groups,
            "count": len(rows),
            "weekly": mode == EmailMode.WEEKLY,
            "unsubscribe_url": unsubscribe,
            "unsubscribe_kind": Kind(main_kind).label,
            "preferences_url": absolute(reverse("notifications:preferences")),
            "inbox_url": absolute(reverse("notifications:inbox")),
        }
        subject = (
            ngettext(
                "[Minga] Your weekly digest: %(count)s notification",
                "[Minga] Your weekly digest: %(count)s notifications",
                len(rows),
            )
            if mode == EmailMode.WEEKLY
            else ngettext(
                "[Minga] Your daily digest: %(count)s notification",
                "[Minga] Your daily digest: %(count)s notifications",
                len(rows),
            )
        ) % {"count": len(rows)}
        text = render_to_string("notifications/email/digest.txt", context)
        html = render_to_string("notifications/email/digest.html", context)
    message = EmailMultiAlternatives(
        subject,
        text,
        settings.DEFAULT_FROM_EMAIL,
        [member.email],
        headers=_headers(
            message_id=f"<digest.{mode}.{member.pk}.{slot:%Y%m%d%H}@{_mail_domain()}>",
            unsubscribe=unsubscribe,
        ),
    )
    message.attach_alternative(html, "text/html")
    return message


def digest_send(*, member: User, mode: str, slot: dt.datetime, now: dt.datetime) -> str:
    """Send one member's digest of pending rows created before `slot`; returns the outcome.

    Rows read in the app are suppressed and left out. Locks the rows (skip_locked) so two
    digest runs never send the same rows twice.
    """
    with transaction.atomic():
        rows = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(
                recipient=member,
                email_mode=mode,
                email_state=EmailState.PENDING,
                created__lt=slot,
            )
            .order_by("created", "pk")
        )
        if not rows:
            return "empty"
        modes = _current_email_modes(member.pk, {r.kind for r in rows})
        off = [r.pk for r in rows if modes[r.kind] == EmailMode.OFF]
        if off:  # turned off since (a one-click unsubscribe): not in this digest, nor later
            Notification.objects.filter(pk__in=off).update(email_state=EmailState.SKIPPED)
        rows = [r for r in rows if modes[r.kind] != EmailMode.OFF]
        read = [r.pk for r in rows if r.in_app and r.read_at is not None]
        unread = [r for r in rows if not (r.in_app and r.read_at is not None)]
        if not rows:
            return "skipped"
        if read:
            Notification.objects.filter(pk__in=read).update(email_state=EmailState.SUPPRESSED)
        if not unread:
            return "suppressed"
        ids = [r.pk for r in unread]
        try:
            _send([build_digest(member=member, mode=mode, rows=unread, slot=slot)])
        except SendError as err:
            if err.permanent:
                Notification.objects.filter(pk__in=ids).update(
                    email_state=EmailState.FAILED, email_error=err.detail
                )
                return "failed"
            # Transient: the rows stay pending and the next run tries again.
            Notification.objects.filter(pk__in=ids).update(email_error=err.detail)
            return "retry"
        Notification.objects.filter(pk__in=ids).update(
            email_state=EmailState.SENT, emailed_at=now, email_error=""
        )
        return "sent"


def digests_due(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every digest whose local morning slot has come (run hourly by beat)."""
    now = now or timezone.now()
    member_modes = set(
        Notification.objects.filter(
            email_state=EmailState.PENDING,
            email_mode__in=[EmailMode.DAILY, EmailMode.WEEKLY],
            created__lt=now,
        )
        .values_list("recipient_id", "email_mode")
        .distinct()
    )
    if not member_modes:
        return {}
    members = {
        m.pk: m
        for m in User.objects.filter(pk__in={mid for mid, _m in member_modes}).select_related(
            "notification_settings"
        )
    }
    outcomes: dict[str, int] = {}
    for member_id, mode in sorted(member_modes):
        member = members.get(member_id)
        if member is None or not member.is_active:
            continue
        prefs: NotificationSettings | None = getattr(member, "notification_settings", None)
        weekday = prefs.digest_weekday if prefs is not None else 0
        slot = digest_slot(now=now, tz_name=member.timezone, mode=mode, weekday=weekday)
        outcome = digest_send(member=member, mode=mode, slot=slot, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
