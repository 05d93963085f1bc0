"""`import_members FILE.csv`: all rows checked first, then all written or none; dry run."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.management import CommandError, call_command

from community.models import Invitation, Membership, Organization, Role, User, WorkingGroup
from tests.factories import MembershipFactory

CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], None]]]]
HEADER = "email,name,organization,organization_kind,country,working_groups,language,timezone\n"


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _csv(tmp_path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path = tmp_path / "members.csv"
    path.write_bytes(text.encode(encoding))
    return path


def _import(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_members", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _counts() -> tuple[int, int, int, int]:
    return (
        User.objects.count(),
        Invitation.objects.count(),
        Organization.objects.count(),
        Membership.objects.count(),
    )


GOOD = HEADER + (
    "ana@trabajo.example,Ana María Pérez,Ministerio de Trabajo,ministry,PE,wg2:vice_chair,es,America/Lima\n"
    "rosa@cta.example,Rosa Díaz,COSATE,workers,,wg1:member; wg2:observer,,\n"
    "paul@labour.example,Paul Smith,,,,,fr,\n"
)


def test_import_updates_existing_and_invites_new(
    tmp_path: Path,
    member: User,
    secretariat: User,
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    path = _csv(tmp_path, GOOD)

    with django_capture_on_commit_callbacks(execute=True):
        out, err = _import(
            path, "--invited-by", "sec@oas.example", "--base-url", "https://minga.example"
        )

    assert err == ""
    assert out == "Imported 3 row(s): 1 member(s) updated, 2 invitation(s) sent.\n"
    member.refresh_from_db()
    assert (member.name, member.organization.name, member.language, member.timezone) == (
        "Ana María Pérez",
        "Ministerio de Trabajo",
        "es",
        "America/Lima",
    )
    assert sorted(
        Membership.objects.filter(member=member).values_list("working_group__slug", "role")
    ) == [("wg1", "member"), ("wg2", "vice_chair")]
    assert User.objects.filter(email__in=["rosa@cta.example", "paul@labour.example"]).count() == 0
    rosa = Invitation.objects.get(email="rosa@cta.example")
    assert (rosa.name, rosa.organization.name, rosa.organization.kind, rosa.invited_by) == (
        "Rosa Díaz",
        "COSATE",
        Organization.Kind.WORKERS,
        secretariat,
    )
    assert rosa.memberships == [
        {"working_group": "wg1", "role": "member"},
        {"working_group": "wg2", "role": "observer"},
    ]
    paul = Invitation.objects.get(email="paul@labour.example")
    assert (paul.organization, paul.memberships) == (None, [])
    assert sorted(m.to[0] for m in mail.outbox) == ["paul@labour.example", "rosa@cta.example"]
    assert all("https://minga.example/invite/" in m.body for m in mail.outbox)


def test_import_existing_organization_is_reused(tmp_path: Path, member: User) -> None:
    org = member.organization
    path = _csv(tmp_path, HEADER + f"rosa@x.example,Rosa,{org.name.upper()},,,wg1,,\n")
    before = Organization.objects.count()

    _import(path)

    assert Organization.objects.count() == before
    assert Invitation.objects.get().organization == org


def test_import_bad_rows_are_reported_by_line_and_nothing_changes(
    tmp_path: Path, member: User
) -> None:
    path = _csv(
        tmp_path,
        HEADER
        + "rosa@cta.example,Rosa Díaz,COSATE,workers,,wg1,,\n"  # good: line 2
        + "not-an-email,Bad Email,,,,,,\n"  # line 3
        + "x@y.example,,New Org,,ZZ,wg9:boss,de,Mars/Olympus\n"  # line 4
        + "rosa@cta.example,Rosa Again,,,,,,\n"  # line 5
        + "ana@trabajo.example,Ana,,,,,,,extra\n",  # line 6
    )
    before = _counts()
    member_before = (member.name, member.language)

    with pytest.raises(CommandError) as error:
        _import(path)

    assert _counts() == before
    member.refresh_from_db()
    assert (member.name, member.language) == member_before
    assert str(error.value).startswith(f"4 bad row(s) in {path}; nothing was changed.")
    assert error.value.__class__ is CommandError
    stderr = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_members", str(path), stdout=io.StringIO(), stderr=stderr)
    assert stderr.getvalue().splitlines() == [
        "line 3: invalid email 'not-an-email'",
        "line 4: name is empty; organization 'New Org' is new: give its organization_kind; "
        "unknown country code 'ZZ'; unknown working group 'wg9' (known: wg1, wg2); "
        "unknown role 'boss' (use chair, vice_chair, member, observer); "
        "unknown language 'de' (use en, es, pt, fr); unknown time zone 'Mars/Olympus'",
        "line 5: email rosa@cta.example already on line 2",
        "line 6: more fields than columns",
    ]


def test_import_dry_run_reports_valid_rows_and_changes_nothing(
    tmp_path: Path, member: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    path = _csv(tmp_path, GOOD)
    before = _counts()

    with django_capture_on_commit_callbacks(execute=True):
        out, err = _import(path, "--dry-run")

    assert out == "Dry run: 3 row(s) are valid; nothing was changed.\n"
    assert err == ""
    assert _counts() == before
    member.refresh_from_db()
    assert member.name == "Ana Pérez"
    assert mail.outbox == []


def test_import_dry_run_with_bad_rows_reports_them(tmp_path: Path, plan: None) -> None:
    path = _csv(tmp_path, HEADER + "a@x.example,A,,,,wg7,,\n")

    with pytest.raises(CommandError):
        _import(path, "--dry-run")

    assert _counts() == (0, 0, 0, 0)


def test_import_keeps_roles_of_other_groups(tmp_path: Path, member: User) -> None:
    MembershipFactory(
        member=member, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.CHAIR
    )
    path = _csv(tmp_path, HEADER + "ana@trabajo.example,Ana Pérez,,,,wg1:observer,,\n")

    _import(path)

    assert sorted(
        Membership.objects.filter(member=member).values_list("working_group__slug", "role")
    ) == [("wg1", "observer"), ("wg2", "chair")]


def test_import_bom_and_header_case_are_accepted(tmp_path: Path, plan: None) -> None:
    path = _csv(tmp_path, "\ufeffEmail, Name\nrosa@cta.example,Rosa\n")

    out, _err = _import(path)

    assert out == "Imported 1 row(s): 0 member(s) updated, 1 invitation(s) sent.\n"
    assert Invitation.objects.get().email == "rosa@cta.example"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "email,name,team\nrosa@cta.example,Rosa,blue\n",
            "line 1: unknown column(s): team (known: country, email, language, name, "
            "organization, organization_kind, timezone, working_groups)",
        ),
        ("email,organization\nrosa@cta.example,COSATE\n", "line 1: missing column(s): name"),
        ("email,name\n", "the file has no member rows"),
        ("", "line 1: missing column(s): email, name"),
    ],
)
def test_import_bad_header_is_a_clear_error(
    tmp_path: Path, plan: None, text: str, message: str
) -> None:
    path = _csv(tmp_path, text)
    stderr = io.StringIO()

    with pytest.raises(CommandError) as error:
        call_command("import_members", str(path), stdout=io.StringIO(), stderr=stderr)

    assert stderr.getvalue().splitlines() == [message]
    assert str(error.value).startswith(f"1 bad row(s) in {path}; nothing was changed.")
    assert _counts() == (0, 0, 0, 0)


def test_import_non_utf8_file_is_a_clear_error(tmp_path: Path, plan: None) -> None:
    path = _csv(tmp_path, "email,name\njose@x.example,José Núñez\n", encoding="latin-1")

    with pytest.raises(CommandError) as error:
        _import(path)

    assert str(error.value) == f"{path} is not UTF-8 text; save the sheet as CSV UTF-8."
    assert _counts() == (0, 0, 0, 0)


def test_import_missing_file_is_a_clear_error(tmp_path: Path, plan: None) -> None:
    with pytest.raises(CommandError) as error:
        _import(tmp_path / "nope.csv")

    assert str(error.value) == f"No such file: {tmp_path / 'nope.csv'}"


def test_import_directory_is_a_clear_error(tmp_path: Path, plan: None) -> None:
    with pytest.raises(CommandError) as error:
        _import(tmp_path)

    assert str(error.value).startswith(f"Cannot read {tmp_path}:")


def test_import_unknown_inviter_is_a_clear_error(tmp_path: Path, plan: None) -> None:
    path = _csv(tmp_path, GOOD)

    with pytest.raises(CommandError) as error:
        _import(path, "--invited-by", "nobody@example.org")

    assert str(error.value) == "No member with email 'nobody@example.org' to invite on behalf of."
    assert _counts() == (0, 0, 0, 0)


def test_import_by_plain_member_is_refused_and_changes_nothing(
    tmp_path: Path, member: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    path = _csv(tmp_path, HEADER + "rosa@cta.example,Rosa,,,,wg1,,\n")
    before = _counts()

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CommandError) as error:
        _import(path, "--invited-by", "ana@trabajo.example")

    assert str(error.value) == (
        "Ana Pérez may not send these invitations: Only the secretariat and working-group "
        "organizers invite members. Nothing was changed."
    )
    assert _counts() == before
    assert mail.outbox == []


def test_import_by_chair_into_other_group_rolls_back_every_row(
    tmp_path: Path, chair: User, member: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    path = _csv(
        tmp_path,
        HEADER
        + "ana@trabajo.example,Ana Renamed,,,,wg1:observer,,\n"
        + "rosa@cta.example,Rosa,,,,wg1,,\n"
        + "paul@labour.example,Paul,,,,wg2,,\n",
    )
    before = _counts()

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CommandError) as error:
        _import(path, "--invited-by", "chair@trabalho.example")

    assert str(error.value) == (
        "João Carvalho may not send these invitations: You may invite only to working groups "
        "you coordinate (not wg2). Nothing was changed."
    )
    assert _counts() == before
    member.refresh_from_db()
    assert member.name == "Ana Pérez"
    assert Membership.objects.get(member=member).role == Role.MEMBER
    assert mail.outbox == []


def test_import_rerun_leaves_one_working_invitation(tmp_path: Path, plan: None) -> None:
    path = _csv(tmp_path, HEADER + "rosa@cta.example,Rosa,,,,wg1,,\n")

    _import(path)
    _import(path)

    assert [i.is_usable for i in Invitation.objects.order_by("created", "pk")] == [False, True]
