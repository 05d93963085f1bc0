"""Attachments: type by content, size limits, safe names, storage, who may download, pages, API."""

from __future__ import annotations

import io
import struct
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from community.models import User
from community.services import api_token_create
from forums import attachments, services
from forums.attachments import clean_name, sniff
from forums.models import Attachment, Message, Room, Thread
from tests.factories import UserFactory
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import room_of

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48 + b"PE\x00\x00"
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="4"/></svg>'
SVG_XML = b'<?xml version="1.0"?>\n' + SVG


def png_bytes() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = png_bytes()


def zipped(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            compress = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=compress)
    return buffer.getvalue()


def content_types(main: str) -> bytes:
    return (
        '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        f'content-types"><Override PartName="/main.xml" ContentType="{main}"/></Types>'
    ).encode()


DOCX = zipped(
    [
        (
            "[Content_Types].xml",
            content_types(
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
            ),
        ),
        ("word/document.xml", b"<w:document/>"),
    ]
)
DOCM = zipped(
    [
        (
            "[Content_Types].xml",
            content_types("application/vnd.ms-word.document.macroEnabled.main+xml"),
        ),
        ("word/document.xml", b"<w:document/>"),
    ]
)
ODS = zipped(
    [
        ("mimetype", b"application/vnd.oasis.opendocument.spreadsheet"),
        ("content.xml", b"<office:document-content/>"),
    ]
)
PLAIN_ZIP = zipped([("readme.txt", b"hello")])


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def token_client(member: User) -> Client:
    _token, key = api_token_create(member=member, name="tests")
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def fetch(client: Client, url: str) -> tuple[Any, bytes]:
    """GET `url`; the response and its body (read to the end: the client then closes a file
    the response streamed)."""
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def api_upload(client: Client, data: bytes, name: str, slug: str = "wg1-a") -> Any:
    upload = SimpleUploadedFile(name, data, content_type="application/pdf")
    return client.post(f"/api/v1/rooms/{slug}/attachments/", {"file": upload})


def upload(member: User, data: bytes, name: str, room: Room | None = None) -> Attachment:
    return services.attachment_upload(
        room=room or room_of(), uploader=member, uploaded_file=ContentFile(data, name=name)
    )


def error_code_of(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return services.error_code(exc.value)


# --- Sniffing and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (PDF, "x.bin", "application/pdf"),
        (PNG, "x.pdf", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "x", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "x", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "x", "image/webp"),
        ("name;country\nAna;Perú\n".encode(), "list.csv", "text/csv"),
        ("Minutes of the meeting — ¿preguntas?\n".encode(), "minutes", "text/plain"),
        (DOCX, "x.zip", attachments.DOCX),
        (ODS, "x", attachments.ODS),
        (EXE, "report.pdf", None),
        (HTML, "photo.png", None),
        (b"  \n<html><body>hi</body></html>", "notes.txt", None),
        (SVG, "logo.svg", None),
        (SVG_XML, "logo.png", None),
        (DOCM, "macro.docx", None),
        (PLAIN_ZIP, "archive.docx", None),
        (b"PK\x03\x04not really a zip", "x.docx", None),
        (b"caf\xe9 latin-1\n", "x.txt", None),
        (b"text with a \x00 NUL", "x.txt", None),
    ],
)
def test_sniff_decides_by_content(data: bytes, name: str, expected: str | None) -> None:
    stream = io.BytesIO(data)

    found = sniff(stream, name=name)

    assert (found, stream.tell()) == (expected, 0)


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        ("../../etc/passwd", "application/pdf", "passwd.pdf"),
        ("a/b\\c.pdf", "application/pdf", "c.pdf"),
        ("evil\x00.pdf", "application/pdf", "evil.pdf"),
        ("..\\..\\boot.ini", "text/plain", "boot.ini.txt"),
        (".htaccess", "text/plain", "htaccess.txt"),
        ("notes.html", "text/plain", "notes.html.txt"),
        ("photo\u202egnp.exe", "image/png", "photognp.exe.png"),
        ("line\r\nbreak.PNG", "image/png", "line break.PNG"),
        ("", "application/pdf", "attachment.pdf"),
        ("...", "image/gif", "attachment.gif"),
        ("Informe técnico.pdf", "application/pdf", "Informe técnico.pdf"),
    ],
)
def test_clean_name_removes_paths_controls_and_fixes_extension(
    raw: str, content_type: str, expected: str
) -> None:
    assert clean_name(raw, content_type) == expected


def test_clean_name_caps_length_keeping_extension() -> None:
    name = clean_name("x" * 400 + ".pdf", "application/pdf")

    assert (len(name), name[-5:]) == (attachments.MAX_NAME_CHARS, "x.pdf")


# --- The service ------------------------------------------------------------------------------


def test_attachment_upload_stores_under_generated_name(member: User, media: Path) -> None:
    attachment = upload(member, PDF, "../../etc/passwd")

    files = stored_files(media)
    assert (attachment.original_name, attachment.content_type, attachment.size) == (
        "passwd.pdf",
        "application/pdf",
        len(PDF),
    )
    assert files == [media / attachment.file.name]
    assert attachment.file.name.startswith("attachments/")
    assert "passwd" not in attachment.file.name
    assert files[0].read_bytes() == PDF


def test_attachment_upload_keeps_sha256_and_stays_unattached(member: User, media: Path) -> None:
    import hashlib

    attachment = upload(member, PNG, "a/b\\c.png")

    assert (attachment.sha256, attachment.message_id, attachment.original_name) == (
        hashlib.sha256(PNG).hexdigest(),
        None,
        "c.png",
    )


def test_attachment_upload_too_large_stores_nothing(
    member: User, media: Path, settings: Any
) -> None:
    settings.FORUMS_ATTACHMENT_MAX_BYTES = 100

    with pytest.raises(ValidationError) as exc:
        upload(member, PDF + b"%" * 100, "big.pdf")

    assert (error_code_of(exc), stored_files(media), Attachment.objects.count()) == (
        "too_large",
        [],
        0,
    )


@pytest.mark.parametrize(
    ("data", "name"), [(EXE, "invoice.pdf"), (HTML, "photo.png"), (SVG, "logo.svg")]
)
def test_attachment_upload_wrong_type_by_content_stores_nothing(
    member: User, media: Path, data: bytes, name: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        upload(member, data, name)

    assert (error_code_of(exc), stored_files(media)) == ("unsupported_type", [])


def test_attachment_upload_empty_is_invalid(member: User, media: Path) -> None:
    with pytest.raises(ValidationError) as exc:
        upload(member, b"", "empty.txt")

    assert (error_code_of(exc), stored_files(media)) == ("invalid", [])


def test_attachment_upload_observer_is_refused(observer: User, media: Path) -> None:
    with pytest.raises(services.Refused) as exc:
        upload(observer, PDF, "x.pdf")

    assert (exc.value.code, stored_files(media)) == ("forbidden", [])


def test_message_post_attaches_and_broadcasts_files(
    thread: Thread,
    member: User,
    media: Path,
    frames: list[tuple[str, dict[str, Any]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    attachment = upload(member, PDF, "plan.pdf")

    with django_capture_on_commit_callbacks(execute=True):
        message, created = services.message_post(
            thread=thread,
            author=member,
            body="The plan",
            client_id=uuid.uuid4(),
            attachment_ids=[attachment.pk],
        )

    attachment.refresh_from_db()
    expected = [
        {
            "id": attachment.pk,
            "name": "plan.pdf",
            "content_type": "application/pdf",
            "size": len(PDF),
            "url": f"/attachments/{attachment.pk}/",
        }
    ]
    assert (created, attachment.message_id) == (True, message.pk)
    assert [f["message"]["attachments"] for _group, f in frames] == [expected]


@pytest.mark.parametrize("case", ["someone_elses", "other_room", "already_posted", "unknown"])
def test_message_post_foreign_attachment_is_invalid_and_writes_nothing(
    thread: Thread, member: User, chair: User, media: Path, case: str
) -> None:
    if case == "someone_elses":
        target = upload(chair, PDF, "chair.pdf").pk
    elif case == "other_room":
        target = upload(member, PDF, "mine.pdf", room=room_of("wg1-b")).pk
    elif case == "already_posted":
        target = upload(member, PDF, "mine.pdf").pk
        services.message_post(
            thread=thread,
            author=member,
            body="first",
            client_id=uuid.uuid4(),
            attachment_ids=[target],
        )
    else:
        target = 987654
    before = Message.objects.count()

    with pytest.raises(ValidationError) as exc:
        services.message_post(
            thread=thread,
            author=member,
            body="Look",
            client_id=uuid.uuid4(),
            attachment_ids=[target],
        )

    assert (error_code_of(exc), Message.objects.count()) == ("invalid", before)


# --- API --------------------------------------------------------------------------------------


def test_api_pdf_round_trip(thread: Thread, member: User, chair: User, media: Path) -> None:
    client = token_client(member)

    uploaded = api_upload(client, PDF, "Informe técnico.pdf")
    body = uploaded.json()
    posted = client.post(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"body": "The report", "attachments": [body["id"]]},
        content_type="application/json",
    )
    download, content = fetch(signed_in(chair), body["url"])

    assert (uploaded.status_code, posted.status_code) == (201, 201)
    assert body == {
        "id": body["id"],
        "name": "Informe técnico.pdf",
        "content_type": "application/pdf",
        "size": len(PDF),
        "url": f"/attachments/{body['id']}/",
    }
    assert posted.json()["attachments"] == [body]
    assert (download.status_code, content) == (200, PDF)
    assert {
        name: download[name]
        for name in (
            "Content-Type",
            "Content-Disposition",
            "X-Content-Type-Options",
            "Content-Security-Policy",
        )
    } == {
        "Content-Type": "application/pdf",
        "Content-Disposition": "attachment; filename*=utf-8''Informe%20t%C3%A9cnico.pdf",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }


def test_api_messages_list_shows_attachments(thread: Thread, member: User, media: Path) -> None:
    attachment = upload(member, PNG, "chart.png")
    services.message_post(
        thread=thread,
        author=member,
        body="Chart",
        client_id=uuid.uuid4(),
        attachment_ids=[attachment.pk],
    )

    response = token_client(member).get(f"/api/v1/threads/{thread.pk}/messages/")

    assert [m["attachments"][0]["name"] for m in response.json()] == ["chart.png"]


def test_api_upload_oversized_is_413_and_stores_nothing(
    member: User, media: Path, settings: Any
) -> None:
    settings.FORUMS_ATTACHMENT_MAX_BYTES = 1000

    response = api_upload(token_client(member), PDF + b"%" * 2000, "big.pdf")

    assert (response.status_code, response.json()["code"]) == (413, "too_large")
    assert (stored_files(media), Attachment.objects.count()) == ([], 0)


def test_api_upload_body_over_limit_is_refused_before_parsing(
    member: User, media: Path, settings: Any
) -> None:
    settings.FORUMS_ATTACHMENT_MAX_BYTES = 10

    response = api_upload(token_client(member), PDF + b"%" * 400_000, "huge.pdf")

    assert (response.status_code, response.json()) == (
        413,
        {"code": "too_large", "detail": "The upload is too large: at most 10\xa0bytes."},
    )
    assert stored_files(media) == []


@pytest.mark.parametrize(
    ("data", "name"), [(EXE, "report.pdf"), (HTML, "photo.png"), (SVG, "drawing.svg")]
)
def test_api_upload_wrong_type_is_415(member: User, media: Path, data: bytes, name: str) -> None:
    response = api_upload(token_client(member), data, name)

    assert (response.status_code, response.json()["code"], stored_files(media)) == (
        415,
        "unsupported_type",
        [],
    )


def test_api_upload_path_in_multipart_filename_is_dropped(member: User, media: Path) -> None:
    boundary = "BoUnDaRy"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="../../etc/passwd"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        + PDF
        + f"\r\n--{boundary}--\r\n".encode()
    )

    response = token_client(member).post(
        "/api/v1/rooms/wg1-a/attachments/",
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )

    attachment = Attachment.objects.get()
    assert (response.status_code, response.json()["name"]) == (201, "passwd.pdf")
    assert stored_files(media) == [media / attachment.file.name]


def test_api_upload_without_file_is_400(member: User, media: Path) -> None:
    response = token_client(member).post("/api/v1/rooms/wg1-a/attachments/", {})

    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_api_post_with_someone_elses_attachment_is_400(
    thread: Thread, member: User, chair: User, media: Path
) -> None:
    theirs = upload(chair, PDF, "chair.pdf")

    response = token_client(member).post(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"body": "Mine now", "attachments": [theirs.pk]},
        content_type="application/json",
    )

    theirs.refresh_from_db()
    assert (response.status_code, response.json()["code"], theirs.message_id) == (
        400,
        "invalid",
        None,
    )


# --- Downloads --------------------------------------------------------------------------------


@pytest.fixture
def posted(thread: Thread, member: User, media: Path) -> Attachment:
    attachment = upload(member, PNG, "chart.png")
    services.message_post(
        thread=thread,
        author=member,
        body="Chart",
        client_id=uuid.uuid4(),
        attachment_ids=[attachment.pk],
    )
    return attachment


def test_download_by_member_who_cannot_read_is_404(posted: Attachment) -> None:
    unverified = UserFactory(verified=False)

    response, _body = fetch(signed_in(unverified), reverse("attachment_download", args=[posted.pk]))

    assert response.status_code == 404


def test_download_anonymous_redirects_to_login(posted: Attachment) -> None:
    url = reverse("attachment_download", args=[posted.pk])

    response = Client().get(url)

    assert (response.status_code, response["Location"]) == (
        302,
        f"{reverse('account_login')}?next={url}",
    )


def test_download_unknown_is_404(member: User) -> None:
    response = signed_in(member).get(reverse("attachment_download", args=[987654]))

    assert response.status_code == 404


def test_download_unposted_only_by_uploader(member: User, chair: User, media: Path) -> None:
    pending = upload(member, PNG, "draft.png")
    url = reverse("attachment_download", args=[pending.pk])

    statuses = (
        fetch(signed_in(member), url)[0].status_code,
        fetch(signed_in(chair), url)[0].status_code,
    )

    assert statuses == (200, 404)


def test_download_of_deleted_message_is_404(posted: Attachment, member: User) -> None:
    services.message_delete(message=Message.objects.get(attachments=posted), actor=member)

    response, _body = fetch(signed_in(member), reverse("attachment_download", args=[posted.pk]))

    assert response.status_code == 404


def test_download_text_is_utf8_attachment(member: User, media: Path) -> None:
    pending = upload(member, b"a;b\n1;2\n", "data.csv")

    response, _body = fetch(signed_in(member), reverse("attachment_download", args=[pending.pk]))

    assert (response["Content-Type"], response["Content-Disposition"]) == (
        "text/csv; charset=utf-8",
        'attachment; filename="data.csv"',
    )


# --- Pages ------------------------------------------------------------------------------------


def page_post(client: Client, thread: Thread, body: str, *files: SimpleUploadedFile) -> Any:
    data: dict[str, Any] = {"body": body, "client_id": str(uuid.uuid4())}
    if files:
        data["files"] = list(files)
    return client.post(reverse("thread_detail", args=[thread.pk]), data)


def test_page_png_round_trip(thread: Thread, member: User, chair: User, media: Path) -> None:
    client = signed_in(member)

    response = page_post(client, thread, "See the chart", SimpleUploadedFile("chart.png", PNG))
    attachment = Attachment.objects.get()
    page = signed_in(chair).get(reverse("thread_detail", args=[thread.pk]))
    download, content = fetch(
        signed_in(chair), reverse("attachment_download", args=[attachment.pk])
    )

    message = Message.objects.get(pk=attachment.message_id)
    assert (response.status_code, message.body) == (302, "See the chart")
    assert f'href="/attachments/{attachment.pk}/" download>chart.png</a>' in page.content.decode()
    assert (download.status_code, download["Content-Type"]) == (200, "image/png")
    assert content == PNG


def test_page_form_is_multipart_with_file_input(thread: Thread, member: User) -> None:
    page = signed_in(member).get(reverse("thread_detail", args=[thread.pk])).content.decode()

    assert ('enctype="multipart/form-data"' in page, 'type="file" name="files"' in page) == (
        True,
        True,
    )


def test_page_oversized_keeps_text_and_stores_nothing(
    thread: Thread, member: User, media: Path, settings: Any
) -> None:
    settings.FORUMS_ATTACHMENT_MAX_BYTES = 1000

    response = page_post(
        signed_in(member), thread, "Keep me", SimpleUploadedFile("big.pdf", PDF + b"%" * 5000)
    )

    content = response.content.decode()
    assert (response.status_code, "Keep me</textarea>" in content) == (413, True)
    assert "big.pdf is too large" in content
    assert (stored_files(media), Message.objects.count()) == ([], 0)


def test_page_wrong_type_keeps_earlier_file_for_the_next_try(
    thread: Thread, member: User, media: Path
) -> None:
    client = signed_in(member)

    refused = page_post(
        client,
        thread,
        "Two files",
        SimpleUploadedFile("ok.pdf", PDF),
        SimpleUploadedFile("bad.png", HTML),
    )
    kept = Attachment.objects.get()
    retried = client.post(
        reverse("thread_detail", args=[thread.pk]),
        {"body": "Two files", "client_id": str(uuid.uuid4()), "attachments": [kept.pk]},
    )

    kept.refresh_from_db()
    content = refused.content.decode()
    assert (refused.status_code, retried.status_code) == (415, 302)
    assert f'name="attachments" value="{kept.pk}"' in content
    assert kept.message_id == Message.objects.get().pk


def test_page_post_still_checks_csrf(thread: Thread, member: User, media: Path) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    url = reverse("thread_detail", args=[thread.pk])
    client.get(url)
    data = {"body": "Hi", "client_id": str(uuid.uuid4()), "files": SimpleUploadedFile("c.png", PNG)}

    refused = client.post(url, data)
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    data["files"] = SimpleUploadedFile("c.png", PNG)
    accepted = client.post(url, data)

    assert (refused.status_code, accepted.status_code, Attachment.objects.count()) == (403, 302, 1)


# --- Purge ------------------------------------------------------------------------------------


def test_attachments_purge_deletes_abandoned_and_deleted_messages_files(
    thread: Thread, member: User, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    abandoned = upload(member, PDF, "old.pdf")
    Attachment.objects.filter(pk=abandoned.pk).update(created=timezone.now() - timedelta(days=2))
    fresh = upload(member, PDF, "draft.pdf")
    kept = upload(member, PNG, "kept.png")
    gone = upload(member, PNG, "gone.png")
    services.message_post(
        thread=thread, author=member, body="kept", client_id=uuid.uuid4(), attachment_ids=[kept.pk]
    )
    deleted, _ = services.message_post(
        thread=thread, author=member, body="gone", client_id=uuid.uuid4(), attachment_ids=[gone.pk]
    )
    services.message_delete(message=deleted, actor=member)

    with django_capture_on_commit_callbacks(execute=True):
        purged = services.attachments_purge(unposted_before=timezone.now() - timedelta(days=1))

    assert (purged, sorted(Attachment.objects.values_list("pk", flat=True))) == (
        2,
        sorted([fresh.pk, kept.pk]),
    )
    assert stored_files(media) == sorted([media / fresh.file.name, media / kept.file.name])


def test_page_body_over_limit_is_refused_before_parsing(
    thread: Thread, member: User, media: Path, settings: Any
) -> None:
    settings.FORUMS_ATTACHMENT_MAX_BYTES = 10

    response = page_post(
        signed_in(member), thread, "Hi", SimpleUploadedFile("huge.pdf", PDF + b"%" * 400_000)
    )

    assert (response.status_code, response.templates[0].name) == (
        413,
        "forums/upload_refused.html",
    )
    assert (stored_files(media), Message.objects.count()) == ([], 0)
