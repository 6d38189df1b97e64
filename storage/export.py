"""`maild artifacts get`: an artifact decrypted to a file, checked against its sha256 on the way.

The file appears under its final name only once every chunk has been authenticated and the
plaintext hashes to the name it was stored under, so a damaged store never yields a file that
looks complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm import tqdm

from maild.errors import MaildError
from storage.artifacts import ArtifactCryptoError, ArtifactMissing, ArtifactStore
from storage.models import Artifact, Attachment

_SHA_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_COPY_CHUNK = 1024 * 1024
_MAX_ID = 2**31 - 1  # attachments.id is a 32-bit integer in PostgreSQL


class ArtifactNotAvailable(MaildError):
    """The artifact asked for does not exist, was refused, purged, or cannot be decrypted."""


def resolve_artifact(session: Session, wanted: str) -> tuple[str, str]:
    """An attachment number or a sha256 (at least 8 hex digits) to (sha256, display name).

    Eight digits or more may be either (a sha256 prefix can be all digits): an attachment of
    that number wins, else the prefix is looked up."""
    attachment = None
    if wanted.isdigit() and int(wanted) <= _MAX_ID:
        attachment = session.get(Attachment, int(wanted))
    if wanted.isdigit() and (len(wanted) < 8 or attachment is not None):
        if attachment is None:
            raise ArtifactNotAvailable(f"no attachment #{wanted}")
        if attachment.artifact_sha256 is None:
            raise ArtifactNotAvailable(
                f"attachment #{wanted} ({attachment.filename}) was refused "
                f"({attachment.refused_reason}): nothing was stored"
            )
        sha256, name = attachment.artifact_sha256, attachment.filename
    elif _SHA_PREFIX.fullmatch(wanted.lower()):
        found = session.scalars(
            select(Artifact.sha256).where(Artifact.sha256.startswith(wanted.lower())).limit(2)
        ).all()
        if len(found) != 1:
            raise ArtifactNotAvailable(
                f"sha256 prefix {wanted} matches {'no' if not found else 'more than one'} artifact"
            )
        sha256, name = found[0], found[0]
    else:
        raise ArtifactNotAvailable(
            f"{wanted!r} is neither an attachment number nor a sha256 (8+ hex digits)"
        )
    artifact = session.get(Artifact, sha256)
    if artifact is not None and artifact.purged_at is not None:
        raise ArtifactNotAvailable(
            f"{name} was purged on {artifact.purged_at:%Y-%m-%d} (retention period over)"
        )
    return sha256, name


def export_artifact(
    store: ArtifactStore, sha256: str, out: str, *, force: bool = False, progress: bool = False
) -> int:
    """Decrypt into `out` ("-" = stdout); returns the number of bytes written."""
    if out == "-":
        return _copy_verified(store, sha256, sys.stdout.buffer, progress=False)
    target = Path(out)
    if target.exists() and not force:
        raise ArtifactNotAvailable(f"{target} exists; use --force to overwrite it")
    partial = target.with_name(f".{target.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            size = _copy_verified(store, sha256, handle, progress=progress)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size


def _copy_verified(store: ArtifactStore, sha256: str, sink: IO[bytes], *, progress: bool) -> int:
    digest = hashlib.sha256()
    written = 0
    try:
        source = store.open(sha256)
    except (ArtifactMissing, ArtifactCryptoError) as error:
        raise ArtifactNotAvailable(str(error)) from None
    total = source.seek(0, os.SEEK_END)
    source.seek(0)
    with source, tqdm(total=total, unit="B", unit_scale=True, disable=not progress) as bar:
        while True:
            try:
                chunk = source.read(_COPY_CHUNK)
            except ArtifactCryptoError as error:
                raise ArtifactNotAvailable(str(error)) from None
            if not chunk:
                break
            digest.update(chunk)
            sink.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() != sha256:
        raise ArtifactNotAvailable(
            f"artifact {sha256} does not match its sha256: the store is damaged"
        )
    return written
