"""Attachment names and kinds: filenames from mail are hostile, kinds come from bytes and name."""

from __future__ import annotations

import re
import unicodedata

from parsers.types import ArtifactKind

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f/\\:*?\"<>|]")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)
_MAX_NAME_BYTES = 200
_LOG_LINE = re.compile(rb"^\s*\[?\d{2,4}[-./]\d{2}[-./]\d{2,4}[ T]\d{1,2}:\d{2}", re.MULTILINE)

_MAGIC: tuple[tuple[bytes, ArtifactKind], ...] = (
    (b"MDMP", ArtifactKind.DUMP),
    (b"JAVA PROFILE 1.0", ArtifactKind.DUMP),
    (b"\x89PNG\r\n\x1a\n", ArtifactKind.SCREENSHOT),
    (b"\xff\xd8\xff", ArtifactKind.SCREENSHOT),
    (b"GIF87a", ArtifactKind.SCREENSHOT),
    (b"GIF89a", ArtifactKind.SCREENSHOT),
    (b"BM", ArtifactKind.SCREENSHOT),
    (b"II*\x00", ArtifactKind.SCREENSHOT),
    (b"MM\x00*", ArtifactKind.SCREENSHOT),
    (b"%PDF", ArtifactKind.DOCUMENT),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", ArtifactKind.DOCUMENT),
    (b"PK\x03\x04", ArtifactKind.ARCHIVE),
    (b"\x1f\x8b", ArtifactKind.ARCHIVE),
    (b"BZh", ArtifactKind.ARCHIVE),
    (b"\xfd7zXZ\x00", ArtifactKind.ARCHIVE),
    (b"7z\xbc\xaf\x27\x1c", ArtifactKind.ARCHIVE),
    (b"Rar!\x1a\x07", ArtifactKind.ARCHIVE),
)
_OFFICE_ZIP = frozenset({"docx", "xlsx", "pptx", "odt", "ods", "odp"})
_EXTENSIONS: dict[str, ArtifactKind] = {
    **dict.fromkeys(("dmp", "mdmp", "hprof", "core"), ArtifactKind.DUMP),
    **dict.fromkeys(("log", "evtx", "etl", "trace", "trc"), ArtifactKind.LOG),
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff", "heic"),
                    ArtifactKind.SCREENSHOT),
    **dict.fromkeys(("zip", "7z", "rar", "tar", "tgz", "gz", "bz2", "xz", "jar", "war"),
                    ArtifactKind.ARCHIVE),
    **dict.fromkeys(("conf", "cfg", "ini", "xml", "json", "yaml", "yml", "toml", "properties",
                     "config", "reg"), ArtifactKind.CONFIG),
    **dict.fromkeys(("pdf", "doc", "docx", "xls", "xlsx", "odt", "ods", "rtf", "ppt", "pptx",
                     "csv", "html", "htm", "md"), ArtifactKind.DOCUMENT),
}  # fmt: skip


def sanitize_filename(raw: str | None, *, fallback: str = "attachment") -> str:
    """A name safe to show and to write: no path, no controls, no bidi tricks, bounded length."""
    if not raw:
        return fallback
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"^[A-Za-z]:", "", name)
    name = " ".join(_UNSAFE.sub("", name).split()).strip(" .")
    if not name:
        return fallback
    if _RESERVED.match(name):
        name = "_" + name
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > 16:
        stem, extension = name, ""
    budget = _MAX_NAME_BYTES - len(extension.encode()) - (1 if extension else 0)
    stem = stem.encode()[:budget].decode("utf-8", "ignore")
    return f"{stem}.{extension}" if extension else stem


def _extension(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith((".tar.gz", ".tar.xz", ".tar.bz2")):
        return "tar"
    if lower == "core" or re.fullmatch(r"core\.\d+", lower):
        return "core"
    return lower.rpartition(".")[2] if "." in lower else ""


def _sniff(head: bytes) -> ArtifactKind | None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"\x7fELF" and len(head) > 17 and head[16] == 4:
        return ArtifactKind.DUMP
    if len(head) > 262 and head[257:262] == b"ustar":
        return ArtifactKind.ARCHIVE
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ArtifactKind.SCREENSHOT
    return None


def _is_textual_log(filename: str, head: bytes) -> bool:
    lower = filename.lower()
    if any(word in lower for word in ("log", "journal", "trace", "журнал", "лог")):
        return True
    return len(_LOG_LINE.findall(head)) >= 3


def classify_attachment(filename: str, content_type: str, head: bytes) -> ArtifactKind:
    """Bytes first for binary formats (a PNG named .txt is a screenshot), then the name."""
    extension = _extension(filename)
    sniffed = _sniff(head)
    if sniffed is ArtifactKind.ARCHIVE and extension in _OFFICE_ZIP:
        return ArtifactKind.DOCUMENT
    if sniffed is not None and not (
        sniffed is ArtifactKind.SCREENSHOT and head[:2] == b"BM" and extension not in ("bmp", "")
    ):
        return sniffed
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if extension == "txt" or content_type == "text/plain":
        return ArtifactKind.LOG if _is_textual_log(filename, head) else ArtifactKind.DOCUMENT
    if content_type.startswith("image/"):
        return ArtifactKind.SCREENSHOT
    return ArtifactKind.OTHER
