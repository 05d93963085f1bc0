"""add_member EMAIL --name NAME --password PASSWORD [--handle H] [--org NAME] [--country CC]
[--wg SLUG [--role ROLE]]... [--organizer] [--staff]: create or update a verified account."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_countries import countries

from community.models import Organization, Role
from community.services import MembershipSpec, member_upsert, organization_for, resolve_memberships


class _WorkingGroup(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        pairs = list(getattr(namespace, "memberships", None) or [])
        pairs.append([values, None])
        namespace.memberships = pairs


class _Role(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        pairs = getattr(namespace, "memberships", None) or []
        if not pairs or pairs[-1][1] is not None:
            raise CommandError(
                "--role must follow the --wg it applies to, e.g. --wg wg1 --role chair."
            )
        pairs[-1][1] = values


def describe_errors(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


class Command(BaseCommand):
    help = "Create or update a verified member (for scripts, tests and onboarding)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--handle")
        parser.add_argument("--org", help="Organization name; created if new (see --org-kind).")
        parser.add_argument("--org-kind", choices=Organization.Kind.values, default=None)
        parser.add_argument("--country", help="ISO 3166 code of the organization, e.g. BR.")
        parser.add_argument(
            "--wg",
            action=_WorkingGroup,
            dest="memberships",
            metavar="SLUG",
            help="A working group to join; repeat for several.",
        )
        parser.add_argument(
            "--role",
            action=_Role,
            metavar="ROLE",
            help=f"Role in the preceding --wg: {', '.join(Role.values)} (default member).",
        )
        parser.add_argument(
            "--organizer",
            action="store_true",
            help="Make the member chair of each --wg given without a --role.",
        )
        parser.add_argument(
            "--staff", action="store_true", help="Technical secretariat (may do everything)."
        )
        parser.add_argument("--language", choices=["en", "es", "pt", "fr"])
        parser.add_argument("--timezone")

    def handle(self, *args: Any, **options: Any) -> None:
        pairs = options.get("memberships") or []
        if options["organizer"] and not pairs:
            raise CommandError("--organizer needs at least one --wg to organize.")
        default_role = Role.CHAIR if options["organizer"] else Role.MEMBER
        specs = [MembershipSpec(slug, role or default_role) for slug, role in pairs]
        country = (options["country"] or "").upper()
        if country and not options["org"]:
            raise CommandError("--country is the organization's country: give --org NAME too.")
        if country and country not in dict(countries):
            raise CommandError(
                f"Unknown country code {options['country']!r}; use ISO 3166 alpha-2, e.g. BR."
            )
        try:
            with transaction.atomic():
                memberships = resolve_memberships(specs)
                organization = (
                    organization_for(name=options["org"], kind=options["org_kind"], country=country)
                    if options["org"]
                    else None
                )
                user, created = member_upsert(
                    email=options["email"],
                    name=options["name"],
                    password=options["password"],
                    handle=options["handle"],
                    organization=organization,
                    language=options["language"],
                    timezone_name=options["timezone"],
                    staff=True if options["staff"] else None,
                    memberships=memberships,
                )
        except ValidationError as error:
            raise CommandError(describe_errors(error)) from None
        verb = "Created" if created else "Updated"
        roles = ", ".join(f"{wg.slug}:{role}" for wg, role in memberships) or "no working groups"
        self.stdout.write(f"{verb} {user.email} (@{user.handle}, {roles}).")
