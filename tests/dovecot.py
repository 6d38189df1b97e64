"""A throwaway Dovecot on a random loopback port: passwd-file user, Maildir in a temp folder.

Nothing of the system Dovecot is touched: base_dir, state_dir and logs live in the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

from tests.conftest import free_port

USER = "info@sis.ru"
PASSWORD = "s3cret-imap-pw"  # noqa: S105 - the throwaway test server's password
CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  mail_max_userip_connections = 100
  imap_capability = {capability}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def dovecot_missing_reason() -> str | None:
    if shutil.which("dovecot") is None:
        return "Dovecot is not installed (apt-get install dovecot-imapd; .ci/run does it)"
    if os.geteuid() != 0:
        return "the throwaway Dovecot runs as root (it drops to nobody for the mailbox)"
    return None


class Dovecot:
    def __init__(self, *, without_move: bool = False, tls: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="maild-dovecot-", dir="/tmp"))
        self.root.chmod(0o755)
        (self.root / "home").mkdir()
        shutil.chown(self.root / "home", "nobody", "nogroup")
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.password_file = self.root / "imap.pw"
        self.password_file.write_text(PASSWORD + "\n")
        self.port = free_port()
        # Without MOVE (and without IDLE) the source must fall back to COPY/EXPUNGE and polling.
        capability = "IMAP4rev1 UIDPLUS" if without_move else "+MOVE"
        self.tls_port = free_port() if tls else 0
        ssl_settings = self._make_certificate() if tls else "ssl = no"
        (self.root / "dovecot.conf").write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                capability=capability,
                ssl=ssl_settings,
                tls_port=self.tls_port,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def _make_certificate(self) -> str:
        """A self-signed certificate for 127.0.0.1; maild trusts it through ca_file."""
        self.certificate = self.root / "cert.pem"
        key = self.root / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(self.certificate)],
            check=True, capture_output=True,
        )  # fmt: skip
        return f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{key}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with self.client():
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Dovecot did not start: {(self.root / 'dovecot.log').read_text()}")

    def stop(self) -> None:
        """Stop the server and every connection it serves (clients see the drop)."""
        if self.process is not None:
            for child in _children(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.client() as client:
            for raw in messages:
                client.append(folder, raw)

    def count(self, folder: str) -> int:
        with self.client() as client:
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])

    def config_toml(self, **extra: object) -> str:
        lines = [
            "[inbound.imap]",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            f'user = "{USER}"',
            f'password_file = "{self.password_file}"',
        ]
        lines += [
            f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
            for key, value in extra.items()
        ]
        return "\n".join(lines) + "\n"
