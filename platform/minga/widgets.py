"""Form widgets whose markup is written in Python.

Django renders a widget through its form templates: a `<select>` includes one template per
option and another per attribute list, an `<input>` two templates, each a template lookup and
a context push. The calendar's filters (two selects) were a seventh of the month page's CPU,
and the thread page's compose form (five widgets) a twelfth of the thread page's
(docs/performance.md, "H5's pages: what was left (stop 20)"). These widgets write the markup
Django's templates write, byte for byte (tests/test_widgets.py holds them to it), from the same
widget context. They stand for Django's own templates, which Django's default form renderer
(`DjangoTemplates`) always finds first: with another renderer, or in a subclass with templates
of its own, Django renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django import forms
from django.forms.renderers import BaseRenderer, DjangoTemplates, get_default_renderer
from django.utils.formats import localize
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe


def _attrs(attrs: Mapping[str, Any]) -> str:
    """`django/forms/widgets/attrs.html`: ` name="value"` each, ` name` for True, none for
    False."""
    out = []
    for name, value in attrs.items():
        if value is False:
            continue
        if value is True:
            out.append(f" {conditional_escape(name)}")
        else:
            out.append(f' {conditional_escape(name)}="{conditional_escape(str(value))}"')
    return "".join(out)


def _shown(value: Any) -> str:
    """`{{ value }}` in a template: localized, then escaped."""
    return str(conditional_escape(localize(value)))


class _Written(forms.Widget):
    """Renders with `write` while the widget's templates are the ones `write` stands for."""

    # (template_name, option_template_name or None): Django's templates `write` writes.
    written_templates: ClassVar[tuple[str, str | None]]

    def write(self, widget: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: BaseRenderer | None = None,
    ) -> SafeString:
        template, option_template = self.written_templates
        if (
            self.template_name == template
            and getattr(self, "option_template_name", None) == option_template
            and type(renderer or get_default_renderer()) is DjangoTemplates
        ):
            context = self.get_context(name, value, attrs)
            written = self.write(context["widget"])
            if written is not None:
                return mark_safe(written)  # noqa: S308 - write escapes every value
            # `write` declined (grouped choices): Django's templates, from the same context.
            return self._render(self.template_name, context, renderer)
        return super().render(name, value, attrs, renderer)


def _input(widget: Mapping[str, Any]) -> str:
    """`django/forms/widgets/input.html`."""
    value = widget["value"]
    shown = "" if value is None else f' value="{conditional_escape(str(value))}"'
    return (
        f'<input type="{_shown(widget["type"])}" name="{_shown(widget["name"])}"'
        f"{shown}{_attrs(widget['attrs'])}>"
    )


class HiddenInput(_Written, forms.HiddenInput):
    written_templates = ("django/forms/widgets/hidden.html", None)

    def write(self, widget: dict[str, Any]) -> str:
        return _input(widget)


class FileInput(_Written, forms.FileInput):
    written_templates = ("django/forms/widgets/file.html", None)

    def write(self, widget: dict[str, Any]) -> str:
        return _input(widget)


class Textarea(_Written, forms.Textarea):
    written_templates = ("django/forms/widgets/textarea.html", None)

    def write(self, widget: dict[str, Any]) -> str:
        value = widget["value"]
        return (
            f'<textarea name="{_shown(widget["name"])}"{_attrs(widget["attrs"])}>\n'
            f"{_shown(value) if value else ''}</textarea>"
        )


class Select(_Written, forms.Select):
    """`forms.Select`; grouped choices keep Django's rendering."""

    written_templates = (
        "django/forms/widgets/select.html",
        "django/forms/widgets/select_option.html",
    )

    def write(self, widget: dict[str, Any]) -> str | None:
        groups = widget["optgroups"]
        if any(group_name for group_name, _options, _index in groups):
            return None
        out = [f'<select name="{_shown(widget["name"])}"{_attrs(widget["attrs"])}>']
        for _group_name, options, _index in groups:
            for option in options:
                # Each option's template ends in a newline, which its include keeps.
                out.append(
                    f'\n  <option value="{conditional_escape(str(option["value"]))}"'
                    f"{_attrs(option['attrs'])}>{_shown(option['label'])}</option>\n"
                )
        out.append("\n</select>")
        return "".join(out)
