"""URLs of the calendar pages (events/views.py), appended to events/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path("calendar/", views.calendar_month, name="calendar_month"),
    path("calendar/week/", views.calendar_week, name="calendar_week"),
    path("calendar/list/", views.calendar_list, name="calendar_list"),
    path("events/new/", views.event_create, name="event_create"),
    path("events/<int:event_id>/", views.event_detail, name="event_detail"),
    path("events/<int:event_id>/register/", views.event_register, name="event_register"),
    path("events/<int:event_id>/withdraw/", views.event_withdraw, name="event_withdraw"),
    path("events/<int:event_id>/edit/", views.event_edit, name="event_edit"),
    path("events/<int:event_id>/reschedule/", views.event_reschedule, name="event_reschedule"),
    path("events/<int:event_id>/cancel/", views.event_cancel, name="event_cancel"),
    path("events/<int:event_id>/duplicate/", views.event_duplicate, name="event_duplicate"),
    path(
        "events/<int:event_id>/registrations/",
        views.event_registrations,
        name="event_registrations",
    ),
    path(
        "events/<int:event_id>/registrations.csv",
        views.event_registrations_csv,
        name="event_registrations_csv",
    ),
    path("events/<int:event_id>/agenda/", views.event_agenda, name="event_agenda"),
    path(
        "events/<int:event_id>/agenda/<int:item_id>/delete/",
        views.agenda_item_delete,
        name="agenda_item_delete",
    ),
    path(
        "events/<int:event_id>/agenda/<int:item_id>/documents/",
        views.agenda_item_documents,
        name="agenda_item_documents",
    ),
    path("events/<int:event_id>/documents/", views.event_documents, name="event_documents"),
    path(
        "events/<int:event_id>/documents/<int:document_id>/",
        views.document_download,
        name="event_document",
    ),
    path(
        "events/<int:event_id>/documents/<int:document_id>/delete/",
        views.document_delete,
        name="event_document_delete",
    ),
    path("events/<int:event_id>/live-room/", views.live_room_create, name="event_live_room"),
    path(
        "events/<int:event_id>/dates/<str:key>/",
        views.occurrence_change,
        name="event_occurrence_change",
    ),
]
