"""Demo data for `make run`: the Plan of Action plus accounts from several delegations."""

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from community.models import Organization, Role, WorkingGroup
from community.services import member_upsert, organization_for

DEMO_PASSWORD = "minga-demo-2026"  # noqa: S105 - printed on purpose; refused when DEBUG is off

ORGANIZATIONS = [
    ("Ministry of Labour and Employment of Brazil", Organization.Kind.MINISTRY, "BR"),
    ("Ministry of Labor and Social Welfare of El Salvador", Organization.Kind.MINISTRY, "SV"),
    ("United States Department of Labor", Organization.Kind.MINISTRY, "US"),
    ("Ministry of Labour and Social Security of Uruguay", Organization.Kind.MINISTRY, "UY"),
    ("Employment and Social Development Canada", Organization.Kind.MINISTRY, "CA"),
    ("Ministry of Labour of Guyana", Organization.Kind.MINISTRY, "GY"),
    ("Ministry of Labour of Trinidad and Tobago", Organization.Kind.MINISTRY, "TT"),
    ("COSATE — Trade Union Technical Advisory Council", Organization.Kind.WORKERS, ""),
    (
        "CEATAL — Business Technical Advisory Committee on Labor Matters",
        Organization.Kind.EMPLOYERS,
        "",
    ),
    ("International Labour Organization", Organization.Kind.INTERNATIONAL, ""),
    ("OAS Technical Secretariat", Organization.Kind.SECRETARIAT, ""),
]

# email, name, organization index, language, time zone, staff, [(wg, role)]
ACCOUNTS = [
    ("secretariat@minga.test", "Sofía Herrera", 10, "es", "America/New_York", True, []),
    (
        "chair.wg1@minga.test",
        "João Carvalho",
        0,
        "pt",
        "America/Sao_Paulo",
        False,
        [("wg1", Role.CHAIR)],
    ),
    (
        "chair.wg2@minga.test",
        "Ana Martínez",
        1,
        "es",
        "America/El_Salvador",
        False,
        [("wg2", Role.CHAIR)],
    ),
    (
        "delegate.us@minga.test",
        "Emily Carter",
        2,
        "en",
        "America/New_York",
        False,
        [("wg1", Role.VICE_CHAIR), ("wg2", Role.MEMBER)],
    ),
    (
        "delegate.uy@minga.test",
        "Martín Pereira",
        3,
        "es",
        "America/Montevideo",
        False,
        [("wg2", Role.VICE_CHAIR)],
    ),
    (
        "delegate.ca@minga.test",
        "Claire Tremblay",
        4,
        "fr",
        "America/Toronto",
        False,
        [("wg2", Role.VICE_CHAIR), ("wg1", Role.MEMBER)],
    ),
    (
        "delegate.tt@minga.test",
        "Marcus Baptiste",
        6,
        "en",
        "America/Port_of_Spain",
        False,
        [("wg1", Role.MEMBER), ("wg2", Role.MEMBER)],
    ),
    (
        "cosate@minga.test",
        "Rosa Quispe",
        7,
        "es",
        "America/Lima",
        False,
        [("wg1", Role.MEMBER), ("wg2", Role.MEMBER)],
    ),
    ("ceatal@minga.test", "Daniel Rocha", 8, "pt", "America/Bogota", False, [("wg1", Role.MEMBER)]),
    (
        "ilo@minga.test",
        "Hélène Dubois",
        9,
        "fr",
        "America/Lima",
        False,
        [("wg1", Role.OBSERVER), ("wg2", Role.OBSERVER)],
    ),
]


class Command(BaseCommand):
    help = "Load the Plan of Action and demo accounts (development only) and print their logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Allow with DEBUG off (never in production)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo creates accounts with a known password: DEBUG=1 only.")
        call_command("seed_plan_of_action", stdout=self.stdout)
        groups = {wg.slug: wg for wg in WorkingGroup.objects.all()}
        with transaction.atomic():
            orgs = [organization_for(name=n, kind=k, country=c) for n, k, c in ORGANIZATIONS]
            for email, name, org, language, tz, staff, roles in ACCOUNTS:
                member_upsert(
                    email=email,
                    name=name,
                    password=DEMO_PASSWORD,
                    organization=orgs[org],
                    language=language,
                    timezone_name=tz,
                    staff=staff,
                    memberships=[(groups[slug], role) for slug, role in roles],
                )
        self.stdout.write(f"\nDemo accounts (password for all: {DEMO_PASSWORD}):")
        for email, name, org, _lang, _tz, staff, roles in ACCOUNTS:
            what = "secretariat" if staff else ", ".join(f"{wg} {r}" for wg, r in roles)
            self.stdout.write(f"  {email:<26} {name:<18} {ORGANIZATIONS[org][0][:40]:<40} {what}")
