from django.contrib import admin
from django.urls import include, path, re_path
from django.utils.translation import gettext_lazy as _

from community import views as community
from minga import health, views
from minga.api import api
from minga.api import not_found as api_not_found

admin.site.site_header = _("Minga administration")
admin.site.site_title = _("Minga")

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("groups/", community.working_group_list, name="working_group_list"),
    path("groups/<slug:slug>/", community.working_group_detail, name="working_group_detail"),
    path("groups/<slug:slug>/join/", community.working_group_join, name="working_group_join"),
    path("groups/<slug:slug>/leave/", community.working_group_leave, name="working_group_leave"),
    path("account/settings/", community.account_settings, name="account_settings"),
    path("account/tokens/", community.api_tokens, name="api_tokens"),
    path(
        "account/tokens/<int:token_id>/revoke/", community.api_token_revoke, name="api_token_revoke"
    ),
    path("invitations/new/", community.invitation_create, name="invitation_create"),
    path("invite/<str:token>/", community.invitation_accept, name="invitation_accept"),
    path("i18n/setlang/", community.set_language, name="set_language"),
    path("", include("forums.urls")),
    path("", include("events.urls")),
    path("", include("notifications.urls")),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
]
