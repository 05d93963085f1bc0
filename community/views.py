"""Pages of the community: dashboard, working groups, account settings, invitations, tokens."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Prefetch
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language as django_set_language

from . import policy, selectors, services
from .forms import AcceptInvitationForm, InvitationForm, ProfileForm, TokenForm
from .models import Language, Membership, Role, Topic, User, WorkingGroup


def add_service_errors(form: Form, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: under its field when the form has one."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@login_required
def working_group_list(request: HttpRequest) -> HttpResponse:
    groups = WorkingGroup.objects.annotate(
        topic_count=Count("topics", distinct=True), member_count=Count("memberships", distinct=True)
    ).prefetch_related("coordinators")
    roles = policy.roles_of(request.user)
    return render(
        request, "community/working_group_list.html", {"working_groups": groups, "roles": roles}
    )


@login_required
def working_group_detail(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(
        WorkingGroup.objects.prefetch_related(
            "coordinators",
            Prefetch("topics", queryset=Topic.objects.select_related("room")),
        ),
        slug=slug,
    )
    memberships = list(selectors.delegation_members(working_group_id=group.pk))
    delegations: dict[str, list[Membership]] = defaultdict(list)
    for membership in memberships:
        org = membership.member.organization
        delegations[org.name if org else _("Individual members")].append(membership)
    my_role = policy.role_in(request.user, group.pk)
    context = {
        "group": group,
        "delegations": sorted(delegations.items()),
        "member_total": len(memberships),
        "my_role": my_role,
        "my_role_label": Role(my_role).label if my_role else None,
        "joining_role": None if my_role else policy.joining_role(request.user),
        "can_manage": policy.can_manage_members(request.user, group.pk),
    }
    return render(request, "community/working_group_detail.html", context)


@login_required
@require_POST
def working_group_join(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(WorkingGroup, slug=slug)
    try:
        membership = services.working_group_join(member=request.user, working_group=group)  # type: ignore[arg-type]
    except PermissionDenied as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            _("You joined %(group)s as %(role)s.")
            % {"group": group, "role": membership.get_role_display().lower()},
        )
    return redirect("working_group_detail", slug=group.slug)


@login_required
@require_POST
def working_group_leave(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(WorkingGroup, slug=slug)
    services.working_group_leave(member=request.user, working_group=group)  # type: ignore[arg-type]
    messages.success(request, _("You left %(group)s.") % {"group": group})
    return redirect("working_group_detail", slug=group.slug)


@login_required
def account_settings(request: HttpRequest) -> HttpResponse:
    member: User = request.user  # type: ignore[assignment]
    initial = {
        "name": member.name,
        "handle": member.handle,
        "language": member.language,
        "timezone": member.timezone,
    }
    form = ProfileForm(request.POST or None, member=member, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.profile_update(
                member=member,
                name=form.cleaned_data["name"],
                handle=form.cleaned_data["handle"],
                language=form.cleaned_data["language"],
                timezone_name=form.cleaned_data["timezone"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Your profile was saved."))
            response = redirect("account_settings")
            response.set_cookie(
                "django_language", member.language, samesite="Lax", max_age=365 * 24 * 3600
            )
            return response
    return render(request, "community/account_settings.html", {"form": form})


@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    member: User = request.user  # type: ignore[assignment]
    form = TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        _token, new_key = services.api_token_create(member=member, name=form.cleaned_data["name"])
        form = TokenForm()
    tokens = member.api_tokens.filter(revoked_at__isnull=True)
    response = render(
        request, "community/api_tokens.html", {"form": form, "tokens": tokens, "new_key": new_key}
    )
    response["Cache-Control"] = "no-store"  # the new key is on this page once
    return response


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = services.api_token_revoke(member=request.user, token_id=token_id)  # type: ignore[arg-type]
    except ValidationError:
        messages.error(request, _("That token does not exist or was already revoked."))
    else:
        messages.success(request, _("The token “%(name)s” was revoked.") % {"name": token.name})
    return redirect("api_tokens")


@login_required
def invitation_create(request: HttpRequest) -> HttpResponse:
    if not policy.can_invite(request.user):
        raise PermissionDenied
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        memberships = [(data["working_group"], data["role"])] if data["working_group"] else []
        try:
            services.invitation_create(
                email=data["email"],
                name=data["name"],
                organization=data["organization"],
                memberships=memberships,
                invited_by=request.user,  # type: ignore[arg-type]
                base_url=request.build_absolute_uri("/"),
            )
        except PermissionDenied as error:
            form.add_error("working_group", str(error))
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request, _("An invitation was sent to %(email)s.") % {"email": data["email"]}
            )
            return redirect("invitation_create")
    return render(
        request,
        "community/invitation_form.html",
        {"form": form, "days": settings.MINGA_INVITATION_DAYS},
    )


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.invitation_for_token(token)
    if invitation is None:
        return render(request, "community/invitation_invalid.html", status=404)
    language = request.LANGUAGE_CODE if request.LANGUAGE_CODE in Language.values else "en"
    form = AcceptInvitationForm(
        request.POST or None,
        email=invitation.email,
        initial={"name": invitation.name, "language": language, "timezone": "UTC"},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            member = services.invitation_accept(
                invitation=invitation,
                name=data["name"],
                password=data["password1"],
                handle=data["handle"] or None,
                language=data["language"],
                timezone_name=data["timezone"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            login(request, member, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome to Minga, %(name)s.") % {"name": member.name})
            return redirect("dashboard")
    return render(
        request, "community/invitation_accept.html", {"form": form, "invitation": invitation}
    )


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's set_language, which also remembers the choice on a signed-in member's profile."""
    code = request.POST.get("language", "")
    if request.user.is_authenticated and code in Language.values:
        User.objects.filter(pk=request.user.pk).update(language=code)
        request.user.language = code  # type: ignore[union-attr]
    response = django_set_language(request)
    if isinstance(response, HttpResponseRedirect) and not response.url:
        return redirect(reverse("home"))
    return response
