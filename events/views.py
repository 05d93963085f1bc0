"""Pages of the calendar: month, week and agenda views, the event page and the organizer pages.

Views parse, call one selector or service, and render. Every time is read and shown in the
viewer's zone (activated per request by MemberPreferencesMiddleware); the event's own zone is
shown next to it where it differs (events/templatetags/event_times.py). Organizers type times in
the event's zone; the forms hand them to the services as naive local times.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import Form
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.dates import MONTHS, WEEKDAYS
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST, require_safe

from community import policy
from community.models import User
from forums import attachments

from . import recurrence, selectors, services
from .forms import (
    AgendaItemDocumentsForm,
    AgendaItemForm,
    AttendanceForm,
    CalendarFilterForm,
    CancelForm,
    DocumentForm,
    DuplicateForm,
    EventForm,
    OccurrenceForm,
    RescheduleForm,
    event_initial,
)
from .models import AgendaItem, Event, EventDocument, Registration
from .recurrence import Occurrence

LIST_DAYS = 56  # the agenda list shows eight weeks at a time
UPCOMING_OCCURRENCES = 10  # dates of a series listed on its page
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
MIN_YEAR, MAX_YEAR = 1970, 2200


def _member(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def add_service_errors(form: Form, error: ValidationError) -> None:
    """A service's ValidationError under the form field it names, else above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, errors in error.message_dict.items():
        form.add_error(name if name in form.fields else None, errors)


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


# (the success message, the URL to go to) of an organizer action that went through
ActionDone = tuple[str, str]


def _form_action(
    request: HttpRequest,
    form: Form,
    act: Callable[[dict[str, Any]], ActionDone],
    *,
    denied: bool = False,
    denied_field: str | None = None,
) -> HttpResponse | None:
    """The shape every organizer form shares: bind, validate, call the service, redirect.

    On a valid POST `act(cleaned_data)` calls the service and returns (message, URL): the
    message is flashed and the redirect returned. The service's ValidationError lands on the
    form (add_service_errors); with `denied`, so does its PermissionDenied (under
    `denied_field`, else above the form), otherwise that answers 403. None: render the form
    (again), with its errors.
    """
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        message, url = act(form.cleaned_data)
    except ValidationError as error:
        add_service_errors(form, error)
    except PermissionDenied as error:
        if not denied:
            raise
        form.add_error(denied_field, str(error))
    else:
        messages.success(request, message)
        return HttpResponseRedirect(url)
    return None


def _detail_url(event: Event) -> str:
    return reverse("event_detail", kwargs={"event_id": event.pk})


# --- Calendar views ---------------------------------------------------------------------------


@dataclass
class Day:
    day: date
    in_month: bool = True
    is_today: bool = False
    occurrences: list[Occurrence] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """The day as `{{ day|date:"l j F" }}` writes it ("Thursday 26 November", in the active
        language), without the filter's format machinery: the month grid names each of its
        42 days so, and those filters were a fifth of the month page's CPU."""
        return f"{WEEKDAYS[self.day.weekday()]} {self.day.day} {MONTHS[self.day.month]}"


@dataclass
class CalendarFilters:
    form: CalendarFilterForm
    working_group: str | None
    kind: str | None
    query: str  # "working_group=wg1&kind=workshop", for links that keep the filters


def _filters(request: HttpRequest) -> CalendarFilters:
    data = {k: request.GET[k] for k in ("working_group", "kind") if request.GET.get(k)}
    form = CalendarFilterForm(data)
    chosen = form.filters()
    query = urlencode({k: v for k, v in chosen.items() if v})
    return CalendarFilters(form, chosen["working_group"], chosen["kind"], query)


def _start_of(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _by_day(
    occurrences: list[Occurrence], first: date, last: date, zone: tzinfo
) -> dict[date, list[Occurrence]]:
    """Each occurrence under every local day in [first, last] it overlaps."""
    days: dict[date, list[Occurrence]] = defaultdict(list)
    for occ in occurrences:
        start_day = occ.starts_at.astimezone(zone).date()
        # An event ending at midnight does not spill into the next day.
        end_day = (occ.ends_at - timedelta(microseconds=1)).astimezone(zone).date()
        day = max(start_day, first)
        while day <= min(end_day, last):
            days[day].append(occ)
            day += timedelta(days=1)
    return days


def _calendar_context(
    request: HttpRequest, filters: CalendarFilters, view: str, **extra: Any
) -> dict[str, Any]:
    member = _member(request)
    return {
        "filters": filters,
        "view": view,
        "can_create": policy.is_organizer(member),
        **extra,
    }


def _parse_month(value: str | None, today: date) -> tuple[date, str | None]:
    if not value:
        return today.replace(day=1), None
    match = MONTH_RE.match(value)
    if match:
        year, month = int(match[1]), int(match[2])
        if MIN_YEAR <= year <= MAX_YEAR and 1 <= month <= 12:
            return date(year, month, 1), None
    return today.replace(day=1), _(
        "“%(value)s” is not a month; use the form YYYY-MM, e.g. 2026-03. Showing this month."
    ) % {"value": value}


def _add_months(first: date, count: int) -> date:
    index = first.year * 12 + first.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


@login_required
def calendar_month(request: HttpRequest) -> HttpResponse:
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    first, error = _parse_month(request.GET.get("month"), today)
    next_first = _add_months(first, 1)
    last = next_first - timedelta(days=1)
    grid_first = first - timedelta(days=first.weekday())
    grid_last = last + timedelta(days=6 - last.weekday())
    filters = _filters(request)
    occurrences = selectors.occurrences_visible_to(
        member=_member(request),
        start=_start_of(grid_first, zone),
        end=_start_of(grid_last + timedelta(days=1), zone),
        working_group=filters.working_group,
        kind=filters.kind,
    )
    by_day = _by_day(occurrences, grid_first, grid_last, zone)
    weeks: list[list[Day]] = []
    day = grid_first
    while day <= grid_last:
        week = []
        for _i in range(7):
            week.append(Day(day, day.month == first.month, day == today, by_day.get(day, [])))
            day += timedelta(days=1)
        weeks.append(week)
    month_days = [d for week in weeks for d in week if d.in_month and d.occurrences]
    context = _calendar_context(
        request,
        filters,
        "month",
        month=first,
        weeks=weeks,
        weekdays=[w.day for w in weeks[0]],
        month_days=month_days,
        prev_param=_add_months(first, -1).strftime("%Y-%m"),
        next_param=next_first.strftime("%Y-%m"),
        this_param=today.strftime("%Y-%m"),
        current_param=first.strftime("%Y-%m"),
        is_current=first == today.replace(day=1),
        param_error=error,
    )
    return render(request, "events/calendar_month.html", context)


def _parse_week(value: str | None, today: date) -> tuple[date, str | None]:
    monday = today - timedelta(days=today.weekday())
    if not value:
        return monday, None
    match = WEEK_RE.match(value)
    if match and MIN_YEAR <= int(match[1]) <= MAX_YEAR:
        try:
            return date.fromisocalendar(int(match[1]), int(match[2]), 1), None
        except ValueError:
            pass
    return monday, _(
        "“%(value)s” is not a week; use the form YYYY-Www, e.g. 2026-W12. Showing this week."
    ) % {"value": value}


def _week_param(monday: date) -> str:
    year, week, _day = monday.isocalendar()
    return f"{year}-W{week:02d}"


@login_required
def calendar_week(request: HttpRequest) -> HttpResponse:
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    monday, error = _parse_week(request.GET.get("week"), today)
    sunday = monday + timedelta(days=6)
    filters = _filters(request)
    occurrences = selectors.occurrences_visible_to(
        member=_member(request),
        start=_start_of(monday, zone),
        end=_start_of(sunday + timedelta(days=1), zone),
        working_group=filters.working_group,
        kind=filters.kind,
    )
    by_day = _by_day(occurrences, monday, sunday, zone)
    days = [
        Day(monday + timedelta(days=i), True, monday + timedelta(days=i) == today) for i in range(7)
    ]
    for d in days:
        d.occurrences = by_day.get(d.day, [])
    context = _calendar_context(
        request,
        filters,
        "week",
        days=days,
        monday=monday,
        sunday=sunday,
        week_label=_week_param(monday),
        prev_param=_week_param(monday - timedelta(days=7)),
        next_param=_week_param(monday + timedelta(days=7)),
        this_param=_week_param(today - timedelta(days=today.weekday())),
        current_param=_week_param(monday),
        is_current=monday <= today <= sunday,
        param_error=error,
    )
    return render(request, "events/calendar_week.html", context)


def _parse_day(value: str | None, today: date) -> tuple[date, str | None]:
    if not value:
        return today, None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is not None and MIN_YEAR <= parsed.year <= MAX_YEAR:
        return parsed, None
    return today, _(
        "“%(value)s” is not a date; use the form YYYY-MM-DD, e.g. 2026-03-18. Showing today."
    ) % {"value": value}


@login_required
def calendar_list(request: HttpRequest) -> HttpResponse:
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    first, error = _parse_day(request.GET.get("start"), today)
    last = first + timedelta(days=LIST_DAYS - 1)
    filters = _filters(request)
    # From today: occurrences already over are not "upcoming".
    start = timezone.now() if first == today else _start_of(first, zone)
    occurrences = selectors.occurrences_visible_to(
        member=_member(request),
        start=start,
        end=_start_of(last + timedelta(days=1), zone),
        working_group=filters.working_group,
        kind=filters.kind,
    )
    grouped: dict[date, list[Occurrence]] = defaultdict(list)
    for occ in occurrences:
        grouped[max(occ.starts_at.astimezone(zone).date(), first)].append(occ)
    days = [Day(d, True, d == today, occs) for d, occs in sorted(grouped.items())]
    context = _calendar_context(
        request,
        filters,
        "list",
        days=days,
        first=first,
        last=last,
        prev_param=(first - timedelta(days=LIST_DAYS)).isoformat(),
        next_param=(last + timedelta(days=1)).isoformat(),
        this_param=today.isoformat(),
        current_param=first.isoformat(),
        is_current=first == today,
        param_error=error,
    )
    return render(request, "events/calendar_list.html", context)


# --- The event page and registration ----------------------------------------------------------


def _upcoming_occurrences(event: Event) -> list[Occurrence]:
    if not event.is_recurring:
        return []
    now = timezone.now()
    found = recurrence.expand(
        event, now, now + timedelta(days=3 * 366), overrides=event.overrides.all()
    )
    return found[:UPCOMING_OCCURRENCES]


def _shown_occurrence(
    event: Event, upcoming: list[Occurrence], param: str | None
) -> tuple[Occurrence | None, str | None]:
    """The date of a series the page is about: the one `?occurrence=` names, else the next one.

    Returns (occurrence or None for a one-off event, an error to show for a bad parameter).
    """
    if not event.is_recurring:
        return None, None
    if param:
        original = recurrence.parse_occurrence_key(param)
        found = recurrence.occurrence_of(event, original) if original else None
        if found is not None:
            return found, None
        error = _("“%(value)s” is not a date of this event. Showing the next date.") % {
            "value": param
        }
    else:
        error = None
    following = next((o for o in upcoming if not o.cancelled), None)
    return following or (upcoming[0] if upcoming else None), error


@login_required
def event_detail(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    upcoming = _upcoming_occurrences(event)
    shown, occurrence_error = _shown_occurrence(event, upcoming, request.GET.get("occurrence"))
    context = {
        "event": event,
        "state": selectors.registration_state(event=event, member=member),
        "agenda": selectors.agenda_for(event=event),
        "documents": list(selectors.documents_for(event=event)),
        "occurrences": upcoming,
        "shown": shown,
        "occurrence_error": occurrence_error,
        # Every organizer action on this event (co-organizers included); scheduling a copy
        # is scheduling a new event of the group, which takes a role (policy).
        "can_organize": selectors.can_organize(member, event),
        "can_duplicate": policy.can_organize_events(member, event.working_group_id),
        "organizers": list(event.organizers.all()),
        "topics": list(event.topics.all()),
    }
    return render(request, "events/event_detail.html", context)


@login_required
@require_POST
def event_register(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    try:
        registration = services.registration_create(event=event, member=member)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    except PermissionDenied as error:
        messages.error(request, str(error) or _("You may not register for this event."))
    else:
        if registration.status == Registration.Status.REGISTERED:
            messages.success(request, _("You are registered."))
        else:
            messages.success(
                request,
                _("The event is full: you are on the waitlist, position %(position)s.")
                % {"position": registration.position},
            )
    return redirect("event_detail", event_id=event.pk)


@login_required
@require_POST
def event_withdraw(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    try:
        services.registration_withdraw(event=event, member=member)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, _("You withdrew your registration."))
    return redirect("event_detail", event_id=event.pk)


# --- Organizer pages --------------------------------------------------------------------------


def _organizer_event(request: HttpRequest, event_id: int) -> Event:
    return selectors.event_for_organizer(event_id=event_id, member=_member(request))


@login_required
def event_create(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    if not policy.is_organizer(member):
        raise PermissionDenied(
            _("Only working-group chairs, vice-chairs and the secretariat schedule events.")
        )
    form = EventForm(request.POST or None, member=member)

    def create(_data: dict[str, Any]) -> ActionDone:
        event = services.event_create(actor=member, **form.service_values())
        return _("The event is scheduled."), _detail_url(event)

    done = _form_action(request, form, create, denied=True, denied_field="working_group")
    return done or render(request, "events/event_form.html", {"form": form, "event": None})


TIME_FIELDS = ("starts_at", "ends_at", "timezone")
WINDOW_FIELDS = ("registration_opens_at", "registration_closes_at")


@login_required
def event_edit(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    form = EventForm(request.POST or None, member=member, event=event, initial=event_initial(event))

    def update(_data: dict[str, Any]) -> ActionDone:
        values = form.service_values()
        changed = set(form.changed_data)
        # The three time fields mean something only together, and so do the window's two
        # local times and the zone they are read in.
        if changed & set(TIME_FIELDS):
            changed |= set(TIME_FIELDS)
        if changed & {*WINDOW_FIELDS, "timezone"}:
            changed |= set(WINDOW_FIELDS)
        changes = {name: values[name] for name in sorted(changed)}
        services.event_update(event=event, actor=member, changes=changes)
        return _("The event is saved."), _detail_url(event)

    done = _form_action(request, form, update, denied=True, denied_field="working_group")
    return done or render(request, "events/event_form.html", {"form": form, "event": event})


@login_required
def event_reschedule(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    initial = {
        "starts_at": recurrence.local_start(event),
        "ends_at": recurrence.to_local(event.ends_at, event.timezone),
        "timezone": event.timezone,
    }
    form = RescheduleForm(request.POST or None, initial=initial)

    def reschedule(data: dict[str, Any]) -> ActionDone:
        services.event_reschedule(event=event, actor=member, **data)
        return _("The event is rescheduled; registrants are told."), _detail_url(event)

    done = _form_action(request, form, reschedule)
    context = {"form": form, "event": event, "action": "reschedule"}
    return done or render(request, "events/event_action.html", context)


@login_required
def event_cancel(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    form = CancelForm(request.POST or None)

    def cancel(data: dict[str, Any]) -> ActionDone:
        services.event_cancel(event=event, actor=member, message=data["message"])
        return _("The event is cancelled; registrants are told."), _detail_url(event)

    done = _form_action(request, form, cancel)
    context = {"form": form, "event": event, "action": "cancel"}
    return done or render(request, "events/event_action.html", context)


@login_required
def event_duplicate(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    form = DuplicateForm(
        request.POST or None,
        initial={"starts_at": recurrence.local_start(event) + timedelta(days=7)},
    )

    def duplicate(data: dict[str, Any]) -> ActionDone:
        copy = services.event_duplicate(event=event, actor=member, starts_at=data["starts_at"])
        return _("The copy is scheduled; check it and edit what differs."), _detail_url(copy)

    done = _form_action(request, form, duplicate, denied=True)
    context = {"form": form, "event": event, "action": "duplicate"}
    return done or render(request, "events/event_action.html", context)


@dataclass
class Delegation:
    constituency: str
    organization: str
    registrations: list[Registration]


def _delegations(registrations: list[Registration]) -> list[Delegation]:
    groups: dict[tuple[str, str], list[Registration]] = {}
    for reg in registrations:
        org = reg.member.organization
        key = (
            org.get_constituency_display() if org else _("Other"),
            org.name if org else _("Individual members"),
        )
        groups.setdefault(key, []).append(reg)
    return [Delegation(c, o, regs) for (c, o), regs in groups.items()]


@login_required
def event_registrations(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    if request.method == "POST":
        form = AttendanceForm(request.POST)
        if form.is_valid():
            attendee = User.objects.filter(pk=form.cleaned_data["member"]).first()
            try:
                if attendee is None:
                    raise ValidationError(_("This member is not registered."))
                services.attendance_mark(
                    event=event, actor=member, member=attendee, attended=form.attended_value()
                )
            except ValidationError as error:
                messages.error(request, _error_text(error))
            else:
                messages.success(
                    request, _("Attendance of %(name)s saved.") % {"name": attendee.name}
                )
        else:
            messages.error(request, _("Choose attended, absent or unknown."))
        return redirect("event_registrations", event_id=event.pk)
    registrations = list(selectors.registrations_for_organizer(event=event))
    registered = [r for r in registrations if r.status == Registration.Status.REGISTERED]
    waitlisted = sorted(
        (r for r in registrations if r.status == Registration.Status.WAITLISTED),
        key=lambda r: (r.position or 0, r.pk),
    )
    context = {
        "event": event,
        "delegations": _delegations(registered),
        "waitlisted": waitlisted,
        "registered_count": len(registered),
        "attended_count": sum(1 for r in registered if r.attended),
        "attendance_choices": AttendanceForm.ATTENDED,
    }
    return render(request, "events/event_registrations.html", context)


@login_required
def event_registrations_csv(request: HttpRequest, event_id: int) -> HttpResponse:
    event = _organizer_event(request, event_id)
    response = HttpResponse(
        selectors.registrations_csv(event=event), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="event-{event.pk}-registrations.csv"'
    return response


@login_required
def event_agenda(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    form = AgendaItemForm(
        request.POST or None,
        event=event,
        initial={
            "starts_at": recurrence.local_start(event),
            "ends_at": recurrence.to_local(event.ends_at, event.timezone),
        },
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.agenda_item_create(event=event, actor=member, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, _("Agenda item added."))
                return redirect("event_agenda", event_id=event.pk)
        status = 400
    documents = list(selectors.documents_for(event=event))
    context = {
        "event": event,
        "form": form,
        "agenda": selectors.agenda_for(event=event),
        "documents": documents,
    }
    return render(request, "events/event_agenda.html", context, status=status)


@login_required
@require_POST
def agenda_item_delete(request: HttpRequest, event_id: int, item_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    item = get_object_or_404(AgendaItem, pk=item_id, event=event)
    services.agenda_item_delete(item=item, actor=member)
    messages.success(request, _("Agenda item removed."))
    return HttpResponseRedirect(reverse("event_agenda", kwargs={"event_id": event.pk}))


@login_required
@require_POST
def agenda_item_documents(request: HttpRequest, event_id: int, item_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    item = get_object_or_404(AgendaItem, pk=item_id, event=event)
    form = AgendaItemDocumentsForm(request.POST, event=event)
    if form.is_valid():
        try:
            services.agenda_item_documents_set(
                item=item, actor=member, documents=form.cleaned_data["documents"]
            )
        except ValidationError as error:
            messages.error(request, _error_text(error))
        else:
            messages.success(
                request, _("Documents linked from “%(title)s” saved.") % {"title": item.title}
            )
    else:
        messages.error(request, _("Choose documents of this event."))
    return HttpResponseRedirect(reverse("event_agenda", kwargs={"event_id": event.pk}))


# --- Documents --------------------------------------------------------------------------------


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
@attachments.limit_uploads(1, refuse=_upload_refused_page)
@csrf_protect
@login_required
def event_documents(request: HttpRequest, event_id: int) -> HttpResponse:
    """The organizers' page of an event's documents: the list, add a file or a link, remove."""
    member = _member(request)
    event = _organizer_event(request, event_id)
    form = DocumentForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        limits: attachments.UploadLimits = request.upload_limits  # type: ignore[attr-defined]
        if limits.too_large:
            form.add_error(
                "file",
                _("The file is too large: at most %(size)s.")
                % {"size": filesizeformat(limits.max_bytes)},
            )
            status = 413
        elif form.is_valid():
            try:
                services.document_add(
                    event=event,
                    actor=member,
                    title=form.cleaned_data["title"],
                    uploaded_file=form.cleaned_data["file"],
                    url=form.cleaned_data["url"] or "",
                )
            except ValidationError as error:
                add_service_errors(form, error)
                status = 413 if "too_large" in _codes(error) else 400
            else:
                messages.success(request, _("Document added."))
                return redirect("event_documents", event_id=event.pk)
        else:
            status = 400
    context = {
        "event": event,
        "form": form,
        "documents": list(selectors.documents_for(event=event)),
        "max_size": filesizeformat(attachments.max_bytes()),
    }
    return render(request, "events/event_documents.html", context, status=status)


def _codes(error: ValidationError) -> set[str]:
    items = (
        [e for errors in error.error_dict.values() for e in errors]
        if hasattr(error, "error_dict")
        else error.error_list
    )
    return {str(e.code) for e in items}


@login_required
@require_POST
def document_delete(request: HttpRequest, event_id: int, document_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    document = get_object_or_404(EventDocument, pk=document_id, event=event)
    services.document_delete(document=document, actor=member)
    messages.success(request, _("Document “%(title)s” removed.") % {"title": document.title})
    return HttpResponseRedirect(reverse("event_documents", kwargs={"event_id": event.pk}))


@login_required
@require_safe
def document_download(request: HttpRequest, event_id: int, document_id: int) -> HttpResponse:
    """The file, to members who may see the event; 404 for everyone else and anything missing.

    Always a download (`attachment`), with the sniffed type, `nosniff` and a sandboxing CSP, as
    forum attachments are, so a file is never rendered as a page of this site. A link document
    redirects to where it lives.
    """
    document = selectors.document_for_member(
        event_id=event_id, document_id=document_id, member=_member(request)
    )
    if document.is_link:
        return HttpResponseRedirect(document.url)
    try:
        handle = document.file.storage.open(document.file.name, "rb")
    except FileNotFoundError as exc:
        raise Http404 from exc
    content_type = document.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    response = FileResponse(
        handle, as_attachment=True, filename=document.original_name, content_type=content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- The live room ----------------------------------------------------------------------------


@login_required
@require_POST
def live_room_create(request: HttpRequest, event_id: int) -> HttpResponse:
    member = _member(request)
    event = _organizer_event(request, event_id)
    try:
        room = services.live_room_create(event=event, actor=member)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(
            request,
            _("The live room %(slug)s is open; it is linked from this page.") % {"slug": room.slug},
        )
    return redirect("event_detail", event_id=event.pk)


# --- One date of a series ---------------------------------------------------------------------


@login_required
def occurrence_change(request: HttpRequest, event_id: int, key: str) -> HttpResponse:
    """Move or cancel one date of a series (the organizers' page behind "Change this date")."""
    member = _member(request)
    event = _organizer_event(request, event_id)
    original = recurrence.parse_occurrence_key(key)
    occurrence = recurrence.occurrence_of(event, original) if original else None
    if occurrence is None or not event.is_recurring:
        raise Http404
    form = OccurrenceForm(
        request.POST or None,
        initial={
            "action": "move",
            "starts_at": recurrence.to_local(occurrence.starts_at, event.timezone),
            "ends_at": recurrence.to_local(occurrence.ends_at, event.timezone),
        },
    )
    url = f"{_detail_url(event)}?occurrence={occurrence.key}"

    def change(data: dict[str, Any]) -> ActionDone:
        original_start = occurrence.original_start
        if data["action"] == "cancel":
            services.occurrence_cancel(
                event=event, actor=member, original_start=original_start, message=data["message"]
            )
            return _("The date is cancelled; registrants are told."), url
        services.occurrence_reschedule(
            event=event,
            actor=member,
            original_start=original_start,
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
        )
        return _("The date is moved; registrants are told."), url

    done = _form_action(request, form, change)
    status = 400 if request.method == "POST" else 200
    context = {"event": event, "occurrence": occurrence, "form": form}
    return done or render(request, "events/occurrence_change.html", context, status=status)
