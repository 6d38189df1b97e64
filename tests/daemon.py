"""`maild run` as a real process for end-to-end tests: init, start, wait for the listener,
SIGTERM at the end and a clean exit asserted (the log is shown when it is not)."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running_daemon(
    config: Path, log_path: Path, port: int, extra_env: dict[str, str] | None = None
) -> Iterator[None]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), "init"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "maild", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            wait_for_port(port)
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code: int | str = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = "killed after 30 s"
    assert code == 0, log_path.read_text(errors="replace")


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_port(port: int) -> None:
    def is_open():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=1) as client:
                return client.noop()[0] == 250
        except OSError:
            return False

    wait_for(is_open, what=f"SMTP on port {port}")
