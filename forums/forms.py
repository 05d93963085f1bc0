"""Forms of the forum pages. They parse input only; the rules live in forums.services and
forums.moderation, whose errors the views show on these forms."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from minga.widgets import FileInput, HiddenInput, Textarea

from . import attachments
from .models import MAX_BODY_CHARS, REACTION_EMOJI, Report, Room
from .moderation import MAX_MUTE_MINUTES, MAX_REASON_CHARS, MAX_SLOW_MODE_SECONDS
from .services import MAX_TITLE_CHARS


class ClientIdMixin(forms.Form):
    """A hidden idempotency key made by the server: the same form submitted twice is one write."""

    client_id = forms.UUIDField(widget=HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {}).setdefault("client_id", uuid.uuid4())
        super().__init__(*args, **kwargs)


def _body_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=MAX_BODY_CHARS,
        strip=False,
        widget=Textarea(attrs={"rows": 4, "data-mention-input": ""}),
        help_text=_("Markdown: **bold**, _italic_, [link](https://…), `code`; @handle mentions."),
    )


class MultipleFileInput(FileInput):
    allow_multiple_selected = True


class FilesField(forms.FileField):
    """Any number of files (the upload limits cap them); cleaned to a list, empty when none.

    Only presence is checked here: the type and size rules live in services.attachment_upload.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class IdListField(forms.Field):
    """Ids carried in hidden inputs (attachments uploaded by an earlier, refused, try)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[int]:
        if not value:
            return []
        values = value if isinstance(value, list | tuple) else [value]
        try:
            ids = [int(v) for v in values]
        except (TypeError, ValueError) as exc:
            raise forms.ValidationError(_("Invalid attachment."), code="invalid") from exc
        if any(i < 1 for i in ids) or len(ids) > attachments.MAX_PER_MESSAGE:
            raise forms.ValidationError(_("Invalid attachment."), code="invalid")
        return ids


class MessageForm(ClientIdMixin):
    body = _body_field(_("Message"))
    reply_to = forms.IntegerField(required=False, widget=HiddenInput, min_value=1)
    attachments = IdListField(required=False)
    files = FilesField(label=_("Attach files"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        files = self.fields["files"]
        # Built per form: the limits are settings, the words in the member's language.
        files.help_text = gettext(
            "PDF, images (PNG, JPEG, GIF, WebP), text or CSV, Office or OpenDocument files: "
            "at most %(count)s files of %(size)s each."
        ) % {"count": attachments.MAX_PER_MESSAGE, "size": filesizeformat(attachments.max_bytes())}
        files.widget.attrs["data-max-bytes"] = str(attachments.max_bytes())


class ThreadForm(ClientIdMixin):
    title = forms.CharField(label=_("Title"), max_length=MAX_TITLE_CHARS)
    body = _body_field(_("First message"))


class EditForm(forms.Form):
    body = _body_field(_("Message"))


class ReactionForm(forms.Form):
    emoji = forms.ChoiceField(choices=[(e, e) for e in REACTION_EMOJI])


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), max_length=MAX_REASON_CHARS, widget=forms.Textarea(attrs={"rows": 3})
    )


class MuteForm(ReasonForm):
    DURATIONS = (
        (60, _("1 hour")),
        (24 * 60, _("1 day")),
        (7 * 24 * 60, _("1 week")),
        (30 * 24 * 60, _("30 days")),
    )
    minutes = forms.TypedChoiceField(label=_("For"), choices=DURATIONS, coerce=int, initial=24 * 60)

    field_order = ["minutes", "reason"]

    def clean_minutes(self) -> int:
        value: int = self.cleaned_data["minutes"]
        if not 1 <= value <= MAX_MUTE_MINUTES:
            raise forms.ValidationError(_("Choose one of the durations."))
        return value


class RoomSettingsForm(forms.Form):
    state = forms.ChoiceField(label=_("State"), choices=Room.State.choices)
    slow_mode_seconds = forms.IntegerField(
        label=_("Slow mode (seconds between a member's messages; 0 is off)"),
        min_value=0,
        max_value=MAX_SLOW_MODE_SECONDS,
    )


class ResolveForm(forms.Form):
    outcome = forms.ChoiceField(choices=Report.Outcome.choices)


class RoomChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.slug} · {gettext(obj.title)}"


class SearchForm(forms.Form):
    q = forms.CharField(label=_("Search for"), max_length=200, required=False)
    room = RoomChoiceField(
        label=_("Room"),
        queryset=Room.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label=_("All rooms"),
    )
    author = forms.CharField(
        label=_("Author (handle)"), max_length=60, required=False, help_text=_("For example @ana")
    )
    since = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean_author(self) -> str:
        return str(self.cleaned_data["author"]).strip().lstrip("@")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", _("The end date is before the start date."))
        return data
