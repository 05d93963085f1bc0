"""minga.widgets write the markup of Django's widget templates, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates
from django.test import override_settings
from django.utils import translation
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy
from minga import widgets
from minga.widgets import Select

from community.models import WorkingGroup

HOSTILE = "<script>alert('x')</script> & \"Q\""


def _both(choices: Any, value: Any, attrs: dict[str, Any] | None = None) -> tuple[str, str]:
    ours = Select(attrs=attrs, choices=choices).render("pick", value, {"id": "id_pick"})
    django = forms.Select(attrs=attrs, choices=choices).render("pick", value, {"id": "id_pick"})
    return str(ours), str(django)


@pytest.mark.parametrize(
    ("choices", "value", "attrs"),
    [
        ([("", "All kinds"), ("workshop", "Workshop"), ("meeting", "Meeting")], "meeting", None),
        ([("", "All kinds"), ("workshop", "Workshop")], None, None),
        ([("", "All kinds"), ("workshop", "Workshop")], "", {"required": True}),
        ([(1, "One"), (2, "Two")], 2, {"disabled": True, "data-x": False, "class": "a b"}),
        ([(HOSTILE, HOSTILE), ("safe", mark_safe("<b>bold</b>"))], HOSTILE, {"title": HOSTILE}),
        ([("lazy", gettext_lazy("Working group"))], "lazy", None),
        ([(10_000, 12_345)], 10_000, None),  # a number label is localized, as in a template
    ],
)
def test_a_select_writes_what_djangos_templates_write(
    choices: Any, value: Any, attrs: dict[str, Any] | None
) -> None:
    with (
        translation.override("es"),
        override_settings(USE_THOUSAND_SEPARATOR=True),
    ):
        ours, django = _both(choices, value, attrs)

    assert ours == django
    assert "<script>" not in ours


@pytest.mark.django_db
def test_a_model_choice_field_renders_as_django_renders_it(plan: None) -> None:
    class Filters(forms.Form):
        group = forms.ModelChoiceField(
            queryset=WorkingGroup.objects.order_by("number"),
            to_field_name="slug",
            required=False,
            empty_label="All groups",
            widget=Select(),
        )

    class Reference(Filters):
        group = forms.ModelChoiceField(
            queryset=WorkingGroup.objects.order_by("number"),
            to_field_name="slug",
            required=False,
            empty_label="All groups",
        )

    slug = WorkingGroup.objects.order_by("number").values_list("slug", flat=True)[1]
    for data in ({}, {"group": slug}, {"group": "nope"}):
        ours, django = Filters(data)["group"], Reference(data)["group"]
        assert str(ours) == str(django), data
    assert f'value="{slug}" selected' in str(Filters({"group": slug})["group"])


def test_grouped_choices_and_other_templates_keep_djangos_rendering() -> None:
    grouped = [("Americas", [("pe", "Peru"), ("br", "Brazil")]), ("", "None")]

    class Listed(Select):  # other templates: Django renders them
        template_name = "django/forms/widgets/radio.html"
        option_template_name = "django/forms/widgets/radio_option.html"

    class DjangoListed(forms.Select):
        template_name = Listed.template_name
        option_template_name = Listed.option_template_name

    ours, django = _both(grouped, "br")
    listed = str(Listed(choices=[("a", "A")]).render("pick", "a"))
    assert (ours == django, "<optgroup" in ours) == (True, True)
    assert (listed, "<label>" in listed) == (
        str(DjangoListed(choices=[("a", "A")]).render("pick", "a")),
        True,
    )


@pytest.mark.parametrize(
    ("ours", "django"),
    [
        (widgets.HiddenInput, forms.HiddenInput),
        (widgets.FileInput, forms.FileInput),
        (widgets.Textarea, forms.Textarea),
    ],
)
@pytest.mark.parametrize(
    ("value", "attrs"),
    [
        (None, None),
        ("", {"required": True}),
        ("plain", {"rows": 4, "data-mention-input": "", "maxlength": 20000}),
        (HOSTILE, {"title": HOSTILE, "disabled": True, "hidden": False}),
        ("line one\nline two", {"aria-describedby": "id_x_helptext"}),
        (12_345, None),
    ],
)
def test_inputs_and_textareas_write_what_djangos_templates_write(
    ours: type[forms.Widget], django: type[forms.Widget], value: Any, attrs: dict[str, Any] | None
) -> None:
    with translation.override("fr"), override_settings(USE_THOUSAND_SEPARATOR=True):
        written = ours(attrs=attrs).render("x", value, {"id": "id_x"})
        rendered = django(attrs=attrs).render("x", value, {"id": "id_x"})

    assert written == rendered
    assert "<script>" not in written


def test_a_multiple_file_input_and_the_compose_forms_fields_render_as_djangos() -> None:
    from forums.forms import MessageForm, MultipleFileInput

    class DjangoMultiple(forms.FileInput):
        allow_multiple_selected = True

    form = MessageForm({"body": HOSTILE, "reply_to": "7", "client_id": "not-a-uuid"})
    form.is_valid()  # bound, with errors: aria-invalid and the error ids in the attrs
    fields = {name: str(form[name]) for name in ("body", "reply_to", "client_id", "files")}
    for name, django in (
        ("body", forms.Textarea),
        ("reply_to", forms.HiddenInput),
        ("client_id", forms.HiddenInput),
        ("files", DjangoMultiple),
    ):
        # The same attributes, the field's (maxlength, data-max-bytes) included.
        form.fields[name].widget = django(attrs=dict(form.fields[name].widget.attrs))
    reference = {name: str(form[name]) for name in fields}

    assert fields == reference
    assert isinstance(MessageForm().fields["files"].widget, MultipleFileInput)
    assert "multiple" in fields["files"]


def test_another_form_renderer_renders_with_its_templates() -> None:
    class Spy(DjangoTemplates):  # a project's renderer: its templates may differ
        def __init__(self) -> None:
            super().__init__()
            self.rendered: list[str] = []

        def render(self, template_name: str, context: Any, request: Any = None) -> str:
            self.rendered.append(template_name)
            return super().render(template_name, context, request)

    renderer = Spy()
    html = widgets.HiddenInput().render("x", "1", renderer=renderer)

    assert (str(html), renderer.rendered) == (
        '<input type="hidden" name="x" value="1">',
        ["django/forms/widgets/hidden.html"],
    )
