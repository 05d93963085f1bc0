"""URLs of the forums app, included at the site root by minga/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path("rooms/", views.room_list, name="room_list"),
    path("rooms/<slug:slug>/", views.room_detail, name="room_detail"),
    path("rooms/<slug:slug>/members/", views.room_members, name="room_members"),
    path("rooms/<slug:slug>/moderation/", views.room_moderation, name="room_moderation"),
    path("threads/<int:thread_id>/", views.thread_detail, name="thread_detail"),
    path("threads/<int:thread_id>/moderate/", views.thread_moderate, name="thread_moderate"),
    path("messages/<int:message_id>/edit/", views.message_edit, name="message_edit"),
    path("messages/<int:message_id>/delete/", views.message_delete, name="message_delete"),
    path("messages/<int:message_id>/react/", views.message_react, name="message_react"),
    path("messages/<int:message_id>/report/", views.message_report, name="message_report"),
    path("messages/<int:message_id>/hide/", views.message_hide, name="message_hide"),
    path("messages/<int:message_id>/unhide/", views.message_unhide, name="message_unhide"),
    path("messages/<int:message_id>/mute/", views.message_mute_author, name="message_mute"),
    path("reports/<int:report_id>/resolve/", views.report_resolve, name="report_resolve"),
    path("mutes/<int:mute_id>/lift/", views.mute_lift, name="mute_lift"),
    path("search/", views.forum_search, name="forum_search"),
    path(
        "attachments/<int:attachment_id>/",
        views.attachment_download,
        name="attachment_download",
    ),
]
