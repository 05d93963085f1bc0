"""URLs of the events app, included at the site root by minga/urls.py."""

from django.urls import path

from . import account_views, ical
from .page_urls import urlpatterns as page_urlpatterns

urlpatterns = [
    path("events/<int:event_id>.ics", ical.event_ics, name="event_ics"),
    path("events/feeds/wg/<slug:slug>.ics", ical.working_group_feed, name="working_group_feed"),
    path("events/feeds/<str:token>.ics", ical.member_feed, name="member_feed"),
]
urlpatterns += page_urlpatterns

urlpatterns += [
    path("account/calendar/", account_views.calendar_settings, name="calendar_settings"),
    path(
        "account/calendar/create/",
        account_views.calendar_feed_create,
        name="calendar_feed_create",
    ),
    path(
        "account/calendar/regenerate/",
        account_views.calendar_feed_regenerate,
        name="calendar_feed_regenerate",
    ),
]
