"""Bulk onboarding from a CSV file: every row checked first, then all written or none.

Columns (header row required; order free; extra columns refused so typos are caught):
    email, name                      required
    organization, organization_kind  the delegation; kind is needed only for a new organization
    country                          ISO 3166 alpha-2 of the organization (BR, US, ...)
    working_groups                   "wg1:chair; wg2" (role defaults to member)
    language, timezone               optional (en|es|pt|fr; IANA name)
Existing members (by email) are updated; new ones receive an invitation by email.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django_countries import countries

from .models import Language, Organization, Role, User, WorkingGroup, available_timezones
from .services import invitation_create, member_upsert, membership_set, organization_for

REQUIRED = ("email", "name")
COLUMNS = frozenset(
    {
        "email",
        "name",
        "organization",
        "organization_kind",
        "country",
        "working_groups",
        "language",
        "timezone",
    }
)


@dataclass
class MemberRow:
    line: int
    email: str
    name: str
    organization: str
    organization_kind: str
    country: str
    memberships: list[tuple[str, str]]
    language: str
    timezone: str


@dataclass
class ImportReport:
    rows: list[MemberRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    updated: int = 0
    invited: int = 0


def parse_memberships(text: str) -> list[tuple[str, str]]:
    pairs = []
    for chunk in text.replace(",", ";").split(";"):
        if chunk.strip():
            slug, _, role = chunk.strip().partition(":")
            pairs.append((slug.strip().lower(), role.strip().lower() or Role.MEMBER))
    return pairs


@dataclass(frozen=True)
class _Known:
    groups: frozenset[str]
    organizations: frozenset[str]
    countries: frozenset[str]


def _row_problems(row: dict[str, str], known: _Known) -> list[str]:
    """Every problem of one row, in column order, so one pass tells the whole story."""
    problems: list[str] = []
    email = row.get("email", "").lower()
    try:
        validate_email(email)
    except ValidationError:
        problems.append(f"invalid email {row.get('email', '')!r}")
    if not row.get("name"):
        problems.append("name is empty")
    org, kind = row.get("organization", ""), row.get("organization_kind", "").lower()
    if kind and kind not in Organization.Kind.values:
        problems.append(
            f"unknown organization_kind {kind!r} (use {', '.join(Organization.Kind.values)})"
        )
    elif org and org.lower() not in known.organizations and not kind:
        problems.append(f"organization {org!r} is new: give its organization_kind")
    country = row.get("country", "").upper()
    if country and country not in known.countries:
        problems.append(f"unknown country code {row['country']!r}")
    for slug, role in parse_memberships(row.get("working_groups", "")):
        if slug not in known.groups:
            problems.append(
                f"unknown working group {slug!r} (known: {', '.join(sorted(known.groups))})"
            )
        if role not in Role.values:
            problems.append(f"unknown role {role!r} (use {', '.join(Role.values)})")
    language = row.get("language", "").lower()
    if language and language not in Language.values:
        problems.append(f"unknown language {language!r} (use {', '.join(Language.values)})")
    tz = row.get("timezone", "")
    if tz and tz not in available_timezones():
        problems.append(f"unknown time zone {tz!r}")
    return problems


def read_rows(data: str) -> ImportReport:
    """Parse and check every row; the report lists each problem as 'line N: ...'."""
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(data.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing:
        report.errors.append(f"line 1: missing column(s): {', '.join(missing)}")
    if unknown:
        report.errors.append(
            f"line 1: unknown column(s): {', '.join(unknown)} (known: {', '.join(sorted(COLUMNS))})"
        )
    if report.errors:
        return report
    reader.fieldnames = header
    known = _Known(
        groups=frozenset(WorkingGroup.objects.values_list("slug", flat=True)),
        organizations=frozenset(
            n.lower() for n in Organization.objects.values_list("name", flat=True)
        ),
        countries=frozenset(dict(countries)),
    )
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            report.errors.append(f"line {line}: more fields than columns")
            continue
        row = {k: (v or "").strip() for k, v in raw.items()}
        problems = _row_problems(row, known)
        email = row.get("email", "").lower()
        if email in seen:
            problems.append(f"email {email} already on line {seen[email]}")
        seen.setdefault(email, line)
        if problems:
            report.errors.append(f"line {line}: " + "; ".join(problems))
            continue
        report.rows.append(
            MemberRow(
                line=line,
                email=email,
                name=" ".join(row["name"].split()),
                organization=row.get("organization", ""),
                organization_kind=row.get("organization_kind", "").lower(),
                country=row.get("country", "").upper(),
                memberships=parse_memberships(row.get("working_groups", "")),
                language=row.get("language", "").lower(),
                timezone=row.get("timezone", ""),
            )
        )
    if not report.rows and not report.errors:
        report.errors.append("the file has no member rows")
    return report


@transaction.atomic
def apply_rows(report: ImportReport, *, invited_by: User | None, base_url: str) -> ImportReport:
    """Write every row (the caller has checked `report.errors` is empty)."""
    groups = {wg.slug: wg for wg in WorkingGroup.objects.all()}
    for row in report.rows:
        organization = (
            organization_for(
                name=row.organization, kind=row.organization_kind or None, country=row.country
            )
            if row.organization
            else None
        )
        memberships = [(groups[slug], role) for slug, role in row.memberships]
        existing = User.objects.filter(email__iexact=row.email).first()
        if existing is not None:
            member_upsert(
                email=row.email,
                name=row.name,
                organization=organization,
                language=row.language or None,
                timezone_name=row.timezone or None,
                verified=False,
            )
            for working_group, role in memberships:
                membership_set(member=existing, working_group=working_group, role=role)
            report.updated += 1
        else:
            invitation_create(
                email=row.email,
                name=row.name,
                organization=organization,
                memberships=memberships,
                invited_by=invited_by,
                base_url=base_url,
                language=row.language or None,
            )
            report.invited += 1
    return report
