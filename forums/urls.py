"""URLs of the forums app, included at the site root by minga/urls.py."""

from django.urls import path  # noqa: F401 - patterns are added as pages arrive

urlpatterns: list = []
