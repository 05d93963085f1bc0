"""The tutorial's chat pages (H5 only: the peer's HTTP page under websocket load)."""

from django.urls import path

from bench.b0 import views

urlpatterns = [
    path("chat/", views.index, name="index"),
    path("chat/<str:room_name>/", views.room, name="room"),
]
