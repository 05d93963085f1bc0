from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from community import importing
from community.importing import apply_rows, read_rows
from community.models import User


class Command(BaseCommand):
    help = "Import members from a CSV file: update existing members, invite new ones. " + (
        "All rows are checked first; one bad row and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and report; change nothing."
        )
        parser.add_argument(
            "--invited-by", metavar="EMAIL", help="The inviter named in invitation emails."
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Site address used in invitation links.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            data = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CommandError(f"No such file: {path}") from None
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text; save the sheet as CSV UTF-8.") from None
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        inviter = None
        if options["invited_by"]:
            inviter = User.objects.filter(email__iexact=options["invited_by"]).first()
            if inviter is None:
                raise CommandError(
                    f"No member with email {options['invited_by']!r} to invite on behalf of."
                )
        report = read_rows(data)
        for error in report.errors:
            self.stderr.write(error)
        if report.errors:
            raise CommandError(
                f"{len(report.errors)} bad row(s) in {path}; nothing was changed.\n{importing.__doc__}"
            )
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {len(report.rows)} row(s) are valid; nothing was changed.")
            return
        try:
            apply_rows(report, invited_by=inviter, base_url=options["base_url"])
        except PermissionDenied as error:
            # apply_rows is one transaction: the rows written before this one are rolled back.
            raise CommandError(
                f"{inviter} may not send these invitations: {error} Nothing was changed."
            ) from None
        except ValidationError as error:
            raise CommandError(f"{' '.join(error.messages)} Nothing was changed.") from None
        self.stdout.write(
            f"Imported {len(report.rows)} row(s): {report.updated} member(s) updated, "
            f"{report.invited} invitation(s) sent."
        )
