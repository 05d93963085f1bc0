"""Forms for accounts, invitations and tokens. They parse; services decide and write."""

from __future__ import annotations

from typing import Any

from allauth.account.forms import SignupForm
from django import forms
from django.contrib.auth.password_validation import validate_password
from django.utils.translation import gettext_lazy as _

from .adapters import signup_domain_allowed
from .models import (
    Language,
    Organization,
    Role,
    User,
    WorkingGroup,
    available_timezones,
    validate_handle,
)


def timezone_choices() -> list[tuple[str, str]]:
    return [(tz, tz.replace("_", " ")) for tz in sorted(available_timezones())]


class DomainSignupForm(SignupForm):
    """Open sign-up, when MINGA_SIGNUP_DOMAINS allows it, for those domains only."""

    name = forms.CharField(label=_("Full name"), max_length=150)

    def clean_email(self) -> str:
        email: str = super().clean_email()
        if not signup_domain_allowed(email):
            raise forms.ValidationError(
                _(
                    "Sign-up is open to addresses of the member institutions only; for any "
                    "other address, ask the technical secretariat or a working-group chair "
                    "for an invitation."
                )
            )
        return email

    def save(self, request: Any) -> User:
        user: User = super().save(request)
        user.name = self.cleaned_data["name"]
        user.save(update_fields=["name"])
        return user


class ProfileForm(forms.Form):
    name = forms.CharField(label=_("Full name"), max_length=150)
    handle = forms.CharField(
        label=_("Handle"),
        max_length=30,
        validators=[validate_handle],
        help_text=_("Others mention you with @handle."),
    )
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)
    timezone = forms.ChoiceField(
        label=_("Time zone"),
        help_text=_("Every time in Minga is shown in this zone."),
    )

    def __init__(self, *args: Any, member: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.member = member
        self.fields["timezone"].choices = timezone_choices()

    def clean_handle(self) -> str:
        handle = self.cleaned_data["handle"].strip().lower()
        if User.objects.filter(handle=handle).exclude(pk=self.member.pk).exists():
            raise forms.ValidationError(_("That handle is taken; choose another."))
        return handle


class AcceptInvitationForm(forms.Form):
    name = forms.CharField(label=_("Full name"), max_length=150)
    handle = forms.CharField(
        label=_("Handle"),
        max_length=30,
        required=False,
        validators=[validate_handle],
        help_text=_(
            "Optional: others mention you with @handle. Leave empty to derive it from your email."
        ),
    )
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)
    timezone = forms.ChoiceField(label=_("Time zone"), initial="UTC")
    password1 = forms.CharField(
        label=_("Password"), widget=forms.PasswordInput(render_value=False), strip=False
    )
    password2 = forms.CharField(
        label=_("Password (again)"), widget=forms.PasswordInput, strip=False
    )

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email
        self.fields["timezone"].choices = timezone_choices()

    def clean_handle(self) -> str:
        handle = self.cleaned_data.get("handle", "").strip().lower()
        if handle and User.objects.filter(handle=handle).exists():
            raise forms.ValidationError(_("That handle is taken; choose another."))
        return handle

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("The two passwords differ."))
        elif p1:
            try:
                validate_password(p1, User(email=self.email, name=data.get("name", "")))
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("Email"))
    name = forms.CharField(label=_("Full name"), max_length=150, required=False)
    organization = forms.ModelChoiceField(
        label=_("Organization"), queryset=Organization.objects.all(), required=False
    )
    working_group = forms.ModelChoiceField(
        label=_("Working group"),
        queryset=WorkingGroup.objects.all(),
        required=False,
        to_field_name="slug",
    )
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)


class TokenForm(forms.Form):
    name = forms.CharField(
        label=_("Token name"),
        max_length=100,
        help_text=_("What the token is for, e.g. “reporting script”."),
    )
