"""factory_boy factories and the member fixtures most tests start from."""

from __future__ import annotations

import factory
import pytest
from allauth.account.models import EmailAddress

from community.models import Membership, Organization, Role, User, WorkingGroup

PASSWORD = "correct-horse-battery-9"


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Ministry of Labor {n}")
    kind = Organization.Kind.MINISTRY
    country = "BR"


class UserFactory(factory.django.DjangoModelFactory):
    """A verified, active member with PASSWORD; `verified=False` leaves the email unconfirmed."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"member{n}@example.org")
    name = factory.Faker("name")
    handle = factory.Sequence(lambda n: f"member{n}")
    organization = factory.SubFactory(OrganizationFactory)
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def verified(self, create: bool, extracted: bool | None, **kwargs: object) -> None:
        if create and extracted is not False:
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)
        elif create:
            EmailAddress.objects.create(user=self, email=self.email, verified=False, primary=True)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    member = factory.SubFactory(UserFactory)
    working_group = factory.LazyFunction(lambda: WorkingGroup.objects.get(slug="wg1"))
    role = Role.MEMBER


@pytest.fixture
def member(plan: None) -> User:
    """A verified member of wg1 from a ministry."""
    user = UserFactory(email="ana@trabajo.example", name="Ana Pérez", handle="ana")
    MembershipFactory(member=user, role=Role.MEMBER)
    return user


@pytest.fixture
def secretariat(plan: None) -> User:
    return UserFactory(
        email="sec@oas.example",
        name="Sofía Herrera",
        handle="sofia",
        is_staff=True,
        organization=OrganizationFactory(
            name="OAS Technical Secretariat", kind=Organization.Kind.SECRETARIAT, country=""
        ),
    )


@pytest.fixture
def chair(plan: None) -> User:
    """Chair of wg1 (Brazil's ministry)."""
    user = UserFactory(email="chair@trabalho.example", name="João Carvalho", handle="joao")
    MembershipFactory(member=user, role=Role.CHAIR)
    return user
