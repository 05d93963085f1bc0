"""UPLOADS: hostile files through every upload path, and how stored files are served.

One corpus (wrong magic bytes for the extension, SVG and HTML with script, polyglots, a file of
the limit + 1 byte, an empty file, path traversal, control characters, an RTL override and very
long names, double extensions, content-type lies, archives and a zip bomb) goes through the four
ways a file enters Minga: the forum's message form and its API, and the event documents page
and its API. The multipart bodies are written by hand, so the hostile file name reaches the
server byte for byte (Django's test client would strip its directory part first).

A stored file counts as unsafe when its type is not the allow-listed type its bytes sniff as,
its storage name is not a generated one, its bytes differ from what was sent, or its display
name could escape (a separator, a control or format character, a leading dot, over 150
characters, an extension of another type). A refused file is unsafe when it leaves a row or a
byte in storage. Every row of the table also states the exact outcome expected, so a changed
rule fails here even when the result is still "safe".

Every stored file is then downloaded: `Content-Disposition: attachment`, `nosniff`, the stored
type (never the client's), a sandboxing CSP and the bytes sent. Files a member may not read
answer exactly as a missing one.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.db.models import Max
from django.test import Client

from community.models import Role, User, WorkingGroup
from events import services as event_services
from events.models import Event, EventDocument
from forums import attachments, services
from forums.attachments import EXTENSIONS, sniff
from forums.models import Attachment, Room, Thread
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory
from tests.reliability.support import report

pytestmark = pytest.mark.django_db

LIMIT = 64 * 1024  # FORUMS_ATTACHMENT_MAX_BYTES here: limit + 1 stays cheap to send
BOUNDARY = "minga-hostile-upload-boundary"

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><circle r="4"/></svg>'
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48 + b"PE\x00\x00"
OOXML_MAIN = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _content_types(main: bytes) -> bytes:
    return (
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        b'content-types"><Override PartName="/word/document.xml" ContentType="'
        + main
        + b'"/></Types>'
    )


# 16 MiB of blanks before the marker: a few KiB compressed, far past what sniff() decompresses.
ZIP_BOMB = _zip([("[Content_Types].xml", b" " * (16 * 1024 * 1024) + _content_types(OOXML_MAIN))])
DOCM = _zip(
    [
        (
            "[Content_Types].xml",
            _content_types(b"application/vnd.ms-word.document.macroEnabled.main+xml"),
        ),
        ("word/document.xml", b"<w:document/>"),
    ]
)
PLAIN_ZIP = _zip([("payload.html", HTML), ("run.exe", EXE)])
TEXT, PDF_T, PNG_T, GIF_T, JPEG_T = (
    attachments.TEXT,
    attachments.PDF,
    attachments.PNG,
    attachments.GIF,
    attachments.JPEG,
)


@dataclass(frozen=True)
class Hostile:
    label: str
    name: str
    data: bytes
    client_type: str
    # None: refused everywhere; else (sniffed type, display name) stored everywhere.
    expect: tuple[str, str] | None


CORPUS: tuple[Hostile, ...] = (
    # Wrong magic bytes for the extension.
    Hostile("HTML named .pdf", "report.pdf", HTML, "application/pdf", None),
    Hostile("SVG named .png", "chart.png", SVG, "image/png", None),
    Hostile(
        "JS named .png", "pic.png", b"alert(document.cookie)//", "image/png", (TEXT, "pic.png.txt")
    ),
    Hostile("EXE named .pdf", "invoice.pdf", EXE, "application/pdf", None),
    # Active content in its own clothes.
    Hostile("SVG with script", "logo.svg", SVG, "image/svg+xml", None),
    Hostile(
        "SVG with XML prolog", "logo.svg", b'<?xml version="1.0"?>\n' + SVG, "image/svg+xml", None
    ),
    Hostile("HTML behind a UTF-8 BOM", "notes.txt", b"\xef\xbb\xbf" + HTML, "text/plain", None),
    Hostile("HTML behind blanks", "notes.txt", b" \r\n\t" + HTML, "text/plain", None),
    Hostile(
        "HTML in UTF-16",
        "notes.txt",
        "\ufeff<html><script>alert(1)</script>".encode("utf-16-le"),
        "text/plain",
        None,
    ),
    # Polyglots: allowed magic bytes with markup behind them.
    Hostile("PDF+HTML polyglot", "poly.html", PDF + HTML, "text/html", (PDF_T, "poly.html.pdf")),
    Hostile(
        "GIF+JS polyglot",
        "x.js",
        b"GIF89a/*\x00\x00*/=alert(1);",
        "application/javascript",
        (GIF_T, "x.js.gif"),
    ),
    Hostile(
        "JPEG+HTML polyglot",
        "photo.jpg",
        b"\xff\xd8\xff\xe0" + HTML,
        "text/html",
        (JPEG_T, "photo.jpg"),
    ),
    # Size.
    Hostile(
        "limit + 1 byte", "big.pdf", PDF + b"\x00" * (LIMIT + 1 - len(PDF)), "application/pdf", None
    ),
    Hostile("zero bytes", "empty.pdf", b"", "application/pdf", None),
    # Names.
    Hostile(
        "path traversal (/)",
        "../../../../etc/cron.d/x.pdf",
        PDF,
        "application/pdf",
        (PDF_T, "x.pdf"),
    ),
    Hostile(
        "path traversal (\\)",
        "..\\..\\windows\\win.ini.pdf",
        PDF,
        "application/pdf",
        (PDF_T, "win.ini.pdf"),
    ),
    Hostile(
        "absolute path",
        "/var/www/minga/static/evil.pdf",
        PDF,
        "application/pdf",
        (PDF_T, "evil.pdf"),
    ),
    Hostile(
        "NUL and BEL in the name", "a\x00b\x07c.pdf", PDF, "application/pdf", (PDF_T, "abc.pdf")
    ),
    Hostile(
        "CRLF header injection in the name",
        'x.pdf"\r\nContent-Type: text/html\r\nX: "y',
        PDF,
        "application/pdf",
        (PDF_T, "x.pdf"),
    ),
    Hostile(
        "percent-encoded CRLF (as browsers send it)",
        "x%0D%0AContent-Type%3A text%2Fhtml.pdf",
        PDF,
        "application/pdf",
        (PDF_T, "x%0D%0AContent-Type%3A text%2Fhtml.pdf"),
    ),
    Hostile(
        "RTL override",
        "invoice\u202egpj.exe",
        PDF,
        "application/pdf",
        (PDF_T, "invoicegpj.exe.pdf"),
    ),
    Hostile(
        "zero-width and bidi marks",
        "re\u200bport\u200f\u2066.pdf",
        PDF,
        "application/pdf",
        (PDF_T, "report.pdf"),
    ),
    Hostile(
        "very long name", "a" * 400 + ".pdf", PDF, "application/pdf", (PDF_T, "a" * 146 + ".pdf")
    ),
    Hostile("only dots", "...", PDF, "application/pdf", (PDF_T, "attachment.pdf")),
    Hostile(
        "dot file",
        ".htaccess",
        b"AddType application/x-httpd-php .png\n",
        "text/plain",
        (TEXT, "htaccess.txt"),
    ),
    # Double extensions.
    Hostile(
        "double extension .pdf.exe",
        "report.pdf.exe",
        PDF,
        "application/octet-stream",
        (PDF_T, "report.pdf.exe.pdf"),
    ),
    Hostile(
        "double extension .php.png", "shell.php.png", PNG, "image/png", (PNG_T, "shell.php.png")
    ),
    # Content-type lies.
    Hostile("PNG sent as text/html", "pic.png", PNG, "text/html", (PNG_T, "pic.png")),
    Hostile(
        "text sent as image/svg+xml",
        "page.html",
        b"hello, world\n",
        "image/svg+xml",
        (TEXT, "page.html.txt"),
    ),
    # Archives.
    Hostile("zip archive", "bundle.zip", PLAIN_ZIP, "application/zip", None),
    Hostile("zip named .docx", "bundle.docx", PLAIN_ZIP, attachments.DOCX, None),
    Hostile("macro-enabled Word (docm as docx)", "macro.docx", DOCM, attachments.DOCX, None),
    Hostile("zip bomb (16 MiB content types)", "bomb.docx", ZIP_BOMB, attachments.DOCX, None),
    # Text that is not text.
    Hostile("NUL inside text", "a.txt", b"hello\x00world", "text/plain", None),
    Hostile("invalid UTF-8", "a.txt", b"caf\xe9 cr\xe8me", "text/plain", None),
)
# A control at the limit: accepted, so a refusal above is the limit and not the type.
AT_LIMIT = Hostile(
    "exactly the limit",
    "limit.pdf",
    PDF + b"\x00" * (LIMIT - len(PDF)),
    "application/pdf",
    (PDF_T, "limit.pdf"),
)

_STORAGE_NAME = re.compile(r"^(attachments|event-documents)/\d{4}/\d{2}/[0-9a-f]{32}$")


def multipart(fields: dict[str, str], file_field: str, item: Hostile) -> bytes:
    """A multipart body with `item`'s file name exactly as given (quotes, CR/LF and all)."""
    out = b""
    for key, value in fields.items():
        out += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        ).encode()
    out += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="'.encode()
        + item.name.encode("utf-8")
        + f'"\r\nContent-Type: {item.client_type}\r\n\r\n'.encode()
        + item.data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return out


@dataclass(frozen=True)
class Way:
    """One way in: where to post, the form fields beside the file, and what a stored file is."""

    name: str
    url: str
    fields: Callable[[int], dict[str, str]]
    file_field: str
    client: Client
    reader: Client
    model: type[Attachment] | type[EventDocument]
    download: Callable[[int], str]


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _fetch(client: Client, url: str) -> tuple[Any, bytes]:
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def _media_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _unsafe_name(name: str, content_type: str) -> list[str]:
    problems = []
    if "/" in name or "\\" in name:
        problems.append("separator")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        problems.append("control/format character")
    if name.startswith(".") or len(name) > attachments.MAX_NAME_CHARS:
        problems.append("leading dot or too long")
    if not name.lower().endswith(EXTENSIONS.get(content_type, ("\0",))):
        problems.append("extension of another type")
    return problems


def _stored_problems(row: Attachment | EventDocument, sent: bytes) -> list[str]:
    problems = _unsafe_name(row.original_name, row.content_type)
    with row.file.storage.open(row.file.name, "rb") as handle:
        stored = handle.read()
        sniffed = sniff(handle, name=row.original_name)
    if row.content_type not in EXTENSIONS or sniffed != row.content_type:
        problems.append(f"type {row.content_type!r}, bytes sniff as {sniffed!r}")
    if not _STORAGE_NAME.match(row.file.name):
        problems.append(f"storage name {row.file.name!r}")
    if stored != sent:
        problems.append("stored bytes differ")
    return problems


def _download_problems(response: Any, body: bytes, row: Attachment | EventDocument) -> list[str]:
    problems = []
    expected_type = row.content_type + (
        "; charset=utf-8" if row.content_type.startswith("text/") else ""
    )
    disposition = response.get("Content-Disposition", "")
    if response.status_code != 200:
        problems.append(f"status {response.status_code}")
    if not disposition.startswith("attachment;") or "\r" in disposition or "\n" in disposition:
        problems.append(f"Content-Disposition {disposition!r}")
    if response.get("X-Content-Type-Options") != "nosniff":
        problems.append("no nosniff")
    if response.get("Content-Type") != expected_type:
        problems.append(f"Content-Type {response.get('Content-Type')!r}")
    if "sandbox" not in response.get("Content-Security-Policy", ""):
        problems.append("no sandbox CSP")
    with row.file.storage.open(row.file.name, "rb") as handle:
        if body != handle.read():
            problems.append("body differs")
    return problems


def _same_as_missing(client: Client, url: str, missing_url: str, ids: tuple[str, str]) -> bool:
    """The denial equals a missing id's answer: status, content type and body (ids blanked)."""
    denied, denied_body = _fetch(client, url)
    missing, missing_body = _fetch(client, missing_url)
    return (
        denied.status_code == missing.status_code == 404
        and denied.get("Content-Type") == missing.get("Content-Type")
        and denied_body.replace(ids[0].encode(), b"ID")
        == missing_body.replace(ids[1].encode(), b"ID")
    )


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    settings.FORUMS_ATTACHMENT_MAX_BYTES = LIMIT
    settings.FORUMS_FLOOD_LIMIT = (10_000, 10)
    return tmp_path


def _paths(member: User, chair: User, thread: Thread, event: Event) -> list[Way]:
    forum_download = lambda pk: f"/attachments/{pk}/"  # noqa: E731
    event_download = lambda pk: f"/events/{event.pk}/documents/{pk}/"  # noqa: E731
    members, chairs = _client(member), _client(chair)
    return [
        Way(
            "forum message form",
            f"/threads/{thread.pk}/",
            lambda n: {"body": f"file {n}", "client_id": f"00000000-0000-4000-8000-{n:012d}"},
            "files",
            members,
            members,
            Attachment,
            forum_download,
        ),
        Way(
            "forum API",
            "/api/v1/rooms/wg1-a/attachments/",
            lambda n: {},
            "file",
            members,
            members,
            Attachment,
            forum_download,
        ),
        Way(
            "event documents page",
            f"/events/{event.pk}/documents/",
            lambda n: {"title": f"Document {n}"},
            "file",
            chairs,
            members,
            EventDocument,
            event_download,
        ),
        Way(
            "event documents API",
            f"/api/v1/events/{event.pk}/documents/",
            lambda n: {"title": f"Document {n}"},
            "file",
            chairs,
            members,
            EventDocument,
            event_download,
        ),
    ]


def test_uploads_hostile_corpus_stored_safely_and_served_as_downloads(
    plan: None, member: User, chair: User, media: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=member)
    event = event_services.event_create(
        actor=chair,
        title="Workshop",
        starts_at=dt.datetime(2030, 3, 12, 14, 0, tzinfo=dt.UTC),
        ends_at=dt.datetime(2030, 3, 12, 16, 0, tzinfo=dt.UTC),
        timezone="America/Lima",
        working_group=WorkingGroup.objects.get(slug="wg1"),
    )
    paths = _paths(member, chair, thread, event)
    unsafe: dict[str, list[str]] = {}
    stored: list[tuple[Way, Attachment | EventDocument, bytes]] = []
    uploads = 0
    for path in paths:
        for n, item in enumerate((*CORPUS, AT_LIMIT)):
            key = f"{item.label} via {path.name}"
            before = path.model.objects.aggregate(top=Max("pk"))["top"] or 0
            files_before = _media_files(media)
            response = path.client.post(
                path.url,
                data=multipart(path.fields(n), path.file_field, item),
                content_type=f"multipart/form-data; boundary={BOUNDARY}",
            )
            uploads += item is not AT_LIMIT
            rows = list(path.model.objects.filter(pk__gt=before).exclude(file=""))
            problems = []
            if item.expect is None:
                if rows or _media_files(media) != files_before:
                    problems.append("refused file left a row or bytes in storage")
                if response.status_code < 400:
                    problems.append(f"accepted with {response.status_code}")
            elif len(rows) != 1:
                problems.append(f"not stored ({response.status_code})")
            else:
                (row,) = rows
                problems += _stored_problems(row, item.data)
                if (row.content_type, row.original_name) != item.expect:
                    problems.append(f"stored as {(row.content_type, row.original_name)}")
                stored.append((path, row, item.data))
            if problems:
                unsafe[key] = problems

    bad_downloads: dict[str, list[str]] = {}
    for path, row, _data in stored:
        response, body = _fetch(path.reader, path.download(row.pk))
        if problems := _download_problems(response, body, row):
            bad_downloads[f"{row.original_name} via {path.name}"] = problems

    denied = _denials(member, chair, media)
    report(
        capsys,
        "UPLOADS",
        f"{len(CORPUS)} hostile files x {len(paths)} paths = {uploads} uploads, "
        f"{len(unsafe)} stored unsafely or not as expected; {len(stored)} downloads, "
        f"{len(bad_downloads)} with unsafe headers; {sum(denied.values())}/{len(denied)} "
        "denied as missing",
    )
    assert unsafe == {}
    assert bad_downloads == {}
    assert denied == dict.fromkeys(denied, True)


def _denials(member: User, chair: User, media: Path) -> dict[str, bool]:
    """Files a member may not read answer as a missing id does (404, same page)."""
    pdf = lambda: ContentFile(PDF, name="p.pdf")  # noqa: E731
    wg1 = WorkingGroup.objects.get(slug="wg1")
    private = Room.objects.create(
        slug="wg1-private",
        title="Private room of wg1",
        working_group=wg1,
        visibility=Room.Visibility.WORKING_GROUP,
    )
    in_private = services.attachment_upload(room=private, uploader=chair, uploaded_file=pdf())
    MessageFactory(thread=ThreadFactory(room=private, author=chair), author=chair)
    Attachment.objects.filter(pk=in_private.pk).update(message=private.threads.get().messages.get())
    other = UserFactory(handle="other")
    MembershipFactory(member=other, role=Role.MEMBER)
    unposted = services.attachment_upload(
        room=Room.objects.get(slug="wg1-a"), uploader=other, uploaded_file=pdf()
    )
    outsider = UserFactory(handle="outsider")
    MembershipFactory(member=outsider, working_group=WorkingGroup.objects.get(slug="wg2"))
    starts = dt.datetime(2030, 4, 2, 14, 0, tzinfo=dt.UTC)
    group_only = event_services.event_create(
        actor=chair,
        title="Group only",
        starts_at=starts,
        ends_at=starts.replace(hour=16),
        timezone="America/Lima",
        working_group=wg1,
        visibility=Event.Visibility.WORKING_GROUP,
    )
    public = event_services.event_create(
        actor=chair,
        title="Public",
        starts_at=starts,
        ends_at=starts.replace(hour=16),
        timezone="America/Lima",
        working_group=wg1,
    )
    hidden_doc = event_services.document_add(
        event=group_only, actor=chair, title="Minutes", uploaded_file=pdf()
    )
    public_doc = event_services.document_add(
        event=public, actor=chair, title="Programme", uploaded_file=pdf()
    )
    missing = str(max(in_private.pk, unposted.pk, hidden_doc.pk, public_doc.pk) + 1000)
    outsiders, members = _client(outsider), _client(member)
    return {
        "posted file of a private room, to a member of another group": _same_as_missing(
            outsiders,
            f"/attachments/{in_private.pk}/",
            f"/attachments/{missing}/",
            (str(in_private.pk), missing),
        ),
        "another member's unposted file": _same_as_missing(
            members,
            f"/attachments/{unposted.pk}/",
            f"/attachments/{missing}/",
            (str(unposted.pk), missing),
        ),
        "document of a group-only event, to a member of another group": _same_as_missing(
            outsiders,
            f"/events/{group_only.pk}/documents/{hidden_doc.pk}/",
            f"/events/{group_only.pk}/documents/{missing}/",
            (str(hidden_doc.pk), missing),
        ),
        "document asked under another event": _same_as_missing(
            members,
            f"/events/{group_only.pk}/documents/{public_doc.pk}/",
            f"/events/{public.pk}/documents/{missing}/",
            (f"{group_only.pk}/documents/{public_doc.pk}", f"{public.pk}/documents/{missing}"),
        ),
    }
