"""forums.rendering: Markdown to HTML that nothing active survives."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forums import rendering
from forums.rendering import (
    candidate_handles,
    render,
    render_markdown,
    sanitize_html,
)

ACTIVE_TAGS = frozenset(
    {"script", "iframe", "object", "embed", "svg", "math", "style", "link", "meta", "base"}
    | {"form", "input", "img", "video", "audio", "body", "details", "frame", "frameset"}
)
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href", "data"})
BAD_SCHEMES = ("javascript:", "vbscript:", "data:")


class _Inspector(HTMLParser):
    """Collects what a browser would treat as active in an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"{tag}[{name}]")
            # Browsers drop whitespace and control characters inside a scheme.
            compact = "".join(ch for ch in (value or "") if ch > " ").lower()
            if name in URL_ATTRIBUTES and compact.startswith(BAD_SCHEMES):
                self.found.append(f"{tag}[{name}={compact[:20]}]")

    handle_startendtag = handle_starttag


def active_parts(html: str) -> list[str]:
    """Tags, event handlers and script URLs that survived; [] for inert HTML."""
    inspector = _Inspector()
    inspector.feed(html)
    inspector.close()
    found = inspector.found
    if "<script" in html.lower():
        found.append("<script")
    return found


XSS_CORPUS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1))",
    "[click](javascript&#58;alert(1))",
    "[click](&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1))",
    "[click](&#x6A;avascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '![x" onerror="alert(1)](http://example.org/a.png)',
    '[x](http://example.org/" onmouseover="alert(1))',
    "[x][ref]\n\n[ref]: javascript:alert(1)",
    "<javascript:alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<body onload="alert(1)">',
    '<input autofocus onfocus="alert(1)">',
    "<details open ontoggle=alert(1)>",
    '<math><mtext><table><mglyph><style><img src=x onerror="alert(1)">',
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "<!--<script>alert(1)</script>-->",
    '<a href="&#x6A;avascript:alert(1)">x</a>',
    "[a](<javascript:alert(1)>)",
    '<object data="data:text/html,<script>alert(1)</script>">',
    "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>",
    "**bold** <b onclick=alert(1)>b</b>",
]


def test_xss_corpus_has_at_least_25_payloads() -> None:
    assert len(XSS_CORPUS) >= 25


@pytest.mark.parametrize(
    ("html", "found"),
    [
        ('<a href=" java\tscript:x()">x</a>', ["a[href=javascript:x()]"]),
        ('<img src="x" onerror="y()">', ["<img>", "img[onerror]"]),
        ("<p>&lt;script&gt; onerror=x</p>", []),
    ],
)
def test_active_parts_detects_what_browsers_run(html: str, found: list[str]) -> None:
    # The checker itself must be able to fail, or the corpus below proves nothing.
    assert active_parts(html) == found


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_render_markdown_xss_payload_leaves_nothing_active(payload: str) -> None:
    html = render_markdown(payload)

    assert active_parts(html) == []


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_sanitize_html_xss_payload_leaves_nothing_active(payload: str) -> None:
    html = sanitize_html(payload)

    assert active_parts(html) == []


def test_render_markdown_script_is_shown_as_text() -> None:
    assert render_markdown("<script>alert(1)</script>") == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"
    )


def test_render_markdown_link_gets_rel_and_no_target() -> None:
    html = render_markdown("[OAS](https://www.oas.org/)")

    assert html == '<p><a href="https://www.oas.org/" rel="nofollow noopener">OAS</a></p>\n'


def test_render_markdown_javascript_link_stays_text() -> None:
    assert render_markdown("[x](javascript:alert(1))") == "<p>[x](javascript:alert(1))</p>\n"


def test_render_markdown_image_becomes_link() -> None:
    html = render_markdown("![chart](https://example.org/c.png)")

    assert html == '<p><a href="https://example.org/c.png" rel="nofollow noopener">chart</a></p>\n'


def test_render_markdown_keeps_basic_formatting() -> None:
    source = "# Title\n\n- *one*\n- **two**\n\n> quote\n\n```\ncode <b>\n```\n\n~~old~~"

    html = render_markdown(source)

    assert html == (
        "<h1>Title</h1>\n<ul>\n<li><em>one</em></li>\n<li><strong>two</strong></li>\n</ul>\n"
        "<blockquote>\n<p>quote</p>\n</blockquote>\n<pre><code>code &lt;b&gt;\n</code></pre>\n"
        "<p><s>old</s></p>\n"
    )


def test_render_known_handle_becomes_mention() -> None:
    rendered = render("Hi @Ana, and @ana again; @bob", handles={"ana": 7})

    assert rendered.html == (
        '<p>Hi <span class="mention" data-member-id="7">@Ana</span>, and '
        '<span class="mention" data-member-id="7">@ana</span> again; @bob</p>\n'
    )
    assert rendered.mentioned_ids == (7,)


def test_render_handle_in_code_or_link_is_not_mention() -> None:
    rendered = render("`@ana` [@ana](https://x.example/) mail ana@x.example", handles={"ana": 7})

    assert rendered.mentioned_ids == ()
    assert "mention" not in rendered.html


def test_candidate_handles_skips_emails_and_lowercases() -> None:
    assert candidate_handles("@Ana, @bob-2 and x@y.org @-no") == {"ana", "bob-2"}


def test_sanitize_html_user_span_class_is_dropped() -> None:
    # Only the renderer makes mention spans; a forged class or attribute does not pass nh3.
    html = sanitize_html('<span class="evil mention" style="color:red" onclick="x()">hi</span>')

    assert html == '<span class="mention">hi</span>'


# --- Properties -------------------------------------------------------------------------------

HTML_PIECES = [
    *"<>/=\"' &#;:()[]!*_`\n\\",
    *("a", "b", "x", "1", "@", "ana", "script", "img", "svg", "onerror", "onload", "href"),
    *("src", "javascript", "JaVaScRiPt", "data", "vbscript", "&#106;", "&#x6A;", "\t"),
    *("style", "iframe", "span", "class", "mention", "http://e.x/", "%0a", "&colon;"),
]
# Strings made of the pieces attackers combine, plus arbitrary text.
HTMLISH = st.one_of(
    st.lists(st.sampled_from(HTML_PIECES), max_size=60).map("".join),
    st.text(max_size=80),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HTMLISH)
def test_sanitize_html_twice_changes_nothing(source: str) -> None:
    once = sanitize_html(source)

    assert sanitize_html(once) == once


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HTMLISH)
def test_render_markdown_output_is_stable_and_inert(source: str) -> None:
    html = render_markdown(source, handles={"ana": 1})

    assert sanitize_html(html) == html
    assert active_parts(html) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HTMLISH)
def test_sanitize_html_any_input_is_inert(source: str) -> None:
    assert active_parts(sanitize_html(source)) == []


# --- A plain line skips Markdown's parse, and renders as Markdown would ---------------------------

PLAIN_CHARACTERS = "abZéñçÃœßж09٣ ,.;:?!¿¡«»\u2019'\"()/%+=|$-"
# And what opens Markdown constructs, or could: the property below must hold across both.
MARKDOWN_CHARACTERS = PLAIN_CHARACTERS + "*_~`[]<>&\\@#\n\t\r\x00\xa0"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=MARKDOWN_CHARACTERS, max_size=30))
@example("a *b*")
@example("a _b_ c")
@example("a ~~b~~")
@example("a `b`")
@example("a [b](http://example.org)")
@example("a ![b](c)")
@example("1. a")
@example("a &amp; b")
@example("a <b>c</b>")
@example("a\\*b*")
@example("a\n\nb")
@example("a\n===")
@example("a  \nb")
@example("a |b|\n|-|-|")
@example("a b  ")
@example("a\xa0")
@example("Ana @ana")
def test_render_any_line_is_what_markdown_renders(source: str) -> None:
    assert render(source, handles={"ana": 7}) == rendering._render_markdown(source, {"ana": 7})


@given(
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from("aZéж¿¡«\"'("),
        st.text(alphabet=PLAIN_CHARACTERS, max_size=40).filter(lambda t: not t.endswith(" ")),
    )
)
def test_render_plain_line_takes_the_short_path_to_the_same_html(source: str) -> None:
    assert rendering._PLAIN_LINE.fullmatch(source)
    assert render(source) == rendering._render_markdown(source, None)


def test_render_plain_line_needs_no_markdown_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering._MD, "parse", lambda *a, **k: pytest.fail("parsed"))

    rendered = render('Reunión del GT1: "agenda" (v2) a las 10:30, ¿confirmado? Sí!')

    assert rendered.html == '<p>Reunión del GT1: "agenda" (v2) a las 10:30, ¿confirmado? Sí!</p>\n'
    assert rendered.mentioned_ids == ()


def test_sanitize_html_is_the_same_from_several_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    sources = [f'<p onclick="x">{n}<script>alert({n})</script></p>' for n in range(200)]
    with ThreadPoolExecutor(4) as pool:
        cleaned = list(pool.map(sanitize_html, sources))

    assert cleaned == [f"<p>{n}</p>" for n in range(200)]
