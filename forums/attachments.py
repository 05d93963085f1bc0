"""Attachment rules that do not touch the database: what a file is, what it may be called, how big.

The type of a file is decided by its content (magic bytes, the members of a zip container, a
UTF-8 check), never by its name or the client's Content-Type, and only types on the allow-list
pass: PDF, PNG, JPEG, GIF, WebP, plain text / CSV, Office Open XML and OpenDocument documents.
Everything else (executables, HTML, SVG, archives, macro-enabled Office files) is refused.

The upload handler and the view decorator below keep an oversized upload from reaching storage:
the request is refused from its Content-Length before the body is parsed, and a file that grows
past the limit while it streams is dropped chunk by chunk (forums.views, forums.api).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponseBase

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Files one message may carry (the page's multi-file input and the API's `attachments` list).
MAX_PER_MESSAGE = 10
MAX_NAME_CHARS = 150
FALLBACK_NAME = "attachment"
# Room for the multipart framing and the form's small fields next to the files of one request.
REQUEST_OVERHEAD_BYTES = 256 * 1024
# Decompressed bytes read from a zip member while sniffing (a zip bomb cannot make us read more).
_ZIP_MEMBER_READ = 64 * 1024
_TEXT_CHUNK = 64 * 1024

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
WEBP = "image/webp"
TEXT = "text/plain"
CSV = "text/csv"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"

# The allow-list: content type -> the extensions a file of that type may keep (first: added
# when the original name has none of them, so a saved copy never opens as something else).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    PDF: (".pdf",),
    PNG: (".png",),
    JPEG: (".jpg", ".jpeg", ".jpe"),
    GIF: (".gif",),
    WEBP: (".webp",),
    TEXT: (".txt", ".text", ".log", ".md", ".csv", ".tsv"),
    CSV: (".csv",),
    DOCX: (".docx",),
    XLSX: (".xlsx",),
    PPTX: (".pptx",),
    ODT: (".odt",),
    ODS: (".ods",),
    ODP: (".odp",),
}
IMAGE_TYPES = frozenset({PNG, JPEG, GIF, WEBP})

# The main part's content type in [Content_Types].xml (macro-enabled variants are not here).
_OOXML_MAIN = {
    b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": DOCX,
    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": XLSX,
    b"application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": PPTX,
}
_ODF_MIMETYPES = {ODT.encode(): ODT, ODS.encode(): ODS, ODP.encode(): ODP}


def max_bytes() -> int:
    """settings.FORUMS_ATTACHMENT_MAX_BYTES: the largest file accepted (20 MiB by default)."""
    return int(getattr(settings, "FORUMS_ATTACHMENT_MAX_BYTES", DEFAULT_MAX_BYTES))


# --- What a file is ---------------------------------------------------------------------------


def sniff(stream: IO[bytes], *, name: str = "") -> str | None:
    """The allow-listed content type of `stream`'s bytes, or None when it is not allowed.

    Reads from the start and leaves the position at the start. `name` only chooses between
    text/csv and text/plain for content that is already valid text; it never admits a type.
    """
    stream.seek(0)
    head = stream.read(64)
    stream.seek(0)
    found: str | None = None
    if head.startswith(b"%PDF-"):
        found = PDF
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        found = PNG
    elif head.startswith(b"\xff\xd8\xff"):
        found = JPEG
    elif head.startswith((b"GIF87a", b"GIF89a")):
        found = GIF
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        found = WEBP
    elif head.startswith(b"PK\x03\x04"):
        found = _sniff_zip(stream)
    elif _is_plain_text(stream):
        found = CSV if name.lower().endswith(".csv") else TEXT
    stream.seek(0)
    return found


def _sniff_zip(stream: IO[bytes]) -> str | None:
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
            if members and members[0].filename == "mimetype":
                # OpenDocument: the first member, stored, names the document's type.
                with archive.open(members[0]) as member:
                    return _ODF_MIMETYPES.get(member.read(_ZIP_MEMBER_READ).strip())
            with archive.open("[Content_Types].xml") as member:
                types = member.read(_ZIP_MEMBER_READ)
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, NotImplementedError, EOFError):
        return None
    # A byte search, not an XML parser: nothing in an untrusted document gets expanded.
    found = {kind for marker, kind in _OOXML_MAIN.items() if marker in types}
    return found.pop() if len(found) == 1 else None


# Markup a browser would sniff as HTML, SVG or XML if it ever ignored our Content-Type.
_MARKUP = re.compile(rb"^\s*<", re.ASCII)


def _is_plain_text(stream: IO[bytes]) -> bool:
    """Valid UTF-8 from end to end, no NUL, and not starting like markup."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    first = True
    while chunk := stream.read(_TEXT_CHUNK):
        if first:
            if _MARKUP.match(chunk.removeprefix(codecs.BOM_UTF8)):
                return False
            first = False
        if b"\x00" in chunk:
            return False
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError:
            return False
    if first:
        return False  # empty
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


# --- What a file may be called ----------------------------------------------------------------


def clean_name(raw: str, content_type: str) -> str:
    """A display name safe in a page, a header and a file system, ending as its type does.

    Drops any directory part (either separator), control and format characters (NUL, bidi
    overrides), leading dots and blanks; caps the length keeping the extension; appends the
    type's extension when the name lacks an allowed one ("notes.html" sent as text becomes
    "notes.html.txt").
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in {"C"})
    name = " ".join(name.split()).lstrip(". ").rstrip(" ")
    allowed = EXTENSIONS.get(content_type, ())
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem and f".{ext.lower()}" in allowed):
        stem, ext = name, allowed[0].lstrip(".") if allowed else ""
    stem = stem or FALLBACK_NAME
    suffix = f".{ext}" if ext else ""
    stem = stem[: MAX_NAME_CHARS - len(suffix)].rstrip(" .") or FALLBACK_NAME
    return f"{stem}{suffix}"


# --- How big: request-level limits ------------------------------------------------------------


@dataclass
class UploadLimits:
    """What the upload handler dropped while the request streamed in (read by the views)."""

    max_bytes: int
    max_files: int
    too_large: list[str] = field(default_factory=list)
    too_many: list[str] = field(default_factory=list)


class LimitedUploadHandler(FileUploadHandler):
    """Counts each file's bytes as they stream in and drops a file at the first chunk past the
    limit (SkipFile: the rest of the form is still parsed, nothing of the file is kept)."""

    def __init__(self, request: HttpRequest, limits: UploadLimits) -> None:
        super().__init__(request)
        self.limits = limits
        self.files = 0
        self.received = 0

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        self.files += 1
        self.received = 0
        if self.files > self.limits.max_files:
            self.limits.too_many.append(file_name)
            raise SkipFile

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limits.max_bytes:
            self.limits.too_large.append(self.file_name or "")
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def request_too_large(request: HttpRequest, limits: UploadLimits) -> bool:
    """True when the declared body is larger than the files allowed could make it."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return declared > limits.max_bytes * limits.max_files + REQUEST_OVERHEAD_BYTES


def limit_uploads(
    max_files: int, refuse: Callable[[HttpRequest, UploadLimits], HttpResponseBase]
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Decorate a view that accepts files: refuse an oversized body before it is parsed
    (`refuse` makes the answer) and stream the files through LimitedUploadHandler.

    Must run before anything reads request.POST / FILES (CSRF checks included): the page views
    wrap it outside `csrf_protect`, the API through ninja's `decorate_view` (before auth).
    `request.upload_limits` tells the view what was dropped.
    """

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            limits = UploadLimits(max_bytes=max_bytes(), max_files=max_files)
            request.upload_limits = limits  # type: ignore[attr-defined]
            if request.method == "POST":
                if request_too_large(request, limits):
                    return refuse(request, limits)
                request.upload_handlers.insert(0, LimitedUploadHandler(request, limits))
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
