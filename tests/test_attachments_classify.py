"""Hostile attachment names and what each kind of file really is, from its first bytes."""

from __future__ import annotations

import struct
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.attachments import classify_attachment, sanitize_filename
from parsers.types import ArtifactKind

# ---------------------------------------------------------------------------------------------
# sanitize_filename


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        pytest.param("../../etc/passwd", "passwd", id="unix_traversal"),
        pytest.param("C:\\Windows\\evil.exe", "evil.exe", id="windows_path"),
        pytest.param("C:evil.bat", "evil.bat", id="drive_relative"),
        pytest.param("\\\\server\\share\\cubisio.cfg", "cubisio.cfg", id="unc_path"),
        pytest.param("..\\..\\boot.ini", "boot.ini", id="windows_traversal"),
        pytest.param("logs/", "attachment", id="trailing_slash_leaves_nothing"),
        pytest.param("\u202eexe.txt", "exe.txt", id="rlo_override"),
        pytest.param("invoice\u202egnp.exe", "invoicegnp.exe", id="rlo_in_the_middle"),
        pytest.param("report\u2066.pdf\u2069.exe", "report.pdf.exe", id="bidi_isolates"),
        pytest.param("doc\u200f\u200e\u061c.pdf", "doc.pdf", id="bidi_marks"),
        pytest.param("\ufeffbom\u200b.txt", "bom.txt", id="bom_and_zero_width_space"),
        pytest.param("CON.txt", "_CON.txt", id="reserved_con_with_extension"),
        pytest.param("con", "_con", id="reserved_lower_case"),
        pytest.param("LPT9.log.gz", "_LPT9.log.gz", id="reserved_lpt_two_extensions"),
        pytest.param("COM1", "_COM1", id="reserved_com"),
        pytest.param("nul .txt", "_nul .txt", id="reserved_space_before_dot"),
        pytest.param("CONSOLE.txt", "CONSOLE.txt", id="not_reserved_longer_stem"),
        pytest.param("Журнал ошибок.log", "Журнал ошибок.log", id="cyrillic_kept"),
        pytest.param("名前.png", "名前.png", id="cjk_kept"),
        pytest.param("Отче\u0308т.pdf", "Отчёт.pdf", id="nfd_to_nfc"),
        pytest.param("e\u202e\u0301.txt", "é.txt", id="nfc_after_removal"),
        pytest.param("a\x00b\x07c.log", "abc.log", id="nul_and_bell"),
        pytest.param("\udcd0\udc96urnal.log", "urnal.log", id="surrogateescape_bytes"),
        pytest.param("del\x7fc1\x9b.txt", "delc1.txt", id="del_and_c1"),
        pytest.param("line\r\n\tbreak.txt", "line break.txt", id="folded_header_whitespace"),
        pytest.param("  many    spaces\u00a0here.doc  ", "many spaces here.doc", id="collapse_spaces"),
        pytest.param('a<b>c:d|e?f*g"h.txt', "abcdefgh.txt", id="windows_forbidden_chars"),
        pytest.param("  .hidden", "hidden", id="leading_dot_and_space"),
        pytest.param("report.pdf. . .", "report.pdf", id="trailing_dots_and_spaces"),
        pytest.param("...", "attachment", id="only_dots"),
        pytest.param(". . .", "attachment", id="dots_and_spaces"),
        pytest.param("\x00\x01\u202e", "attachment", id="only_controls"),
        pytest.param("", "attachment", id="empty"),
        pytest.param(None, "attachment", id="none"),
        pytest.param("x" * 300, "x" * 200, id="long_without_extension"),
        pytest.param("x" * 300 + ".log", "x" * 196 + ".log", id="long_keeps_extension"),
        pytest.param("Ж" * 150 + ".log", "Ж" * 98 + ".log", id="long_cyrillic_by_bytes"),
        pytest.param("x" + "Ж" * 150 + ".log", "x" + "Ж" * 97 + ".log", id="no_half_characters"),
        pytest.param("y" * 195 + " " + "z" * 10 + ".log", "y" * 195 + ".log", id="cut_then_strip"),
        pytest.param("a" * 250 + "." + "b" * 20, "a" * 200, id="overlong_extension_is_stem"),
    ],
)  # fmt: skip
def test_sanitize_filename(raw, safe):
    assert sanitize_filename(raw) == safe


def test_sanitize_filename_uses_the_given_fallback():
    assert sanitize_filename("///", fallback="part-2.bin") == "part-2.bin"


UNSAFE_CHARS = set('/\\<>:"|?*\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069')


@given(st.text(st.characters(exclude_categories=()), max_size=400))  # surrogates included
def test_sanitized_names_are_inert(raw):
    safe = sanitize_filename(raw)
    assert safe
    assert len(safe.encode()) <= 200  # and it encodes at all
    assert not UNSAFE_CHARS & set(safe)
    assert not any(unicodedata.category(char) == "Cc" for char in safe)
    assert unicodedata.is_normalized("NFC", safe)
    assert safe == safe.strip(" .")
    assert sanitize_filename(safe) == safe


# ---------------------------------------------------------------------------------------------
# classify_attachment: real magic numbers, built here


def elf(e_type: int, *, big_endian: bool = False) -> bytes:
    ident = b"\x7fELF" + bytes([2, 2 if big_endian else 1, 1]) + b"\x00" * 9
    return ident + struct.pack(">H" if big_endian else "<H", e_type) + b"\x00" * 46


def bmp() -> bytes:
    return b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + struct.pack("<Iii", 40, 1, 1) + b"\x00" * 16


def pe() -> bytes:
    return b"MZ" + b"\x00" * 58 + struct.pack("<I", 64) + b"PE\x00\x00" + b"\x00" * 20


def zip_entry(name: bytes, data: bytes = b"") -> bytes:
    header = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, len(data), len(data),
                         len(name), 0)  # fmt: skip
    return header + name + data


def tar(name: bytes) -> bytes:
    block = bytearray(512)
    block[: len(name)] = name
    block[257:265] = b"ustar\x0000"
    return bytes(block)


def stamped(*lines: str, encoding: str = "utf-8") -> bytes:
    return "\n".join(lines).encode(encoding)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 13
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
MINIDUMP = b"MDMP\x93\xa7\x00\x00" + b"\x00" * 24
HPROF = b"JAVA PROFILE 1.0.2\x00\x00\x00\x00\x08"
DOCX = zip_entry(b"[Content_Types].xml", b"<?xml")
ODT = zip_entry(b"mimetype", b"application/vnd.oasis.opendocument.text")
PLAIN_ZIP = zip_entry(b"cubisio-server.log", b"2025-03-03 10:00:00 INFO start")
ISO_LOG = stamped(
    "2025-03-03 10:00:00,123 INFO  [main] Cubisio server starting",
    "2025-03-03 10:00:01,456 WARN  [pool-1] slow query: 2300 ms",
    "2025-03-03 10:00:02,789 ERROR [pool-2] report 42 failed",
)
OCTET = "application/octet-stream"
D, LG, SC, AR, CF, DC, OT = (
    ArtifactKind.DUMP, ArtifactKind.LOG, ArtifactKind.SCREENSHOT, ArtifactKind.ARCHIVE,
    ArtifactKind.CONFIG, ArtifactKind.DOCUMENT, ArtifactKind.OTHER,
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content_type", "head", "kind"),
    [
        # Dumps: by magic, whatever the name says.
        pytest.param("w3wp.dmp", OCTET, MINIDUMP, D, id="minidump"),
        pytest.param("crash.bin", OCTET, MINIDUMP, D, id="minidump_renamed"),
        pytest.param("screenshot.png", "image/png", MINIDUMP, D, id="minidump_named_png"),
        pytest.param("MEMORY.DMP", OCTET, b"PAGEDU64" + b"\x00" * 24, D, id="windows_full_dump"),
        pytest.param("java_pid4242.hprof", OCTET, HPROF, D, id="hprof"),
        pytest.param("heap.bin", OCTET, HPROF, D, id="hprof_renamed"),
        pytest.param("core", OCTET, elf(4), D, id="elf_core_little_endian"),
        pytest.param("core.1234", OCTET, elf(4, big_endian=True), D, id="elf_core_big_endian"),
        pytest.param("data", OCTET, elf(4), D, id="elf_core_without_name"),
        pytest.param("core.31337", OCTET, b"", D, id="core_name_no_bytes"),
        pytest.param("cubisio.mdmp", OCTET, b"", D, id="mdmp_extension_no_bytes"),
        pytest.param("report.log", OCTET, elf(2), OT, id="elf_program_named_log"),
        # Screenshots.
        pytest.param("error.txt", "text/plain", PNG, SC, id="png_named_txt"),
        pytest.param("image001.png", "image/png", PNG, SC, id="png"),
        pytest.param("pasted", "image/jpeg", JPEG, SC, id="jpeg_without_extension"),
        pytest.param("anim.gif", "image/gif", b"GIF89a\x01\x00", SC, id="gif"),
        pytest.param("shot.dat", OCTET, bmp(), SC, id="bmp_by_header"),
        pytest.param("scan.tif", "image/tiff", b"II*\x00\x08\x00\x00\x00", SC, id="tiff_le"),
        pytest.param("scan", OCTET, b"MM\x00*\x00\x00\x00\x08", SC, id="tiff_be"),
        pytest.param("x.bin", OCTET, b"RIFF\x24\x00\x00\x00WEBPVP8 ", SC, id="webp"),
        pytest.param("IMG_0001", OCTET, b"\x00\x00\x00\x18ftypheic\x00\x00", SC, id="heic"),
        pytest.param("SHOT.PNG", OCTET, b"", SC, id="upper_case_extension"),
        pytest.param("image", "image/png", b"\x00garbage", SC, id="image_type_last_resort"),
        # Archives, and the zips that are documents.
        pytest.param("workspace.zip", "application/zip", PLAIN_ZIP, AR, id="zip"),
        pytest.param("Рабочая область.zip", "application/zip", PLAIN_ZIP, AR, id="cyrillic_zip"),
        pytest.param("report.docx", "application/vnd.openxmlformats", DOCX, DC, id="docx"),
        pytest.param("Book1.xlsx", OCTET, PLAIN_ZIP, DC, id="xlsx_by_extension"),
        pytest.param("attachment", OCTET, DOCX, DC, id="ooxml_by_first_entry"),
        pytest.param("x.bin", OCTET, ODT, DC, id="odf_by_mimetype_entry"),
        pytest.param("plugin.jar", "application/java-archive", PLAIN_ZIP, AR, id="jar"),
        pytest.param("logs.tar.gz", "application/gzip", b"\x1f\x8b\x08\x00", AR, id="tar_gz"),
        pytest.param("server.log.gz", OCTET, b"\x1f\x8b\x08\x00", AR, id="gzipped_log"),
        pytest.param("dump.bz2", OCTET, b"BZh91AY&SY", AR, id="bzip2"),
        pytest.param("logs.xz", OCTET, b"\xfd7zXZ\x00\x00", AR, id="xz"),
        pytest.param("logs.7z", OCTET, b"7z\xbc\xaf\x27\x1c\x00\x04", AR, id="7z"),
        pytest.param("logs.rar", OCTET, b"Rar!\x1a\x07\x01\x00", AR, id="rar"),
        pytest.param("backup", OCTET, tar(b"var/log/cubisio.log"), AR, id="tar_by_ustar"),
        pytest.param("journal.zst", OCTET, b"\x28\xb5\x2f\xfd\x00", AR, id="zstd"),
        # Documents.
        pytest.param("spec.pdf", "application/pdf", b"%PDF-1.7\n", DC, id="pdf"),
        pytest.param("old.doc", "application/msword", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", DC, id="ole2"),
        pytest.param("letter.rtf", OCTET, b"{\\rtf1\\ansi", DC, id="rtf"),
        pytest.param("table.csv", "text/csv", b"a;b\n1;2\n", DC, id="csv"),
        pytest.param("notes.txt", "text/plain", b"just some notes", DC, id="plain_txt"),
        pytest.param("catalog.txt", "text/plain", b"items", DC, id="catalog_is_not_a_log"),
        pytest.param("BMW report.txt", "text/plain", b"BMW fleet report", DC, id="text_starting_with_bm"),
        pytest.param("file", "application/pdf", b"\x00", DC, id="pdf_type_last_resort"),
        # Logs.
        pytest.param("server.log", "text/plain", b"anything", LG, id="log_extension"),
        pytest.param("app.log", "text/plain", b"BM started\n", LG, id="text_log_starting_with_bm"),
        pytest.param("output.txt", "text/plain", ISO_LOG, LG, id="txt_with_iso_stamps"),
        pytest.param("error_log.txt", "text/plain", b"boom", LG, id="txt_named_log"),
        pytest.param("Журнал ошибок.txt", "text/plain", b"", LG, id="txt_named_zhurnal"),
        pytest.param("вывод.txt", "text/plain",
                     stamped("03.03.2025 10:00:00 старт", "03.03.2025 10:00:01 отчёт", "03.03.2025 10:00:02 сбой"),
                     LG, id="txt_with_russian_dates"),
        pytest.param("messages.txt", "text/plain",
                     stamped("Mar  3 10:00:00 host cubisio[42]: a", "Mar  3 10:00:01 host cubisio[42]: b",
                             "Mar  3 10:00:02 host kernel: c"),
                     LG, id="txt_with_syslog_stamps"),
        pytest.param("export.txt", "text/plain", b"\xff\xfe" + stamped(*ISO_LOG.decode().splitlines(), encoding="utf-16-le"),
                     LG, id="utf16_log_with_bom"),
        pytest.param("stdout", "text/plain", ISO_LOG, LG, id="no_extension_text_plain_stamps"),
        pytest.param("catalina.out", OCTET, b"", LG, id="out_extension"),
        pytest.param("System.evtx", OCTET, b"ElfFile\x00\x00\x00", LG, id="evtx_magic"),
        pytest.param("Application", OCTET, b"ElfFile\x00\x00\x00", LG, id="evtx_magic_without_name"),
        pytest.param("trace.etl", OCTET, b"\x00\x00\x00\x00", LG, id="etl"),
        # Configuration.
        pytest.param("settings.xml", "application/xml", b"<config/>", CF, id="xml"),
        pytest.param("cubisio.conf", "text/plain", b"port = 8080", CF, id="conf"),
        pytest.param("app.properties", "text/plain", b"a=b", CF, id="properties"),
        pytest.param("export.reg", OCTET, b"Windows Registry Editor", CF, id="reg"),
        pytest.param("config_report.txt", "text/plain", b"Server: 3.2.1", CF, id="config_report_txt"),
        pytest.param("Отчет о конфигурации.txt", "text/plain", b"", CF, id="russian_config_report"),
        pytest.param("main.workspace", OCTET, b"\x00\x01", CF, id="workspace_file"),
        # Nothing else applies.
        pytest.param("data.bin", OCTET, b"\x01\x02", OT, id="unknown_binary"),
        pytest.param("setup.exe", OCTET, pe(), OT, id="pe_executable"),
        pytest.param("screen.png", "image/png", pe(), OT, id="pe_named_png"),
        pytest.param("", "", b"", OT, id="nothing_at_all"),
    ],
)  # fmt: skip
def test_classify_attachment(name, content_type, head, kind):
    assert classify_attachment(name, content_type, head) == kind


@given(st.text(max_size=60), st.text(max_size=40), st.binary(max_size=600))
def test_classify_never_raises(name, content_type, head):
    assert classify_attachment(name, content_type, head) in set(ArtifactKind)
