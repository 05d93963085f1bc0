"""Members, their organizations and the working groups of the Plan of Action."""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from functools import cached_property

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone as dj_timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext
from django_countries.fields import CountryField

HANDLE_PATTERN = r"[a-z0-9](?:[a-z0-9_-]{0,28}[a-z0-9])?"

validate_handle = RegexValidator(
    rf"^{HANDLE_PATTERN}$",
    _(
        "A handle has 1 to 30 lowercase letters, digits, '-' or '_', and starts and ends "
        "with a letter or digit."
    ),
    code="invalid_handle",
)


def validate_timezone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(
            _("%(value)s is not a known time zone; use an IANA name such as America/Lima."),
            code="invalid_timezone",
            params={"value": value},
        )


_TIMEZONES: frozenset[str] | None = None


def available_timezones() -> frozenset[str]:
    global _TIMEZONES  # noqa: PLW0603 - computed once; the tz database does not change at run time
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(zoneinfo.available_timezones())
    return _TIMEZONES


class Language(models.TextChoices):
    EN = "en", "English"
    ES = "es", "Español"
    PT = "pt", "Português"
    FR = "fr", "Français"


class Constituency(models.TextChoices):
    GOVERNMENT = "government", _("Government")
    WORKERS = "workers", _("Workers")
    EMPLOYERS = "employers", _("Employers")
    OTHER = "other", _("Other")


class Organization(models.Model):
    class Kind(models.TextChoices):
        MINISTRY = "ministry", _("Ministry of labor (member state)")
        WORKERS = "workers", _("Workers' advisory body")
        EMPLOYERS = "employers", _("Employers' advisory body")
        INTERNATIONAL = "international", _("International organization")
        SECRETARIAT = "secretariat", _("Technical secretariat")

    name = models.CharField(_("name"), max_length=200, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    country = CountryField(_("country"), blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("organization")
        verbose_name_plural = _("organizations")

    def __str__(self) -> str:
        return self.name

    @property
    def constituency(self) -> str:
        """What makes a delegation a delegation: attendance is later counted by it."""
        return {
            self.Kind.MINISTRY: Constituency.GOVERNMENT,
            self.Kind.WORKERS: Constituency.WORKERS,
            self.Kind.EMPLOYERS: Constituency.EMPLOYERS,
        }.get(self.Kind(self.kind), Constituency.OTHER)

    def get_constituency_display(self) -> str:
        return str(Constituency(self.constituency).label)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        if not user.handle:
            user.handle = self.available_handle(user.email)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: object) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)

    def available_handle(self, email: str, *, exclude_pk: int | None = None) -> str:
        """A free handle derived from the email's local part: ana.perez@x -> ana-perez, ana-perez-2."""
        import re

        local = email.split("@", 1)[0].lower()
        base = re.sub(r"[^a-z0-9_-]+", "-", local).strip("-_")[:26] or "member"
        taken = set(
            self.filter(handle__startswith=base)
            .exclude(pk=exclude_pk)
            .values_list("handle", flat=True)
        )
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        return candidate


class User(AbstractBaseUser, PermissionsMixin):
    """A member of the network. Staff (`is_staff`) are the technical secretariat."""

    email = models.EmailField(_("email"), unique=True)
    name = models.CharField(_("name"), max_length=150)
    handle = models.CharField(
        _("handle"),
        max_length=30,
        unique=True,
        validators=[validate_handle],
        help_text=_("Others mention you with @handle."),
        error_messages={"unique": _("That handle is taken; choose another.")},
    )
    organization = models.ForeignKey(
        Organization,
        verbose_name=_("organization"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="members",
    )
    language = models.CharField(
        _("language"), max_length=2, choices=Language.choices, default=Language.EN
    )
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone]
    )
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(
        _("secretariat"),
        default=False,
        help_text=_("Members of the technical secretariat may do everything."),
    )
    date_joined = models.DateTimeField(_("joined"), default=dj_timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        ordering = ["name", "email"]
        verbose_name = _("member")
        verbose_name_plural = _("members")
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.name or self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()
        self.handle = (self.handle or "").lower()

    def get_full_name(self) -> str:
        return self.name

    def get_short_name(self) -> str:
        return self.name.split(" ", 1)[0] if self.name else self.email

    @property
    def initials(self) -> str:
        """Avatar initials: first letters of the first and last word of the name."""
        words = [w for w in self.name.split() if w[:1].isalpha()] or [self.email]
        letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
        return letters.upper()

    def has_perm(self, perm: str, obj: object = None) -> bool:
        # The technical secretariat may do everything (policy.py); the admin asks through here.
        if self.is_active and self.is_staff:
            return True
        return super().has_perm(perm, obj)

    def has_module_perms(self, app_label: str) -> bool:
        if self.is_active and self.is_staff:
            return True
        return super().has_module_perms(app_label)

    @cached_property
    def is_verified(self) -> bool:
        """True once the primary email address was confirmed (allauth keeps that record)."""
        from allauth.account.models import EmailAddress

        return EmailAddress.objects.filter(user=self, verified=True).exists()


class WorkingGroup(models.Model):
    slug = models.SlugField(_("slug"), max_length=20, unique=True)
    number = models.PositiveSmallIntegerField(_("number"), unique=True)
    title = models.CharField(_("title"), max_length=300)
    mandate = models.TextField(_("mandate"))

    class Meta:
        ordering = ["number"]
        verbose_name = _("working group")
        verbose_name_plural = _("working groups")

    def __str__(self) -> str:
        # "WG1" in English, "GT1" in Spanish and Portuguese, "GT1" in French: the short name
        # delegates use, in the reader's language.
        return pgettext("working group short name", "WG%(number)s") % {"number": self.number}


class CoordinatorRole(models.TextChoices):
    CHAIR = "chair", _("Chair")
    VICE_CHAIR = "vice_chair", _("Vice chair")


class Coordinator(models.Model):
    """A ministry that coordinates a working group, as the Plan of Action elected it."""

    working_group = models.ForeignKey(
        WorkingGroup, on_delete=models.CASCADE, related_name="coordinators"
    )
    country = CountryField(_("country"))
    role = models.CharField(_("role"), max_length=20, choices=CoordinatorRole.choices)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["working_group", "position"]
        constraints = [
            models.UniqueConstraint(fields=["working_group", "country"], name="coordinator_unique")
        ]

    def __str__(self) -> str:
        return f"{self.working_group} {self.get_role_display()}: {self.country.name}"


class Topic(models.Model):
    """A lettered activity of a working group; each has its forum room."""

    working_group = models.ForeignKey(WorkingGroup, on_delete=models.CASCADE, related_name="topics")
    letter = models.CharField(_("letter"), max_length=2)
    title = models.CharField(_("title"), max_length=200)
    text = models.TextField(_("full text"))

    class Meta:
        ordering = ["working_group__number", "letter"]
        verbose_name = _("topic")
        verbose_name_plural = _("topics")
        constraints = [
            models.UniqueConstraint(fields=["working_group", "letter"], name="topic_letter_unique")
        ]

    def __str__(self) -> str:
        return f"{self.working_group.slug}-{self.letter}: {self.title}"


class Role(models.TextChoices):
    CHAIR = "chair", _("Chair")
    VICE_CHAIR = "vice_chair", _("Vice chair")
    MEMBER = "member", _("Member")
    OBSERVER = "observer", _("Observer")


ORGANIZER_ROLES = frozenset({Role.CHAIR, Role.VICE_CHAIR})
POSTING_ROLES = frozenset({Role.CHAIR, Role.VICE_CHAIR, Role.MEMBER})


class Membership(models.Model):
    member = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    working_group = models.ForeignKey(
        WorkingGroup, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["working_group__number", "member__name"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["member", "working_group"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member} in {self.working_group} ({self.role})"


def _hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class Invitation(models.Model):
    """An invitation by email; the link proves the address, so accepting verifies it."""

    email = models.EmailField(_("email"))
    name = models.CharField(_("name"), max_length=150, blank=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # [{"working_group": "wg1", "role": "member"}, ...]: applied when accepted.
    memberships = models.JSONField(default=list, blank=True)
    invited_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="invitations_sent"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")

    def __str__(self) -> str:
        return self.email

    @staticmethod
    def new_token() -> tuple[str, str]:
        raw = secrets.token_urlsafe(32)
        return raw, _hash_secret(raw)

    @staticmethod
    def hash_token(raw: str) -> str:
        return _hash_secret(raw)

    @property
    def is_usable(self) -> bool:
        return self.accepted_at is None and self.expires_at > dj_timezone.now()


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the key is shown once."""

    PREFIX = "mga_"

    member = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=12, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @classmethod
    def new_key(cls) -> tuple[str, str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)  # 256 bits
        return raw, _hash_secret(raw)

    @staticmethod
    def hash_key(raw: str) -> str:
        return _hash_secret(raw)
