"""The encrypted artifact store: round trips, streaming, tamper evidence, the key file."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.errors import TransientError
from storage.artifacts import ArtifactMissing, ArtifactStore
from storage.crypto import (
    CHUNK,
    HEADER,
    TAG,
    ArtifactCryptoError,
    ArtifactKey,
    create_key_file,
    load_key,
)


@pytest.fixture
def key(tmp_path) -> ArtifactKey:
    path = tmp_path / "secrets" / "artifacts.key"
    assert create_key_file(path)
    return load_key(path)


@pytest.fixture
def store(tmp_path, key) -> ArtifactStore:
    created = ArtifactStore(tmp_path / "artifacts", key)
    created.ensure()
    return created


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17], ids=str
)
def test_round_trip_at_chunk_edges(store, size):
    data = os.urandom(size)
    blob = store.put(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.size == size
    assert store.read(blob.sha256) == data


def test_the_file_on_disk_is_not_the_plaintext(store):
    data = b"Cubisio server log: password=hunter2 " * 1000
    blob = store.put(data)
    on_disk = store.path_for(blob.sha256).read_bytes()
    assert b"hunter2" not in on_disk
    assert on_disk.startswith(b"MAILDAE1")
    assert len(on_disk) == HEADER + len(data) + TAG  # one chunk, one tag


def test_same_bytes_stored_once(store):
    first = store.put(b"same dump")
    second = store.put(b"same dump")
    assert first == second
    files = [p for p in store.root.rglob("*") if p.is_file() and p.parent != store.tmp_dir]
    assert len(files) == 1
    assert list(store.tmp_dir.iterdir()) == []


def test_streaming_writer_matches_put(store):
    data = os.urandom(5 * CHUNK + 3)
    with store.writer() as writer:
        for start in range(0, len(data), 1000):
            writer.write(data[start : start + 1000])
        blob = writer.finish()
    assert store.read(blob.sha256) == data


def test_aborted_writer_leaves_nothing(store):
    with store.writer() as writer:
        writer.write(b"half a dump")
    assert list(store.tmp_dir.iterdir()) == []


def test_reader_seeks_like_a_file(store):
    data = bytes(range(256)) * 1000
    blob = store.put(data)
    with store.open(blob.sha256) as handle:
        handle.seek(CHUNK - 5)
        assert handle.read(10) == data[CHUNK - 5 : CHUNK + 5]
        handle.seek(-3, os.SEEK_END)
        assert handle.read() == data[-3:]
        handle.seek(0)
        assert handle.read(4) == data[:4]


def test_zipfile_reads_straight_from_the_encrypted_store(store):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("logs/server.log", "ERROR\n" * 50_000)
        archive.writestr("workspace.cbx", os.urandom(200_000))
    blob = store.put(buffer.getvalue())
    with store.open(blob.sha256) as handle, zipfile.ZipFile(handle) as archive:
        assert archive.namelist() == ["logs/server.log", "workspace.cbx"]
        assert archive.read("logs/server.log") == b"ERROR\n" * 50_000


@pytest.mark.parametrize("where", ["header", "first_chunk", "last_tag"])
def test_a_flipped_bit_is_refused_not_returned(store, where):
    data = os.urandom(2 * CHUNK + 100)
    blob = store.put(data)
    path = store.path_for(blob.sha256)
    raw = bytearray(path.read_bytes())
    offset = {"header": 20, "first_chunk": HEADER + 10, "last_tag": len(raw) - 1}[where]
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactCryptoError), store.open(blob.sha256) as handle:
        handle.read()


def test_truncation_at_a_chunk_boundary_is_detected(store):
    data = os.urandom(3 * CHUNK)
    blob = store.put(data)
    path = store.path_for(blob.sha256)
    raw = path.read_bytes()
    path.write_bytes(raw[: HEADER + 2 * (CHUNK + TAG)])  # the last chunk dropped
    with (
        pytest.raises(ArtifactCryptoError, match="failed authentication"),
        store.open(blob.sha256) as handle,
    ):
        handle.read()


def test_chunks_cannot_be_swapped(store):
    data = b"A" * CHUNK + b"B" * CHUNK + b"C"
    blob = store.put(data)
    path = store.path_for(blob.sha256)
    raw = path.read_bytes()
    size = CHUNK + TAG
    first, second = raw[HEADER : HEADER + size], raw[HEADER + size : HEADER + 2 * size]
    path.write_bytes(raw[:HEADER] + second + first + raw[HEADER + 2 * size :])
    with pytest.raises(ArtifactCryptoError), store.open(blob.sha256) as handle:
        handle.read()


def test_another_key_is_named_as_the_problem(tmp_path, store):
    blob = store.put(b"secret")
    other_path = tmp_path / "other.key"
    create_key_file(other_path)
    other = ArtifactStore(store.root, load_key(other_path))
    with pytest.raises(ArtifactCryptoError, match="encrypted with key id"):
        other.read(blob.sha256)


def test_missing_blob(store):
    with pytest.raises(ArtifactMissing):
        store.open("ab" * 32)


def test_key_file_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "k" / "artifacts.key"
    assert create_key_file(path)
    first = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not create_key_file(path)
    assert path.read_bytes() == first


def test_bad_key_files_are_refused_without_showing_them(tmp_path):
    path = tmp_path / "artifacts.key"
    path.write_text("not-a-key-but-a-secret-looking-string")
    with pytest.raises(ArtifactCryptoError) as caught:
        load_key(path)
    assert "secret-looking" not in str(caught.value)
    with pytest.raises(ArtifactCryptoError, match="maild init"):
        load_key(tmp_path / "absent.key")


def test_key_repr_hides_the_secret(key, caplog):
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("key is %r", key)
    assert key.secret.hex() not in caplog.text
    assert repr(key).startswith("ArtifactKey(id=")


def test_sync_refuses_when_a_blob_vanished(store):
    blob = store.put(b"purged meanwhile")
    store.path_for(blob.sha256).unlink()
    with pytest.raises(TransientError):
        store.sync()


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3 * CHUNK), cuts=st.lists(st.integers(1, 40_000), max_size=8))
def test_round_trip_property(tmp_path_factory, data, cuts):
    root = tmp_path_factory.mktemp("prop")
    create_key_file(root / "key")
    store = ArtifactStore(root / "store", load_key(root / "key"))
    store.ensure()
    with store.writer() as writer:
        position = 0
        for cut in cuts:
            writer.write(data[position : position + cut])
            position += cut
        writer.write(data[position:])
        blob = writer.finish()
    assert store.read(blob.sha256) == data
