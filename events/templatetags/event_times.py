"""Times of events as a person reads them: in their own zone, and in the event's where it differs.

An organizer in Port of Spain types "10:00"; a delegate in Santiago reads "10:00 Port of Spain /
11:00 your time", so nobody misses a meeting by an hour. Where both zones have the same UTC
offset at that moment, one time is shown (the footer names the viewer's zone).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from django import template
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

register = template.Library()

DATE_FORMAT = "D j M Y"
TIME_FORMAT = "H:i"
DASH = "\N{EN DASH}"


def zone_label(zone: str) -> str:
    """ "America/Port_of_Spain" -> "Port of Spain": the city people recognise."""
    return zone.rsplit("/", 1)[-1].replace("_", " ")


register.filter("zone_label", zone_label)


def _viewer_zone() -> tzinfo:
    return timezone.get_current_timezone()


def _same_offsets(instants: list[datetime], a: tzinfo, b: tzinfo) -> bool:
    return all(i.astimezone(a).utcoffset() == i.astimezone(b).utcoffset() for i in instants)


def _range_text(start: datetime, end: datetime | None, zone: tzinfo, *, with_date: bool) -> str:
    local_start = start.astimezone(zone)
    text = date_format(local_start, TIME_FORMAT)
    if with_date:
        text = f"{date_format(local_start, DATE_FORMAT)}, {text}"
    if end is not None:
        local_end = end.astimezone(zone)
        if local_end.date() == local_start.date():
            text = f"{text}{DASH}{date_format(local_end, TIME_FORMAT)}"
        else:
            text = (
                f"{text} {DASH} {date_format(local_end, DATE_FORMAT)}, "
                f"{date_format(local_end, TIME_FORMAT)}"
            )
    return text


def event_times_text(
    start: datetime, end: datetime | None, zone: str, *, with_date: bool = True
) -> tuple[str, str | None]:
    """(the time in the event's zone or the viewer's, the viewer's time when the zones differ)."""
    viewer = _viewer_zone()
    event_zone = ZoneInfo(zone)
    instants = [start] if end is None else [start, end]
    if _same_offsets(instants, viewer, event_zone):
        return _range_text(start, end, viewer, with_date=with_date), None
    event_text = _range_text(start, end, event_zone, with_date=with_date)
    # The viewer's part repeats the date only when it falls on another day there.
    viewer_with_date = with_date and (
        start.astimezone(viewer).date() != start.astimezone(event_zone).date()
    )
    return event_text, _range_text(start, end, viewer, with_date=viewer_with_date)


@register.simple_tag
def event_times(
    start: datetime, end: datetime | None, zone: str, with_date: bool = True
) -> SafeString:
    """`{% event_times start end event.timezone %}` -> <time> markup, one or both zones."""
    event_text, viewer_text = event_times_text(start, end, zone, with_date=with_date)
    iso = start.astimezone(ZoneInfo("UTC")).isoformat()
    if viewer_text is None:
        return format_html('<time datetime="{}">{}</time>', iso, event_text)
    return format_html(
        '<time datetime="{}"><span class="time-event-zone">{} {}</span>'
        ' <span class="time-sep">/</span> <span class="time-viewer-zone">{}</span></time>',
        iso,
        event_text,
        zone_label(zone),
        _("%(time)s your time") % {"time": viewer_text},
    )


@register.filter
def in_viewer_zone(value: datetime) -> datetime:
    return value.astimezone(_viewer_zone())
