"""Form widgets whose markup is written in Python.

Django renders a widget through its form templates: a `<select>` includes one template per
option and another per attribute list, each a template lookup and a context push. On the
calendar's pages, whose filters are two selects, that was a seventh of the month page's CPU
(docs/performance.md, "H5's pages: what was left (stop 20)"). `Select` writes the markup
Django's templates write, byte for byte (tests/test_widgets.py holds it to them), from the
same widget context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.forms.renderers import BaseRenderer
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


class Select(forms.Select):
    """`forms.Select`, written as `django/forms/widgets/select.html` and `select_option.html`
    write it (a label localized and escaped as a template variable is). Grouped choices and
    other templates (a subclass's own) keep Django's rendering."""

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: BaseRenderer | None = None,
    ) -> SafeString:
        widget = self.get_context(name, value, attrs)["widget"]
        groups = widget["optgroups"]
        if (
            self.template_name != forms.Select.template_name
            or self.option_template_name != forms.Select.option_template_name
            or any(group_name for group_name, _options, _index in groups)
        ):
            return super().render(name, value, attrs, renderer)
        out = [f'<select name="{conditional_escape(widget["name"])}"{_attrs(widget["attrs"])}>']
        for _group_name, options, _index in groups:
            for option in options:
                # Each option's template ends in a newline, kept by the include.
                out.append(
                    f'\n  <option value="{conditional_escape(str(option["value"]))}"'
                    f"{_attrs(option['attrs'])}>{conditional_escape(localize(option['label']))}</option>\n"
                )
        out.append("\n</select>")
        return mark_safe("".join(out))  # noqa: S308 - every value above is escaped
