"""A bug outside one message's isolation must not silently stop the spool worker."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from maild import daemon as daemon_module
from storage.models import Ticket
from storage.spool import SpoolMeta
from tests.mailbuilder import build_mail


def test_spool_worker_survives_an_unexpected_error(app, monkeypatch):
    # On PostgreSQL the worker drains the shared spool (the file is moved into it at start).
    drain_name = "drain_database_spool" if app.shared_spool is not None else "drain_spool"
    real_drain = getattr(daemon_module, drain_name)
    calls = []

    def drain_with_a_bug_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug outside the per-message isolation")
        return real_drain(*args, **kwargs)

    monkeypatch.setattr(daemon_module, drain_name, drain_with_a_bug_once)
    monkeypatch.setattr(daemon_module, "ERROR_BACKOFF_SECONDS", 0.1)
    app.spool.put(build_mail(), SpoolMeta(source="smtp", received_at="2026-03-03T09:00:00Z"))
    worker = daemon_module.Daemon(app)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with app.sessions() as session:
                if session.scalar(select(func.count(Ticket.id))):
                    break
            time.sleep(0.05)
        with app.sessions() as session:
            assert session.scalar(select(func.count(Ticket.id))) == 1
        assert all(thread.is_alive() for thread in worker.threads)
    finally:
        worker.stop()
    assert len(calls) >= 2
