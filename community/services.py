"""Writes for members, organizations, memberships, invitations and API tokens.

Every function is keyword-only, validates before it writes, and writes inside one transaction.
Bad input raises `ValidationError` (with the field) or `PermissionDenied` and changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from minga import rows

from . import policy
from .models import (
    ApiToken,
    Invitation,
    Language,
    Membership,
    Organization,
    Role,
    User,
    WorkingGroup,
    validate_handle,
    validate_timezone,
)


@dataclass(frozen=True)
class MembershipSpec:
    working_group: str  # slug
    role: str


def resolve_memberships(specs: Iterable[MembershipSpec]) -> list[tuple[WorkingGroup, str]]:
    """Check every working-group slug and role; raise one ValidationError naming all bad ones."""
    specs = list(specs)
    groups = {
        wg.slug: wg for wg in WorkingGroup.objects.filter(slug__in={s.working_group for s in specs})
    }
    errors: list[str] = []
    resolved: list[tuple[WorkingGroup, str]] = []
    for spec in specs:
        if spec.working_group not in groups:
            errors.append(
                _("Unknown working group “%(slug)s”; known: %(known)s.")
                % {"slug": spec.working_group, "known": ", ".join(all_working_group_slugs())}
            )
        elif spec.role not in Role.values:
            errors.append(
                _("Unknown role “%(role)s”; use one of: %(roles)s.")
                % {"role": spec.role, "roles": ", ".join(Role.values)}
            )
        else:
            resolved.append((groups[spec.working_group], spec.role))
    if errors:
        raise ValidationError({"memberships": errors})
    return resolved


def all_working_group_slugs() -> list[str]:
    return list(WorkingGroup.objects.order_by("number").values_list("slug", flat=True))


def organization_for(
    *, name: str, kind: str | None = None, country: str | None = None
) -> Organization:
    """Find an organization by name (case-insensitively) or create it; kind is needed to create."""
    name = " ".join(name.split())
    if not name:
        raise ValidationError({"organization": _("An organization needs a name.")})
    existing = Organization.objects.filter(name__iexact=name).first()
    if existing is not None:
        return existing
    org = Organization(
        name=name, kind=kind or Organization.Kind.MINISTRY, country=(country or "").upper()
    )
    org.full_clean()
    org.save()
    return org


@transaction.atomic
def member_upsert(
    *,
    email: str,
    name: str,
    password: str | None = None,
    handle: str | None = None,
    organization: Organization | None = None,
    language: str | None = None,
    timezone_name: str | None = None,
    staff: bool | None = None,
    memberships: Sequence[tuple[WorkingGroup, str]] = (),
    verified: bool = True,
) -> tuple[User, bool]:
    """Create or update a member by email; returns (member, created).

    Side effects: marks the primary email verified when `verified`; sets each given membership
    (other memberships are kept).
    """
    email = User.objects.normalize_email(email.strip()).lower()
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if user is None:
        user = User(email=email)
    user.name = " ".join(name.split()) or user.name
    if handle:
        user.handle = handle.strip().lower()
    elif not user.handle:
        user.handle = User.objects.available_handle(email, exclude_pk=user.pk)
    if organization is not None:
        user.organization = organization
    if language is not None:
        user.language = language
    if timezone_name is not None:
        user.timezone = timezone_name
    if staff is not None:
        user.is_staff = staff
    if password is not None:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    for working_group, role in memberships:
        membership_set(member=user, working_group=working_group, role=role)
    if verified:
        EmailAddress.objects.filter(user=user).exclude(email__iexact=email).update(primary=False)
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
    return user, created


def membership_set(*, member: User, working_group: WorkingGroup, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": _("Unknown role “%(role)s”.") % {"role": role}})
    membership, _created = Membership.objects.update_or_create(
        member=member, working_group=working_group, defaults={"role": role}
    )
    policy.forget_roles(member)
    return membership


@transaction.atomic
def working_group_join(*, member: User, working_group: WorkingGroup) -> Membership:
    """A participant joins a group: as member (member states, advisory bodies) or observer."""
    existing = Membership.objects.filter(member=member, working_group=working_group).first()
    if existing is not None:
        return existing
    role = policy.joining_role(member)
    if role is None:
        raise PermissionDenied(_("Only verified members can join a working group."))
    return membership_set(member=member, working_group=working_group, role=role)


@transaction.atomic
def working_group_leave(*, member: User, working_group: WorkingGroup) -> None:
    Membership.objects.filter(member=member, working_group=working_group).delete()
    policy.forget_roles(member)


@transaction.atomic
def profile_update(
    *, member: User, name: str, handle: str, language: str, timezone_name: str
) -> User:
    """Change the member's profile; every bad field is reported at once and nothing is saved.

    Side effects: none beyond the row; the language and zone apply from the next request. On
    failure the `member` object is restored from the database, so the page that shows the error
    does not already show the refused values.
    """
    fields = ["name", "handle", "language", "timezone"]
    member.name = " ".join(name.split())
    member.handle = handle.strip().lower()
    member.language = language
    member.timezone = timezone_name
    try:
        member.full_clean(exclude=["password"])
    except ValidationError as error:
        errors = error.message_dict
        if language not in Language.values:
            # Django's "Value 'de' is not a valid choice." names neither the field nor the options.
            errors["language"] = _language_error(language).messages
        member.refresh_from_db(fields=fields)
        raise ValidationError(errors) from None
    try:
        with transaction.atomic():
            member.save(update_fields=fields)
    except IntegrityError:
        # Two members took the same handle between full_clean() and save(): the loser hears why.
        member.refresh_from_db(fields=fields)
        raise ValidationError({"handle": _("That handle is taken; choose another.")}) from None
    return member


def _language_error(value: str) -> ValidationError:
    return ValidationError(
        _("Unknown language “%(value)s”; use one of: %(choices)s.")
        % {"value": value, "choices": ", ".join(Language.values)},
        code="invalid_language",
    )


def validate_language(value: str) -> None:
    if value not in Language.values:
        raise _language_error(value)


# --- Invitations ------------------------------------------------------------------------------


@transaction.atomic
def invitation_create(
    *,
    email: str,
    invited_by: User | None,
    name: str = "",
    organization: Organization | None = None,
    memberships: Sequence[tuple[WorkingGroup, str]] = (),
    base_url: str,
    language: str | None = None,
) -> tuple[Invitation, str]:
    """Invite `email`; returns the invitation and its raw token (shown nowhere else).

    Side effects: sends the invitation email after commit, in `language` when the invitee's is
    known (an import row names it), else in the inviter's; expires the address's earlier pending
    invitations, so a re-sent invitation (or a re-run import) leaves one working link. An
    organizer may only invite to the groups they coordinate.
    """
    if invited_by is not None and not policy.is_secretariat(invited_by):
        if not policy.can_invite(invited_by):
            raise PermissionDenied(
                _("Only the secretariat and working-group organizers invite members.")
            )
        for working_group, _role in memberships:
            if not policy.can_manage_members(invited_by, working_group.pk):
                raise PermissionDenied(
                    _("You may invite only to working groups you coordinate (not %(wg)s).")
                    % {"wg": working_group.slug}
                )
    if language is not None:
        validate_language(language)
    email = User.objects.normalize_email(email.strip()).lower()
    if (
        User.objects.filter(email__iexact=email)
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
        .exists()
    ):
        # Only organizers get here, so saying so reveals nothing to a stranger; the invitee
        # could not accept anyway (invitation_accept refuses an existing account).
        raise ValidationError({"email": _("%(email)s already has an account.") % {"email": email}})
    raw, token_hash = Invitation.new_token()
    invitation = Invitation(
        email=email,
        name=name,
        organization=organization,
        memberships=[{"working_group": wg.slug, "role": role} for wg, role in memberships],
        invited_by=invited_by,
        token_hash=token_hash,
        expires_at=timezone.now() + timedelta(days=settings.MINGA_INVITATION_DAYS),
    )
    invitation.full_clean()
    now = timezone.now()
    Invitation.objects.filter(
        email__iexact=email, accepted_at__isnull=True, expires_at__gt=now
    ).update(expires_at=now)
    invitation.save()
    url = f"{base_url.rstrip('/')}/invite/{raw}/"
    if language is None:
        language = invited_by.language if invited_by is not None else settings.LANGUAGE_CODE
    transaction.on_commit(lambda: _send_invitation(invitation, url, language))
    return invitation, raw


def _send_invitation(invitation: Invitation, url: str, language: str) -> None:
    with translation.override(language):
        context = {"invitation": invitation, "url": url, "days": settings.MINGA_INVITATION_DAYS}
        subject = settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + _("You are invited to Minga")
        text = render_to_string("community/email/invitation.txt", context)
        html = render_to_string("community/email/invitation.html", context)
    message = EmailMultiAlternatives(subject, text, to=[invitation.email])
    message.attach_alternative(html, "text/html")
    message.send()


def invitation_for_token(raw: str) -> Invitation | None:
    """The usable invitation behind a raw token, or None (unknown, used or expired alike)."""
    invitation = Invitation.objects.filter(token_hash=Invitation.hash_token(raw)).first()
    if invitation is None or not invitation.is_usable:
        return None
    return invitation


@transaction.atomic
def invitation_accept(
    *,
    invitation: Invitation,
    name: str,
    password: str,
    handle: str | None = None,
    language: str = Language.EN,
    timezone_name: str = "UTC",
) -> User:
    """Create the invitee's verified account and place them in their organization and groups.

    The link reached the invitee's mailbox, which proves the address: the account starts verified.
    Side effects: marks the invitation accepted (single use); locks its row against a double click.
    """
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not invitation.is_usable:
        raise ValidationError(_("This invitation was already used or has expired."))
    validate_language(language)
    validate_timezone(timezone_name)
    if handle:
        validate_handle(handle.lower())
    specs = [MembershipSpec(m["working_group"], m["role"]) for m in invitation.memberships]
    memberships = resolve_memberships(specs)
    if (
        User.objects.filter(email__iexact=invitation.email)
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
        .exists()
    ):
        raise ValidationError(_("An account with this email already exists; sign in instead."))
    from django.contrib.auth.password_validation import validate_password

    validate_password(password, User(email=invitation.email, name=name))
    user, _created = member_upsert(
        email=invitation.email,
        name=name or invitation.name,
        password=password,
        handle=handle,
        organization=invitation.organization,
        language=language,
        timezone_name=timezone_name,
        memberships=memberships,
        verified=True,
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return user


# --- API tokens -------------------------------------------------------------------------------


def api_token_create(*, member: User, name: str) -> tuple[ApiToken, str]:
    """Returns the token and its key; the key is not stored and cannot be shown again."""
    raw, key_hash = ApiToken.new_key()
    token = ApiToken(
        member=member, name=name.strip() or _("API token"), key_hash=key_hash, hint=raw[:8]
    )
    token.full_clean()
    token.save()
    return token, raw


def api_token_revoke(*, member: User, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(pk=token_id, member=member, revoked_at__isnull=True).first()
    if token is None:
        raise ValidationError(_("No such active token."))
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    return token


# A token's last use is written at most this often (one UPDATE per use would be a write on
# every API call and every socket connect).
LAST_USE_STEP = timedelta(minutes=5)


def _could_be_a_key(raw: str) -> bool:
    """Our prefix and a sane length: anything else is refused without a query."""
    return raw.startswith(ApiToken.PREFIX) and len(raw) <= 100


def api_token_member(raw: str) -> User | None:
    """The active, verified member behind a raw key, or None. Records when it was last used."""
    if not _could_be_a_key(raw):
        return None
    token = (
        # The organization rides along: every API answer about the member names it; so does
        # the verified-email check every permission asks (one query instead of two).
        ApiToken.objects.select_related("member__organization")
        .annotate(
            member_verified=Exists(
                EmailAddress.objects.filter(user_id=OuterRef("member_id"), verified=True)
            )
        )
        .filter(key_hash=ApiToken.hash_key(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.member.is_active:
        return None
    token.member.__dict__["is_verified"] = token.member_verified  # the cached_property, filled
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USE_STEP:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.member


def verified_sql(member_alias: str) -> str:
    """SQL for "the member `member_alias` has a verified email address" (`User.is_verified`),
    for a statement written out (minga.rows)."""
    return (
        f"EXISTS (SELECT 1 FROM {rows.table(EmailAddress)} e "  # noqa: S608 - names from the models
        f"WHERE e.{rows.column(EmailAddress, 'user_id')} = "
        f"{member_alias}.{rows.column(User, 'id')} AND e.{rows.column(EmailAddress, 'verified')})"
    )


@functools.cache
def _token_read() -> tuple[str, rows.Columns[User]]:
    member = rows.Columns(User, "u", ["id", "language", "is_active", "is_staff"])
    sql = (
        # Names from the models' _meta, values as parameters.
        f"SELECT t.{rows.column(ApiToken, 'id')}, "  # noqa: S608
        f"(t.{rows.column(ApiToken, 'last_used_at')} IS NULL "
        f"OR t.{rows.column(ApiToken, 'last_used_at')} < %s), "
        f"{verified_sql('u')}, "
        f"{member.sql} FROM {rows.table(ApiToken)} t JOIN {rows.table(User)} u "
        f"ON u.{rows.column(User, 'id')} = t.{rows.column(ApiToken, 'member_id')} "
        f"WHERE t.{rows.column(ApiToken, 'key_hash')} = %s "
        f"AND t.{rows.column(ApiToken, 'revoked_at')} IS NULL"
    )
    return sql, member


@functools.cache
def _member_read() -> tuple[str, rows.Columns[User]]:
    member = rows.Columns(User, "u", ["id", "password", "language", "is_active", "is_staff"])
    sql = (
        # Names from the models' _meta, values as parameters.
        f"SELECT {verified_sql('u')}, {member.sql} FROM {rows.table(User)} u "  # noqa: S608
        f"WHERE u.{rows.column(User, 'id')} = %s"
    )
    return sql, member


def member_row(member_id: int) -> User | None:
    """The member `member_id` as a partial row (id, password, language, is_active, is_staff and
    the verified check; other fields deferred) read by one statement written once, or None: the
    browser connect's read of its session user (minga.realtime.session_identity), which asked
    the ORM twice (the user, then `is_verified`), compiling both on every connect."""
    sql, columns = _member_read()
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows.param(User, "id", member_id)])
        row = cursor.fetchone()
    if row is None:
        return None
    verified, *values = row
    member = columns.instance(values)
    member.__dict__["is_verified"] = bool(verified)  # the cached_property, filled
    return member


def api_token_member_row(raw: str) -> User | None:
    """`api_token_member` for the gateway's connect: the same answer (and the same last-use
    record), with the member as a partial row (id, language, is_active, is_staff and the
    verified check; other fields deferred) read by one statement written once, not a
    queryset compiled on every connect (minga.rows)."""
    if not _could_be_a_key(raw):
        return None
    sql, columns = _token_read()
    now = timezone.now()
    stale_before = rows.param(ApiToken, "last_used_at", now - LAST_USE_STEP)
    with connection.cursor() as cursor:
        cursor.execute(sql, [stale_before, ApiToken.hash_key(raw)])
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, stale, verified, *values = row
    member = columns.instance(values)
    if not member.is_active:
        return None
    member.__dict__["is_verified"] = bool(verified)  # the cached_property, filled
    if stale:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {rows.table(ApiToken)} SET {rows.column(ApiToken, 'last_used_at')} = %s "  # noqa: S608 - names from the model
                f"WHERE {rows.column(ApiToken, 'id')} = %s",
                [rows.param(ApiToken, "last_used_at", now), token_id],
            )
    return member
