from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from community.models import User
from community.services import api_token_create


class Command(BaseCommand):
    help = "Create a personal API token for a member and print its key (only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", default="issued by issue_token")

    def handle(self, *args: Any, **options: Any) -> None:
        member = User.objects.filter(email__iexact=options["email"].strip()).first()
        if member is None:
            raise CommandError(f"No member with email {options['email']!r}.")
        if not member.is_active:
            raise CommandError(f"{member.email} is deactivated; reactivate the account first.")
        _token, key = api_token_create(member=member, name=options["name"])
        self.stdout.write(key)
