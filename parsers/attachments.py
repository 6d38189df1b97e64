"""Attachment names and kinds.

A filename in mail is chosen by the sender, then shown in the acknowledgement, stored and saved on
an engineer's disk, so `sanitize_filename` makes it inert. `classify_attachment` tells the engineer
what a file is in the regulation's terms (memory dumps, logs, screenshots, configuration reports).
Bytes are trusted over the name because clients rename files and mail clients invent names.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from parsers.types import ArtifactKind

_MAX_NAME_BYTES = 200
_MAX_EXTENSION_CHARS = 16

# Line breaks and tabs (including those of folded headers) separate words, so they become spaces.
_SPACING = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]")
# C0, DEL and C1 controls; bidi marks, embeddings, overrides and isolates that make "exe.txt" look
# like "txt.exe"; zero-width spaces and BOM; lone surrogates (the email package's surrogateescape
# for undecodable bytes) that cannot be encoded; characters Windows refuses in names.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ud800-\udfff"
    r'\ufeff<>:"|?*]'
)
_DRIVE = re.compile(r"^[A-Za-z]:")
# Windows opens the device, whatever the extension, for these stems (COM0, COM¹ and CONIN$ too).
_RESERVED = re.compile(
    r"^(?:con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)[ ]*(?:\..*)?$", re.IGNORECASE
)


def sanitize_filename(raw: str | None, *, fallback: str = "attachment") -> str:
    """A name safe to show and to write: no path, no controls, no bidi tricks, bounded length."""
    if not raw:
        return fallback
    name = _SPACING.sub(" ", raw)
    name = _DRIVE.sub("", name.replace("\\", "/").rpartition("/")[2])
    # Normalise after removing, so that a removed mark cannot leave a decomposed pair behind.
    name = unicodedata.normalize("NFC", _UNSAFE.sub("", name))
    name = " ".join(name.split()).strip(" .")
    if _RESERVED.match(name):
        name = "_" + name
    return _truncate(name) or fallback


def _truncate(name: str) -> str:
    """Cut the stem, not the extension, so the engineer still sees what the file was."""
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > _MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    budget = _MAX_NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(" .")
    return stem + suffix


# Magic numbers at offset 0. Two-byte or weak ones (BMP, PE, ELF, tar, WEBP, HEIC) need more checks
# and live in `_SNIFFERS`; the rest are long enough that a text file never starts with them.
_MAGIC: tuple[tuple[bytes, ArtifactKind], ...] = (
    (b"MDMP", ArtifactKind.DUMP),  # Windows minidump
    (b"PAGEDU64", ArtifactKind.DUMP),  # Windows kernel/full memory dump
    (b"PAGEDUMP", ArtifactKind.DUMP),
    (b"JAVA PROFILE 1.0.", ArtifactKind.DUMP),  # HPROF heap dump
    (b"ElfFile\x00", ArtifactKind.LOG),  # Windows .evtx
    (b"LPKSHHRH", ArtifactKind.LOG),  # systemd journal
    (b"\x89PNG\r\n\x1a\n", ArtifactKind.SCREENSHOT),
    (b"\xff\xd8\xff", ArtifactKind.SCREENSHOT),
    (b"GIF87a", ArtifactKind.SCREENSHOT),
    (b"GIF89a", ArtifactKind.SCREENSHOT),
    (b"II*\x00", ArtifactKind.SCREENSHOT),
    (b"MM\x00*", ArtifactKind.SCREENSHOT),
    (b"%PDF-", ArtifactKind.DOCUMENT),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", ArtifactKind.DOCUMENT),  # OLE2: .doc, .xls, .msg
    (b"{\\rtf", ArtifactKind.DOCUMENT),
    (b"PK\x03\x04", ArtifactKind.ARCHIVE),
    (b"PK\x05\x06", ArtifactKind.ARCHIVE),  # empty zip
    (b"PK\x07\x08", ArtifactKind.ARCHIVE),  # spanned zip
    (b"\x1f\x8b", ArtifactKind.ARCHIVE),
    (b"BZh", ArtifactKind.ARCHIVE),
    (b"\xfd7zXZ\x00", ArtifactKind.ARCHIVE),
    (b"7z\xbc\xaf\x27\x1c", ArtifactKind.ARCHIVE),
    (b"Rar!\x1a\x07", ArtifactKind.ARCHIVE),
    (b"\x28\xb5\x2f\xfd", ArtifactKind.ARCHIVE),  # zstd
)
_ELF_CORE = 4
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"})


def _sniff_elf(head: bytes) -> ArtifactKind | None:
    """A core file is a dump; any other ELF (a program, a library) is nothing an engineer reads."""
    if not head.startswith(b"\x7fELF") or len(head) < 18:
        return None
    byteorder: Literal["little", "big"] = "big" if head[5] == 2 else "little"  # EI_DATA
    core = int.from_bytes(head[16:18], byteorder) == _ELF_CORE  # e_type
    return ArtifactKind.DUMP if core else ArtifactKind.OTHER


def _sniff_pe(head: bytes) -> ArtifactKind | None:
    """A Windows executable, confirmed by its PE signature rather than the bare "MZ"."""
    if not head.startswith(b"MZ") or len(head) < 64:
        return None
    offset = int.from_bytes(head[60:64], "little")
    return ArtifactKind.OTHER if head[offset : offset + 4] == b"PE\x00\x00" else None


def _sniff_bmp(head: bytes) -> ArtifactKind | None:
    """Text may start with "BM", so the reserved bytes and the DIB header size must be right too."""
    if not head.startswith(b"BM") or len(head) < 18:
        return None
    valid = head[6:10] == b"\x00" * 4 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    return ArtifactKind.SCREENSHOT if valid else None


def _sniff_container(head: bytes) -> ArtifactKind | None:
    """Formats whose signature is not at offset 0: tar, RIFF WEBP, ISO-BMFF HEIC/AVIF."""
    if head[257:262] == b"ustar":
        return ArtifactKind.ARCHIVE
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ArtifactKind.SCREENSHOT
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return ArtifactKind.SCREENSHOT
    return None


_SNIFFERS = (_sniff_elf, _sniff_pe, _sniff_bmp, _sniff_container)


def _sniff(head: bytes) -> ArtifactKind | None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    for sniffer in _SNIFFERS:
        found = sniffer(head)
        if found is not None:
            return found
    return None


_OFFICE_EXTENSIONS = frozenset(
    {"docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "vsdx", "odt", "ods", "odp", "odg"}
)
_OFFICE_TYPES = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/vnd.ms-excel.sheet.",
    "application/vnd.ms-word.document.",
)
_OFFICE_FIRST_ENTRIES = (b"[Content_Types].xml", b"mimetypeapplication/vnd.oasis.opendocument")


def _is_office_zip(extension: str, content_type: str, head: bytes) -> bool:
    """OOXML and ODF are zip files, but to an engineer they are documents, not archives."""
    if extension in _OFFICE_EXTENSIONS or content_type.startswith(_OFFICE_TYPES):
        return True
    # The first local header's file name starts at offset 30 (APPNOTE 4.3.7).
    return head.startswith(b"PK\x03\x04") and head[30:].startswith(_OFFICE_FIRST_ENTRIES)


_EXTENSIONS: dict[str, ArtifactKind] = {
    **dict.fromkeys(("dmp", "mdmp", "hdmp", "hprof", "phd", "core"), ArtifactKind.DUMP),
    **dict.fromkeys(("log", "evtx", "evt", "etl", "trace", "trc", "out", "journal"),
                    ArtifactKind.LOG),
    **dict.fromkeys(("png", "jpg", "jpeg", "jfif", "gif", "bmp", "webp", "tif", "tiff", "heic",
                     "heif", "avif"), ArtifactKind.SCREENSHOT),
    **dict.fromkeys(("zip", "7z", "rar", "tar", "tgz", "tbz2", "txz", "gz", "bz2", "xz", "zst",
                     "jar", "war", "ear"), ArtifactKind.ARCHIVE),
    **dict.fromkeys(("conf", "cfg", "ini", "xml", "json", "yaml", "yml", "toml", "properties",
                     "config", "reg"), ArtifactKind.CONFIG),
    **dict.fromkeys(("pdf", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "odt", "ods", "odp",
                     "rtf", "ppt", "pptx", "csv", "html", "htm", "md", "msg", "eml"),
                    ArtifactKind.DOCUMENT),
}  # fmt: skip
_CORE_NAME = re.compile(r"core(?:\.\d+)?")

# Words in a name that say what a text file is. Tokens are letter runs, so "error_log-2.txt" gives
# "error", "log". Words that merely end in "log" (catalog, dialog) are not logs.
_LOG_WORDS = frozenset(
    {"log", "logs", "logfile", "logfiles", "logging", "journal", "journals", "trace", "traces",
     "stacktrace", "stderr", "stdout", "syslog", "лог", "логи", "лога", "логов", "логах"}
)  # fmt: skip
_LOG_PREFIXES = ("журнал", "трассир")
_NOT_LOG_WORDS = frozenset(
    {"catalog", "catalogs", "dialog", "dialogs", "blog", "blogs", "backlog", "analog", "prolog",
     "epilog", "changelog"}
)  # fmt: skip
# The regulation's "configuration reports" and Cubisio's workspace files, by name.
_CONFIG_WORDS = frozenset(
    {"config", "configuration", "conf", "settings", "workspace", "workspaces"}
)
_CONFIG_PREFIXES = ("конфиг", "настройк", "настроек", "параметр")
_CONFIG_PHRASE = re.compile(r"рабоч\w*\s*област")
_NAME_TOKEN = re.compile(r"[^\W\d_]+")

# A log line starts with a timestamp, perhaps in brackets or after a level: ISO dates, Russian
# dd.mm.yyyy, syslog's "Mar  3 10:00:00", Tomcat's "03-Mar-2025 10:00:00", or a bare time.
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_STAMP = re.compile(
    r"[\[(<\s]{0,3}(?:(?:trace|debug|info|warn|warning|error|err|fatal|crit)\W{0,3})?"
    r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}[ T_]+\d{1,2}:\d{2}"
    r"|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}[ T,_]+\d{1,2}:\d{2}"
    rf"|\d{{1,2}}[- ]{_MONTH}[- ]\d{{4}}[ :]+\d{{1,2}}:\d{{2}}"
    rf"|{_MONTH}\s+\d{{1,2}}\s+\d{{1,2}}:\d{{2}}"
    r"|\d{1,2}:\d{2}:\d{2})",
    re.IGNORECASE,
)
_STAMPED_LINES_NEEDED = 3
_LINES_LOOKED_AT = 40


def _name_kind(name: str) -> ArtifactKind | None:
    """LOG or CONFIG when the file's own name says so (Russian or English)."""
    tokens = _NAME_TOKEN.findall(name)
    if any(_is_log_word(token) for token in tokens):
        return ArtifactKind.LOG
    if _CONFIG_PHRASE.search(name) or any(
        token in _CONFIG_WORDS or token.startswith(_CONFIG_PREFIXES) for token in tokens
    ):
        return ArtifactKind.CONFIG
    return None


def _is_log_word(token: str) -> bool:
    if token in _LOG_WORDS or token.startswith(_LOG_PREFIXES):
        return True
    return token.endswith(("log", "logs")) and token not in _NOT_LOG_WORDS


def _has_stamped_lines(head: bytes) -> bool:
    """At least three of the first lines start with a date or time: what log files look like."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", "replace")  # Windows tools write UTF-16 logs with a BOM
    else:
        text = head.decode("utf-8", "replace")
    lines = text.splitlines()[:_LINES_LOOKED_AT]
    return sum(1 for line in lines if _STAMP.match(line)) >= _STAMPED_LINES_NEEDED


_CONTENT_TYPES: tuple[tuple[str, ArtifactKind], ...] = (
    ("image/", ArtifactKind.SCREENSHOT),
    ("text/x-log", ArtifactKind.LOG),
    ("application/vnd.openxmlformats-officedocument.", ArtifactKind.DOCUMENT),
    ("application/vnd.oasis.opendocument.", ArtifactKind.DOCUMENT),
    ("application/pdf", ArtifactKind.DOCUMENT),
    ("application/msword", ArtifactKind.DOCUMENT),
    ("application/vnd.ms-", ArtifactKind.DOCUMENT),
    ("application/rtf", ArtifactKind.DOCUMENT),
    ("text/html", ArtifactKind.DOCUMENT),
    ("text/csv", ArtifactKind.DOCUMENT),
    ("text/markdown", ArtifactKind.DOCUMENT),
    ("application/zip", ArtifactKind.ARCHIVE),
    ("application/x-zip", ArtifactKind.ARCHIVE),
    ("application/x-7z", ArtifactKind.ARCHIVE),
    ("application/x-rar", ArtifactKind.ARCHIVE),
    ("application/vnd.rar", ArtifactKind.ARCHIVE),
    ("application/gzip", ArtifactKind.ARCHIVE),
    ("application/x-gzip", ArtifactKind.ARCHIVE),
    ("application/x-tar", ArtifactKind.ARCHIVE),
    ("application/x-bzip", ArtifactKind.ARCHIVE),
    ("application/x-xz", ArtifactKind.ARCHIVE),
    ("application/zstd", ArtifactKind.ARCHIVE),
    ("application/json", ArtifactKind.CONFIG),
    ("application/xml", ArtifactKind.CONFIG),
    ("text/xml", ArtifactKind.CONFIG),
    ("application/yaml", ArtifactKind.CONFIG),
    ("application/x-yaml", ArtifactKind.CONFIG),
    ("text/yaml", ArtifactKind.CONFIG),
    ("application/toml", ArtifactKind.CONFIG),
)


def _extension(name: str) -> str:
    return name.rpartition(".")[2] if "." in name else ""


def _kind_by_name(name: str, content_type: str, head: bytes) -> ArtifactKind | None:
    """The name's verdict: extension first, then words in it, then what plain text looks like."""
    extension = _extension(name)
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if _CORE_NAME.fullmatch(name):
        return ArtifactKind.DUMP
    named = _name_kind(name)  # an unknown extension may say it too: "main.workspace"
    if named is not None:
        return named
    if extension == "txt" or content_type == "text/plain":
        return ArtifactKind.LOG if _has_stamped_lines(head) else ArtifactKind.DOCUMENT
    return None


def _kind_by_content_type(content_type: str) -> ArtifactKind | None:
    """The sender's declared type: the weakest evidence, used only when nothing else speaks."""
    return next((kind for prefix, kind in _CONTENT_TYPES if content_type.startswith(prefix)), None)


def classify_attachment(filename: str, content_type: str, head: bytes) -> ArtifactKind:
    """What the file is: its first bytes, else its name, else its declared type.

    Bytes win over a lying name (a PNG called error.txt is a screenshot, a program called
    screen.png is not), except that OOXML/ODF zips stay documents. `head` is the first few KiB.
    """
    name = filename.strip().lower()
    mime = content_type.partition(";")[0].strip().lower()
    sniffed = _sniff(head)
    if sniffed is ArtifactKind.ARCHIVE and _is_office_zip(_extension(name), mime, head):
        return ArtifactKind.DOCUMENT
    if sniffed is not None:
        return sniffed
    by_name = _kind_by_name(name, mime, head)
    if by_name is not None:
        return by_name
    return _kind_by_content_type(mime) or ArtifactKind.OTHER
