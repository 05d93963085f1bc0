"""The Django admin is the secretariat's: staff manage the community, nobody else gets in."""

from __future__ import annotations

import pytest
from django.test import Client

from community.models import User

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/",
    "/admin/community/organization/",
    "/admin/community/user/",
    "/admin/community/workinggroup/",
    "/admin/community/topic/",
    "/admin/community/membership/",
    "/admin/forums/room/",
    "/admin/forums/attachment/",
    "/admin/forums/report/",
    "/admin/forums/roommute/",
]


@pytest.mark.parametrize("path", PAGES)
def test_secretariat_manages_the_community_in_the_admin(
    secretariat: User, client: Client, path: str
) -> None:
    client.force_login(secretariat)

    response = client.get(path)

    assert response.status_code == 200


def test_secretariat_can_open_a_working_group_for_editing(
    secretariat: User, client: Client
) -> None:
    from community.models import WorkingGroup

    client.force_login(secretariat)
    wg = WorkingGroup.objects.get(slug="wg2")

    response = client.get(f"/admin/community/workinggroup/{wg.pk}/change/")

    assert response.status_code == 200
    assert b"El Salvador" in response.content or b"SV" in response.content


def test_chair_is_kept_out_of_the_admin(chair: User, client: Client) -> None:
    client.force_login(chair)

    response = client.get("/admin/community/user/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
