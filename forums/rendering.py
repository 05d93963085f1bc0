"""Markdown to safe HTML, rendered once when a message is written (and again when edited).

Two layers, so one mistake is not enough: markdown-it-py in its safe preset ("js-default": no raw
HTML, dangerous link schemes refused by its link validator), then nh3 (ammonia) with an explicit
allow-list of tags, attributes, classes and URL schemes. Links get rel="nofollow noopener" and no
target. Images become plain links to the image: the CSP serves images only from this site, and a
remote image would also tell its server who reads the forum.

`@handle` mentions are resolved by the caller (the service knows the members); the renderer turns
the handles it is given into `<span class="mention" data-member-id="ID">@handle</span>` outside
code and links, and leaves every other `@word` as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "del",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "span",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "span": {"data-member-id"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
ALLOWED_CLASSES: dict[str, set[str]] = {"span": {"mention"}}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener"
# Tags whose content is dropped with them, not kept as text (markdown-it escapes raw HTML, so
# these only matter for HTML that reached the sanitizer some other way).
CLEAN_CONTENT_TAGS: frozenset[str] = frozenset({"script", "style"})

# `@handle` as community.models.HANDLE_PATTERN spells handles, not inside a word or an address.
MENTION_RE = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9](?:[A-Za-z0-9_-]{0,28}[A-Za-z0-9])?)(?![\w@-])")


def candidate_handles(source: str) -> set[str]:
    """Every `@handle`-shaped word of `source`, lowercased: what the service looks up."""
    return {m.group(1).lower() for m in MENTION_RE.finditer(source)}


# The allow-list, built once: `nh3.clean` builds its sanitizer from the options on every call.
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(CLEAN_CONTENT_TAGS),
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    allowed_classes={tag: set(classes) for tag, classes in ALLOWED_CLASSES.items()},
    url_schemes=set(URL_SCHEMES),
    link_rel=LINK_REL,
    strip_comments=True,
)

# A plain line: one line of letters, digits, spaces and the punctuation below, opening with a
# letter or with an opening mark, and not ending in a space. None of its characters opens a
# Markdown construct (no emphasis, code, link, image, entity, escape, HTML, mention or heading
# mark, no line break), and its first cannot start a list, quote, rule or code block, so
# Markdown renders it as one paragraph of its own text. Most chat messages are such a line.
_PLAIN_LINE = re.compile(r"(?:[^\W\d_]|[¿¡«\"'(])(?:[^\W_]|[ ,.;:?!¿¡«»\u2019'\"()/%+=|$-])*(?<! )")


def sanitize_html(html: str) -> str:
    """The allow-list pass: nothing but the tags, attributes, classes and schemes above survive."""
    return _CLEANER.clean(html)


def _render_image_as_link(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    src = escapeHtml(str(token.attrGet("src") or ""))
    alt = escapeHtml(self.renderInlineAsText(token.children or [], options, env))
    return f'<a href="{src}">{alt or src}</a>'


def _markdown() -> MarkdownIt:
    md = MarkdownIt("js-default").enable("table").enable("strikethrough")
    md.add_render_rule("image", _render_image_as_link)
    return md


_MD = _markdown()


@dataclass(frozen=True)
class Rendered:
    html: str
    mentioned_ids: tuple[int, ...]  # in order of first appearance, each once


def _mention_tokens(text: str, handles: Mapping[str, int], found: list[int]) -> list[Token] | None:
    """Split a text token's content at known mentions; None when there is none to split."""
    pieces: list[Token] = []
    last = 0
    for match in MENTION_RE.finditer(text):
        member_id = handles.get(match.group(1).lower())
        if member_id is None:
            continue
        if match.start() > last:
            pieces.append(_text_token(text[last : match.start()]))
        html = (
            f'<span class="mention" data-member-id="{int(member_id)}">'
            f"@{escapeHtml(match.group(1))}</span>"
        )
        span = Token("html_inline", "", 0)
        span.content = html
        pieces.append(span)
        if member_id not in found:
            found.append(member_id)
        last = match.end()
    if not pieces:
        return None
    if last < len(text):
        pieces.append(_text_token(text[last:]))
    return pieces


def _text_token(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def render(source: str, *, handles: Mapping[str, int] | None = None) -> Rendered:
    """Render Markdown `source`; `handles` maps lowercased handles to member ids to mention.

    A plain line (`_PLAIN_LINE`: no Markdown and no `@`) is its own paragraph, still through
    the allow-list, without Markdown's parse: 81 us of a post's CPU became about 25
    (docs/performance.md, "A plain line's render"); the tests hold both paths to the same HTML.
    """
    if _PLAIN_LINE.fullmatch(source):
        return Rendered(html=sanitize_html(f"<p>{source}</p>\n"), mentioned_ids=())
    return _render_markdown(source, handles)


def _render_markdown(source: str, handles: Mapping[str, int] | None) -> Rendered:
    tokens = _MD.parse(source)
    found: list[int] = []
    if handles:
        for block in tokens:
            if block.type != "inline" or not block.children:
                continue
            children: list[Token] = []
            in_link = 0
            for child in block.children:
                if child.type == "link_open":
                    in_link += 1
                elif child.type == "link_close":
                    in_link -= 1
                replaced = (
                    _mention_tokens(child.content, handles, found)
                    if child.type == "text" and not in_link
                    else None
                )
                children.extend(replaced if replaced is not None else [child])
            block.children = children
    html = _MD.renderer.render(tokens, _MD.options, {})
    return Rendered(html=sanitize_html(html), mentioned_ids=tuple(found))


def render_markdown(source: str, *, handles: Mapping[str, int] | None = None) -> str:
    """Sanitized HTML of Markdown `source` (see the module docstring)."""
    return render(source, handles=handles).html
