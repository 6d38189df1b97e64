"""Archive listings: real zip/tar/gzip built here, hostile ones included, never unpacked to disk."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.archives import (
    ArchiveEntry,
    ArchiveLimits,
    ArchiveListing,
    detect_archive_format,
    list_archive,
)

MIB = 2**20
BOMB_BYTES = 200 * MIB


# Builders.


def make_zip(files, *, compression=zipfile.ZIP_DEFLATED):
    """A zip of (name, bytes) pairs; a name ending in "/" is a directory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar(files, mode="w"):
    """A tar (optionally compressed, by mode) of (name, bytes) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_tar_with(members, mode="w"):
    """A tar of ready TarInfo headers without data (links, directories)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for member in members:
            archive.addfile(member)
    return buffer.getvalue()


def link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def central_records(data):
    """Offsets of each central directory record, found the way a reader would."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        position = archive.start_dir
        infos = archive.infolist()
    offsets = []
    for _ in infos:
        assert data[position : position + 4] == b"PK\x01\x02"
        offsets.append(position)
        name_size, extra_size, comment_size = struct.unpack_from("<3H", data, position + 28)
        position += 46 + name_size + extra_size + comment_size
    return offsets, infos


def with_flag_bits(data, index, bits):
    """Set general-purpose flag bits in both headers, as an encrypting zip tool would."""
    patched = bytearray(data)
    offsets, infos = central_records(data)
    for at in (offsets[index] + 8, infos[index].header_offset + 6):
        (flags,) = struct.unpack_from("<H", patched, at)
        struct.pack_into("<H", patched, at, flags | bits)
    return bytes(patched)


def explorer_zip(names):
    """A zip as Windows Explorer on a Russian system writes it: cp866 bytes, no UTF-8 flag.

    zipfile always writes non-ASCII names as flagged UTF-8, so the entries are written under
    ASCII placeholders of the same byte length and the raw cp866 bytes are put in afterwards.
    """
    raw_names = [name.encode("cp866") for name in names]
    placeholders = [
        f"#{index}#".ljust(len(raw), "_").encode() for index, raw in enumerate(raw_names)
    ]
    data = make_zip([(placeholder.decode(), b"data") for placeholder in placeholders])
    for placeholder, raw in zip(placeholders, raw_names, strict=True):
        assert data.count(placeholder) == 2  # local header and central directory
        data = data.replace(placeholder, raw)
    return data


def listing_of(data, filename, limits=None):
    result = list_archive(io.BytesIO(data), filename, limits or ArchiveLimits())
    assert isinstance(result, ArchiveListing)
    return result


def names(listing):
    return [entry.name for entry in listing.entries]


def write_zero_stream(handle, total):
    chunk = bytes(MIB)
    for _ in range(total // MIB):
        handle.write(chunk)


class Zeros(io.RawIOBase):
    """A readable stream of `size` zero bytes, so big inputs never sit in memory."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """200 MB of zeros deflated into one entry: about 200 KB on disk."""
    path = tmp_path_factory.mktemp("bombs") / "zeros.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        write_zero_stream(member, BOMB_BYTES)
    return path


@pytest.fixture(scope="module")
def tar_gz_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bombs") / "zeros.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("zeros.bin")
        info.size = BOMB_BYTES
        archive.addfile(info, io.BufferedReader(Zeros(BOMB_BYTES)))
        archive.addfile(tarfile.TarInfo("after.txt"))
    return path


@pytest.fixture(scope="module")
def gz_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bombs") / "zeros.bin.gz"
    with gzip.open(path, "wb") as handle:
        write_zero_stream(handle, BOMB_BYTES)
    return path


# Format detection.


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (make_zip([("a.txt", b"a")]), "renamed.bin", "zip"),
        (make_zip([]), "empty.dat", "zip"),
        (make_tar([("a.txt", b"a")]), "noext", "tar"),
        (make_tar([("a.txt", b"a")], "w:gz"), "x.gz", "tar.gz"),
        (gzip.compress(b"just a log line\n" * 100), "log.txt.gz", "gz"),
        (make_tar([("a.txt", b"a")], "w:bz2"), "x", "tar.bz2"),
        (make_tar([("a.txt", b"a")], "w:xz"), "x", "tar.xz"),
        (b"garbage", "report.ZIP", "zip"),
        (b"garbage", "backup.tgz", "tar.gz"),
        (b"garbage", "backup.tar.bz2", "tar.bz2"),
        (b"garbage", "backup.txz", "tar.xz"),
        (b"garbage", "dump.tar", "tar"),
        (b"garbage", "old.gz", "gz"),
        (b"hello, this is text", "notes.txt", None),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "screenshot.png", None),
        (bytes(4096), "disk.img", None),
        (b"", "", None),
    ],
    ids=lambda value: value if isinstance(value, str) or value is None else None,
)
def test_detect_archive_format(head, filename, expected):
    assert detect_archive_format(head[:4096], filename) == expected


def test_detect_trusts_bytes_over_name():
    assert detect_archive_format(make_zip([("a", b"a")]), "archive.tar.gz") == "zip"


# Ordinary archives.


def test_zip_with_russian_utf8_names():
    files = [("Отчёт/", b""), ("Отчёт/журнал ошибок.log", b"x" * 1000), ("readme.txt", b"hi")]
    listing = listing_of(make_zip(files), "архив.zip")
    assert listing.format == "zip"
    assert names(listing) == ["Отчёт/", "Отчёт/журнал ошибок.log", "readme.txt"]
    assert [entry.is_dir for entry in listing.entries] == [True, False, False]
    assert listing.entries[1].size == 1000
    assert listing.entries[1].compressed_size is not None
    assert listing.entries[1].compressed_size < 1000
    assert listing.entry_count == 3
    assert listing.total_size == 1002
    assert listing.flags == ()
    assert listing.error is None
    assert not listing.is_bomb


def test_zip_made_by_windows_explorer_with_cp866_names():
    wanted = ["Журнал событий.evtx", "Скриншот ошибки 1С.png"]
    data = explorer_zip(wanted)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert not archive.infolist()[0].flag_bits & 0x800
        assert archive.namelist() != wanted  # zipfile alone shows cp437 mojibake
    assert names(listing_of(data, "логи.zip")) == wanted


def test_western_cp437_names_stay_cp437():
    raw = "Müller.txt".encode("cp437")
    data = make_zip([("#0#_______", b"data")]).replace(b"#0#_______", raw)
    assert names(listing_of(data, "a.zip")) == ["Müller.txt"]


def test_info_zip_unicode_path_extra_wins_over_legacy_name():
    legacy = b"_legacy_.txt"
    wanted = "Протокол.txt"
    body = struct.pack("<BI", 1, zlib.crc32(legacy)) + wanted.encode()
    info = zipfile.ZipInfo(legacy.decode())
    info.extra = struct.pack("<HH", 0x7075, len(body)) + body
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, b"data")
    assert names(listing_of(buffer.getvalue(), "a.zip")) == [wanted]


@pytest.mark.parametrize(
    ("mode", "filename", "expected_format"),
    [
        ("w", "logs.tar", "tar"),
        ("w:gz", "logs.tar.gz", "tar.gz"),
        ("w:bz2", "logs.tar.bz2", "tar.bz2"),
        ("w:xz", "logs.tar.xz", "tar.xz"),
    ],
)
def test_tar_family(mode, filename, expected_format):
    directory = tarfile.TarInfo("var/log")
    directory.type = tarfile.DIRTYPE
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        archive.addfile(directory)
        for name, data in [("var/log/syslog", b"line\n" * 300), ("var/log/Сервер.log", b"ok")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    listing = listing_of(buffer.getvalue(), filename)
    assert listing.format == expected_format
    assert names(listing) == ["var/log", "var/log/syslog", "var/log/Сервер.log"]
    assert [entry.size for entry in listing.entries] == [0, 1500, 2]
    assert [entry.is_dir for entry in listing.entries] == [True, False, False]
    assert all(entry.compressed_size is None for entry in listing.entries)
    assert listing.total_size == 1502
    assert listing.flags == ()


def test_single_gzip_uses_name_from_header():
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="application.log", mode="wb", fileobj=buffer) as handle:
        handle.write(b"INFO started\n" * 1000)
    listing = listing_of(buffer.getvalue(), "attachment.gz")
    assert listing.format == "gz"
    assert listing.entries == (
        ArchiveEntry(
            name="application.log",
            size=13000,
            compressed_size=len(buffer.getvalue()),
            is_dir=False,
            depth=0,
            unsafe_path=False,
            encrypted=False,
        ),
    )
    assert listing.flags == ()


def test_single_gzip_without_header_name_uses_attachment_name():
    listing = listing_of(gzip.compress(b"payload"), "dump.DMP.gz")
    assert names(listing) == ["dump.DMP"]
    assert listing.entries[0].size == 7


def test_gzip_of_a_zip_lists_the_zip_inside():
    inner = make_zip([("inside.txt", b"hello")])
    listing = listing_of(gzip.compress(inner), "bundle.zip.gz")
    assert [(entry.name, entry.depth) for entry in listing.entries] == [
        ("bundle.zip", 0),
        ("inside.txt", 1),
    ]


def test_zip_with_prepended_stub_like_a_self_extractor():
    data = b"MZ" + bytes(5000) + make_zip([("setup.ini", b"[x]")])
    assert names(listing_of(data, "setup.zip")) == ["setup.ini"]


def test_empty_zip():
    listing = listing_of(make_zip([]), "empty.zip")
    assert (listing.entries, listing.entry_count, listing.flags) == ((), 0, ())


def test_control_characters_are_removed_from_names():
    listing = listing_of(make_zip([("bad\x1b[31mname\x7f\x85.txt\u202e", b"x")]), "a.zip")
    assert names(listing) == ["bad[31mname.txt"]


def test_nul_in_zip_name_cuts_it_like_zipfile():
    data = make_zip([("invoice.exe_ABCD.txt", b"x")]).replace(b"_ABCD", b"\x00ABCD")
    assert names(listing_of(data, "a.zip")) == ["invoice.exe"]


def test_listing_keeps_max_listed_entries_but_counts_all():
    files = [(f"file{index:02}.txt", b"x") for index in range(30)]
    listing = listing_of(make_zip(files), "a.zip", ArchiveLimits(max_listed=10))
    assert len(listing.entries) == 10
    assert listing.entry_count == 30
    assert listing.total_size == 30
    assert listing.flags == ("truncated_listing",)
    assert not listing.is_bomb


# Nesting.


def test_zip_in_zip_is_listed_at_depth_one():
    inner = make_zip([("inner/config.xml", b"<x/>"), ("inner/readme.txt", b"hi")])
    outer = make_zip([("logs.zip", inner), ("notes.txt", b"n")])
    listing = listing_of(outer, "outer.zip")
    assert [(entry.name, entry.depth) for entry in listing.entries] == [
        ("logs.zip", 0),
        ("inner/config.xml", 1),
        ("inner/readme.txt", 1),
        ("notes.txt", 0),
    ]
    assert listing.entry_count == 4
    assert listing.flags == ()


def test_tar_gz_in_zip_and_zip_in_tar_gz_are_listed():
    tar_gz = make_tar([("etc/app.conf", b"k=v")], "w:gz")
    outer = make_zip([("backup.tgz", tar_gz)], compression=zipfile.ZIP_BZIP2)
    assert [(e.name, e.depth) for e in listing_of(outer, "o.zip").entries] == [
        ("backup.tgz", 0),
        ("etc/app.conf", 1),
    ]
    outer = make_tar([("support.zip", make_zip([("a.txt", b"a")]))], "w:gz")
    assert [(e.name, e.depth) for e in listing_of(outer, "o.tar.gz").entries] == [
        ("support.zip", 0),
        ("a.txt", 1),
    ]


def test_nested_archive_found_by_magic_even_when_renamed():
    outer = make_zip([("data.bin", make_zip([("secret.txt", b"s")]))])
    assert names(listing_of(outer, "o.zip")) == ["data.bin", "secret.txt"]


def nest(levels):
    data = make_zip([("leaf.txt", b"leaf")])
    for level in range(levels):
        data = make_zip([(f"level{level}.zip", data)])
    return data


def test_nesting_beyond_max_depth_is_flagged_too_deep():
    listing = listing_of(nest(3), "deep.zip", ArchiveLimits(max_depth=1))
    assert [(entry.name, entry.depth) for entry in listing.entries] == [
        ("level2.zip", 0),
        ("level1.zip", 1),
    ]
    assert listing.flags == ("too_deep",)
    assert listing.is_bomb


def test_nesting_within_max_depth_is_not_flagged():
    listing = listing_of(nest(3), "deep.zip", ArchiveLimits(max_depth=3))
    assert [entry.depth for entry in listing.entries] == [0, 1, 2, 3]
    assert listing.flags == ()


def test_nested_archive_larger_than_max_nested_bytes_is_not_opened():
    inner = make_zip([("big.bin", os.urandom(5000))], compression=zipfile.ZIP_STORED)
    listing = listing_of(
        make_zip([("big.zip", inner)]), "o.zip", ArchiveLimits(max_nested_bytes=1000)
    )
    assert names(listing) == ["big.zip"]
    assert listing.flags == ()


def test_42_zip_like_fan_out_finishes_and_is_flagged():
    data = make_zip([("0.bin", bytes(4 * MIB))])  # 4 MiB leaf, a few KB deflated
    for _ in range(5):
        data = make_zip([(f"lib{index}.zip", data) for index in range(16)])
    listing = listing_of(data, "42.zip")
    assert listing.is_bomb
    assert {"too_deep", "too_many_entries"} & set(listing.flags)
    assert len(listing.entries) <= 1000


def test_nested_double_gzip_bomb_is_flagged():
    inner = gzip.compress(bytes(64 * MIB), compresslevel=9)  # ~64 KB
    outer = gzip.compress(inner)
    listing = listing_of(outer, "logs.gz.gz")
    assert "bomb_ratio" in listing.flags


# Bombs.


def test_zip_bomb_is_flagged_from_declared_sizes_without_decompressing(zip_bomb):
    tracemalloc.start()
    try:
        with zip_bomb.open("rb") as stream:
            listing = list_archive(stream, zip_bomb.name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert listing is not None
    assert zip_bomb.stat().st_size < 2 * MIB
    assert names(listing) == ["zeros.bin"]
    assert listing.total_size == BOMB_BYTES
    assert listing.flags == ("bomb_ratio",)
    assert listing.is_bomb
    assert peak < 8 * MIB


def test_tar_gz_bomb_stops_at_the_budget(tar_gz_bomb):
    tracemalloc.start()
    try:
        with tar_gz_bomb.open("rb") as stream:
            listing = list_archive(stream, tar_gz_bomb.name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert listing is not None
    assert listing.format == "tar.gz"
    assert names(listing) == ["zeros.bin"]  # "after.txt" lies beyond the budget
    assert listing.entries[0].size == BOMB_BYTES
    assert listing.flags == ("bomb_ratio",)
    assert peak < 8 * MIB


def test_single_gzip_bomb_stops_at_the_budget(gz_bomb):
    with gz_bomb.open("rb") as stream:
        listing = list_archive(stream, gz_bomb.name)
    assert listing is not None
    assert listing.format == "gz"
    assert names(listing) == ["zeros.bin"]
    # The size is what was read before the budget (200 x the compressed size) ran out.
    budget = gz_bomb.stat().st_size * 200
    assert budget - 64 * 1024 <= listing.entries[0].size <= budget < BOMB_BYTES
    assert listing.flags == ("bomb_ratio",)


def test_decompression_budget_has_a_floor_for_small_compressible_files():
    listing = listing_of(make_tar([("log.txt", b"=" * 500_000)], "w:gz"), "small.tar.gz")
    assert listing.flags == ()


def test_declared_total_over_max_total_bytes_is_flagged():
    files = [(f"part{index}.bin", bytes(MIB)) for index in range(3)]
    limits = ArchiveLimits(max_total_bytes=2 * MIB, max_ratio=1e9)
    assert listing_of(make_zip(files), "a.zip", limits).flags == ("bomb_total_size",)


@pytest.mark.parametrize("filename", ["many.zip", "many.tar", "many.tar.gz"])
def test_too_many_entries_is_flagged_and_truncated(filename):
    files = [(f"f{index:02}.txt", b"x") for index in range(60)]
    data = (
        make_zip(files)
        if filename.endswith(".zip")
        else make_tar(files, "w:gz" if filename.endswith(".gz") else "w")
    )
    listing = listing_of(data, filename, ArchiveLimits(max_entries=50))
    assert len(listing.entries) == 50
    assert names(listing)[-1] == "f49.txt"
    # A zip declares its count in the end record; a tar is only known to have more.
    assert listing.entry_count == (60 if filename.endswith(".zip") else 51)
    assert listing.flags == ("too_many_entries", "truncated_listing")
    assert listing.is_bomb


# Path traversal and encryption.


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/abs",
        "C:\\x",
        "c:/Windows/System32/evil.dll",
        "\\\\server\\share\\x",
        "logs/..\\..\\boot.ini",
        "a/.. /b",
        "ok/.\x01./x",
    ],
)
def test_path_traversal_names_in_zip_are_flagged(name):
    listing = listing_of(make_zip([("fine.txt", b"x"), (name, b"x")]), "a.zip")
    assert [entry.unsafe_path for entry in listing.entries] == [False, True]
    assert listing.flags == ("unsafe_paths",)
    assert not listing.is_bomb


@pytest.mark.parametrize(
    "name", ["a..b.txt", "..hidden", "dir/...txt", "x/y/z.tar.gz", "./local.txt"]
)
def test_dots_that_do_not_climb_are_safe(name):
    assert listing_of(make_zip([(name, b"x")]), "a.zip").flags == ()


@pytest.mark.parametrize(
    ("member", "unsafe"),
    [
        (link("passwd", "/etc/passwd"), True),
        (link("conf/link", "../../etc/shadow"), True),
        (link("conf/link", "..\\..\\windows"), True),
        (link("hard", "../outside", tarfile.LNKTYPE), True),
        (link("a/b/c", "../../../x"), True),
        (link("a/b/c", "../sibling"), False),
        (link("a/b/c", "d/e"), False),
        (link("a/hard", "a/file", tarfile.LNKTYPE), False),
        (tarfile.TarInfo("../escape.txt"), True),
        (tarfile.TarInfo("/etc/cron.d/job"), True),
    ],
)
def test_tar_links_and_names_escaping_the_tree_are_flagged(member, unsafe):
    listing = listing_of(make_tar_with([member], "w:gz"), "links.tar.gz")
    assert listing.entries[0].unsafe_path is unsafe
    assert listing.flags == (("unsafe_paths",) if unsafe else ())


@pytest.mark.parametrize(
    ("name", "target", "unsafe"),
    [("passwd", "/etc/passwd", True), ("a/up", "../../x", True), ("a/b", "../c", False)],
)
def test_zip_symlink_escaping_the_tree_is_flagged(name, target, unsafe):
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, as Info-ZIP's "zip --symlinks" writes it
    info.external_attr = 0o120777 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(info, target)
    listing = listing_of(buffer.getvalue(), "links.zip")
    assert listing.entries[0].unsafe_path is unsafe


def test_encrypted_zip_entry_is_flagged():
    data = make_zip([("public.txt", b"p"), ("secret.txt", b"s")])
    listing = listing_of(with_flag_bits(data, 1, 0x1), "a.zip")
    assert [entry.encrypted for entry in listing.entries] == [False, True]
    assert listing.flags == ("encrypted_entries",)


def test_encrypted_nested_archive_is_not_opened():
    data = make_zip([("inner.zip", make_zip([("x", b"x")]))])
    listing = listing_of(with_flag_bits(data, 0, 0x1), "a.zip")
    assert names(listing) == ["inner.zip"]


# Broken input and non-archives.


def assert_corrupt(listing, archive_format):
    assert listing.format == archive_format
    assert listing.flags == ("corrupt",)
    assert listing.error
    assert listing.entries == ()


def test_zip_with_truncated_central_directory_is_corrupt():
    data = make_zip([(f"f{index}.txt", b"x" * 100) for index in range(5)])
    offsets, _ = central_records(data)
    end_record = data[data.rindex(b"PK\x05\x06") :]
    assert_corrupt(listing_of(data[: offsets[2] + 20] + end_record, "a.zip"), "zip")
    assert_corrupt(listing_of(data[: offsets[2] + 20], "a.zip"), "zip")


def test_random_bytes_named_zip_are_corrupt():
    listing = listing_of(os.urandom(10_000), "invoice.zip")
    assert_corrupt(listing, "zip")
    assert "central directory" in listing.error


@pytest.mark.parametrize(
    ("filename", "archive_format"),
    [("x.tar.gz", "tar.gz"), ("x.tar.bz2", "tar.bz2"), ("x.tar.xz", "tar.xz"), ("x.gz", "gz")],
)
def test_random_bytes_with_archive_names_are_corrupt(filename, archive_format):
    assert_corrupt(listing_of(b"\x00not really" * 100, filename), archive_format)


def test_truncated_tar_gz_keeps_entries_read_before_the_damage():
    data = make_tar([("a.txt", b"a"), ("b.bin", os.urandom(100_000))], "w:gz")
    listing = listing_of(data[: len(data) // 2], "x.tar.gz")
    assert listing.format == "tar.gz"
    assert "corrupt" in listing.flags
    assert names(listing)[:1] == ["a.txt"]


def test_oversized_tar_long_name_header_is_refused():
    info = tarfile.TarInfo("x" * 200_000)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(info)
    assert_corrupt(listing_of(buffer.getvalue(), "long.tar"), "tar")


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"Hello, this is a plain text attachment.\r\n", "readme.txt"),
        (b"\x89PNG\r\n\x1a\n" + bytes(2000), "screen.png"),
        (b"", "empty"),
        (bz2.compress(b"not a tar, just text" * 50), "log.txt.bz2"),
        (lzma.compress(b"not a tar, just text" * 50), "log.txt.xz"),
    ],
)
def test_not_an_archive_gives_none(data, filename):
    assert list_archive(io.BytesIO(data), filename) is None


def test_stream_position_does_not_matter():
    stream = io.BytesIO(make_zip([("a.txt", b"a")]))
    stream.seek(7)
    listing = list_archive(stream, "a.zip")
    assert listing is not None
    assert names(listing) == ["a.txt"]


# Fuzzing: mutated archives never make the lister raise.

SEEDS = [
    (make_zip([("Отчёт.txt", b"x" * 300), ("inner.zip", make_zip([("a", b"a" * 50)]))]), "s.zip"),
    (make_tar([("a.txt", b"a" * 300), ("dir/b.log", b"b" * 700)], "w:gz"), "s.tar.gz"),
]


@st.composite
def mutated_archives(draw):
    data, filename = draw(st.sampled_from(SEEDS))
    data = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        position = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and data:
            data[position] = draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=64))]
        else:
            del data[position:]
    return bytes(data), filename


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_archives())
def test_mutated_archives_never_raise(case):
    data, filename = case
    listing = list_archive(io.BytesIO(data), filename)
    assert listing is None or isinstance(listing, ArchiveListing)
    if listing is not None:
        assert len(listing.entries) <= listing.entry_count
        assert len(set(listing.flags)) == len(listing.flags)
        assert ("corrupt" in listing.flags) == (listing.error is not None)
