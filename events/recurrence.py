"""Local wall-clock times, RRULE validation and occurrence expansion in the event's own zone.

The DST rule (docs/calendar.md), the one RFC 5545 (section 3.3.5) prescribes, so the app and
every calendar client that reads our feeds agree:

- A local time that happens twice (clocks go back): the FIRST of the two, i.e. the earlier
  instant, still on the offset before the change (PEP 495 fold=0).
- A local time that does not exist (clocks go forward): read with the UTC offset from BEFORE
  the gap, so it lands as far after the gap's start as it was meant to be (00:30 in
  Santiago's 00:00->01:00 gap is 01:30 local). This is also PEP 495 fold=0.
- The duration is elapsed time: a 2-hour meeting lasts 2 hours even across a change.

Occurrences expand from the local start (what the organizer typed), so a 10:00 meeting stays
at 10:00 local across DST changes and moves in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, rrulestr
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from .models import Event, EventOccurrenceOverride

ALLOWED_FREQUENCIES = frozenset({DAILY, WEEKLY, MONTHLY, YEARLY})
MAX_OCCURRENCES = 1000  # per expansion window; a calendar page never needs more


def to_instant(local: datetime, zone: str) -> datetime:
    """The aware UTC instant of a naive local wall-clock time in `zone` (the DST rule above)."""
    if local.tzinfo is not None:
        raise ValueError("to_instant takes a naive local time")
    return local.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)


def to_local(instant: datetime, zone: str) -> datetime:
    """The naive local wall-clock time of an aware instant in `zone`."""
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None, fold=0)


def local_start(event: Event) -> datetime:
    return datetime.combine(event.local_start_date, event.local_start_time)


def normalize_rrule(text: str) -> str:
    """Strip an optional "RRULE:" prefix, spaces and case: "freq=weekly" -> "FREQ=WEEKLY"."""
    value = (text or "").strip()
    if value.upper().startswith("RRULE:"):
        value = value[len("RRULE:") :]
    return value.replace(" ", "").upper()


def _invalid(message: str, code: str = "invalid_rrule") -> ValidationError:
    return ValidationError({"recurrence": ValidationError(message, code=code)})


def _split_until(value: str, zone: str) -> tuple[str, datetime | None]:
    """(rule without UNTIL, UNTIL as an aware UTC instant or None).

    UNTIL may be given as a date (the end of that local day), a local date-time or a UTC
    date-time ("Z"); the stored rule always carries UTC, as RFC 5545 requires next to a
    DTSTART with TZID.
    """
    parts = [p for p in value.split(";") if p]
    until: datetime | None = None
    kept: list[str] = []
    for part in parts:
        name, _sep, raw = part.partition("=")
        if name != "UNTIL":
            kept.append(part)
            continue
        try:
            if raw.endswith("Z"):
                until = datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            elif "T" in raw:
                local = datetime.strptime(raw, "%Y%m%dT%H%M%S")  # noqa: DTZ007 - local wall-clock
                until = to_instant(local, zone)
            else:
                day = datetime.strptime(raw, "%Y%m%d")  # noqa: DTZ007 - local wall-clock
                until = to_instant(day.replace(hour=23, minute=59, second=59), zone)
        except ValueError as exc:
            raise _invalid(
                str(_("UNTIL must be a date (20270630) or a date-time (20270630T000000Z)."))
            ) from exc
    return ";".join(kept), until


def build_rule(text: str, start_local: datetime, zone: str) -> rrule:
    """Parse and validate an RRULE against its naive local start; ValidationError if unusable.

    Refused: anything but one RRULE (no DTSTART, RDATE or EXRULE inside), sub-daily
    frequencies, and a start that is not itself an occurrence of the rule (RFC 5545 leaves
    such a set undefined, and clients disagree about it).
    """
    value = normalize_rrule(text)
    if not value or "\n" in value or "\r" in value or ":" in value:
        raise _invalid(
            str(_("Give one recurrence rule such as FREQ=WEEKLY;BYDAY=WE (RFC 5545 RRULE)."))
        )
    body, until = _split_until(value, zone)
    try:
        rule = rrulestr(body, dtstart=start_local)
        if until is not None:
            if "COUNT=" in body:
                raise ValueError("COUNT and UNTIL together")
            rule = rule.replace(until=to_local(until, zone))
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise _invalid(
            str(_("This is not a valid recurrence rule (%(reason)s).")) % {"reason": exc}
        ) from exc
    if not isinstance(rule, rrule):
        raise _invalid(str(_("Give one recurrence rule, not a set.")))
    if rule._freq not in ALLOWED_FREQUENCIES:
        raise _invalid(
            str(_("Events repeat daily, weekly, monthly or yearly, not more often.")),
            code="rrule_frequency",
        )
    first = rule.after(start_local, inc=True)
    if first != start_local:
        raise _invalid(
            str(
                _(
                    "The first date (%(start)s) is not an occurrence of the rule; start the "
                    "event on a date the rule produces."
                )
            )
            % {"start": start_local.strftime("%Y-%m-%d %H:%M")},
            code="rrule_start_mismatch",
        )
    return rule


def validate_rrule(text: str, start_local: datetime, zone: str) -> str:
    """The normalized rule (UNTIL in UTC) if usable, "" for none; ValidationError otherwise."""
    if not (text or "").strip():
        return ""
    build_rule(text, start_local, zone)
    body, until = _split_until(normalize_rrule(text), zone)
    if until is None:
        return body
    return f"{body};UNTIL={until.astimezone(UTC):%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of an event. `original_start` identifies it (exdates, overrides, reminders)."""

    event: Event
    original_start: datetime
    starts_at: datetime
    ends_at: datetime
    cancelled: bool = False
    moved: bool = False

    @property
    def is_first(self) -> bool:
        return self.original_start == self.event.starts_at

    @property
    def key(self) -> str:
        """The occurrence in a URL (`?occurrence=20260318T130000Z`): its original start, UTC."""
        return occurrence_key(self.original_start)


OCCURRENCE_KEY_FORMAT = "%Y%m%dT%H%M%SZ"


def occurrence_key(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime(OCCURRENCE_KEY_FORMAT)


def parse_occurrence_key(value: str | None) -> datetime | None:
    """The original start an `occurrence_key` names, or None for anything else."""
    if not value or len(value) != len("20260318T130000Z"):
        return None
    try:
        return datetime.strptime(value, OCCURRENCE_KEY_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def occurrence_of(event: Event, original: datetime) -> Occurrence | None:
    """The occurrence of `event` whose original start is `original` (None if there is none,
    or it was excluded), moved or cancelled as its override says."""
    original = original.astimezone(UTC)
    if original in {parse_exdate(x) for x in event.exdates or []}:
        return None
    if not is_occurrence(event, original):
        return None
    cancelled_event = event.status == "cancelled"
    for override in event.overrides.all():
        if override.original_start.astimezone(UTC) != original:
            continue
        if override.cancelled:
            return Occurrence(event, original, original, original + event.duration, True)
        return Occurrence(
            event,
            original,
            override.starts_at,  # type: ignore[arg-type]
            override.ends_at,  # type: ignore[arg-type]
            cancelled_event,
            moved=True,
        )
    return Occurrence(event, original, original, original + event.duration, cancelled_event)


def exdate_key(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


def parse_exdate(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def original_starts(event: Event, start: datetime, end: datetime) -> list[datetime]:
    """Original starts (aware UTC) of the series whose unmoved span overlaps [start, end)."""
    duration = event.duration
    first_local = local_start(event)
    if not event.recurrence:
        instant = to_instant(first_local, event.timezone)
        return [instant] if instant < end and instant + duration > start else []
    rule = build_rule(event.recurrence, first_local, event.timezone)
    # A day's margin either side absorbs any UTC offset; exact filtering follows.
    window_start = to_local(start - duration, event.timezone) - timedelta(days=1)
    window_end = to_local(end, event.timezone) + timedelta(days=1)
    result: list[datetime] = []
    for local in rule.xafter(max(window_start, first_local), inc=True, count=None):
        if local > window_end or len(result) >= MAX_OCCURRENCES:
            break
        instant = to_instant(local, event.timezone)
        if instant < end and instant + duration > start:
            result.append(instant)
    return result


def expand(
    event: Event,
    start: datetime,
    end: datetime,
    *,
    overrides: Iterable[EventOccurrenceOverride] | None = None,
    include_cancelled: bool = True,
) -> list[Occurrence]:
    """Occurrences of `event` overlapping [start, end), in start order.

    Exdates drop an occurrence; an override moves or cancels it (a moved occurrence counts
    where it now is). A cancelled event's occurrences come back with cancelled=True (they stay
    in feeds) unless `include_cancelled` is False. `overrides` may be passed prefetched.
    """
    if overrides is None:
        overrides = event.overrides.all()
    by_start: Mapping[datetime, EventOccurrenceOverride] = {
        o.original_start.astimezone(UTC): o for o in overrides
    }
    excluded = {parse_exdate(x) for x in event.exdates or []}
    cancelled_event = event.status == "cancelled"
    found: dict[datetime, Occurrence] = {}
    for original in original_starts(event, start, end):
        if original in excluded or original in by_start:
            continue
        found[original] = Occurrence(
            event, original, original, original + event.duration, cancelled_event
        )
    # Moved occurrences may come into the window from anywhere: check each override itself.
    for original, override in by_start.items():
        if original in excluded or not is_occurrence(event, original):
            continue
        if override.cancelled:
            s, e = original, original + event.duration
        else:
            s, e = override.starts_at, override.ends_at  # type: ignore[assignment]
        if s < end and e > start:
            found[original] = Occurrence(
                event,
                original,
                s,
                e,
                cancelled_event or override.cancelled,
                moved=not override.cancelled,
            )
    occurrences = sorted(found.values(), key=lambda o: (o.starts_at, o.original_start))
    if not include_cancelled:
        occurrences = [o for o in occurrences if not o.cancelled]
    return occurrences


def is_occurrence(event: Event, instant: datetime) -> bool:
    """True when `instant` is an original start of the series (exdates not considered)."""
    instant = instant.astimezone(UTC)
    return instant in original_starts(event, instant, instant + timedelta(seconds=1))


def series_end(event: Event) -> datetime | None:
    """The end of the last occurrence (original times), None for an endless series."""
    if not event.recurrence:
        return event.ends_at
    rule = build_rule(event.recurrence, local_start(event), event.timezone)
    if rule._count is None and rule._until is None:
        return None
    last: datetime | None = None
    for last in rule:  # noqa: B007 - bounded by COUNT or UNTIL
        pass
    if last is None:
        return event.ends_at
    return to_instant(last, event.timezone) + event.duration


def split_local(value: datetime, zone: str) -> tuple[date, time]:
    """(local date, local time) of an aware instant, or of a naive local wall-clock time."""
    local = to_local(value, zone) if value.tzinfo is not None else value
    return local.date(), local.time().replace(microsecond=0)


def occurrence_starts_local(occurrences: Sequence[Occurrence], zone: str) -> list[datetime]:
    return [to_local(o.starts_at, zone) for o in occurrences]
