"""Prometheus metrics of one maild process, and the HTTP endpoint that serves them.

Each `Metrics` has a registry of its own, never prometheus_client's global default, so tests
(and two daemons in one interpreter) get fresh counters. Queue depths are read from the
database at scrape time through a callback: a gauge updated by the worker would go stale the
moment the worker stops, which is exactly when the depth matters. A scrape never fails
because the database is away; `maild_queue_depths_up` says so instead.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PIPELINE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class QueueDepths:
    """What is waiting, read from the database at scrape time."""

    spool: int  # messages stored but not yet processed
    spool_oldest_seconds: float  # age of the oldest of them, 0.0 when none
    outbox: int  # outgoing mails due or waiting for a retry
    outbox_oldest_seconds: float
    outbox_failed: int  # outgoing mails that gave up (state failed)


class _QueueDepthsCollector(Collector):
    """Calls `depths()` on every scrape; a failure becomes `maild_queue_depths_up 0`, not a 500.

    No `describe()`: the registry then never calls `collect()` at registration, so building
    `Metrics` does not touch the database.
    """

    def __init__(self, depths: Callable[[], QueueDepths]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[Metric]:
        up = "maild_queue_depths_up", "1 when the queue depths could be read at this scrape."
        try:
            families = self._families(self._depths())
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
            # One line per failed scrape: with the database away this repeats every interval.
            log.warning(
                "queue depths unavailable for the metrics scrape: %s: %s", type(exc).__name__, exc
            )
            yield _gauge(*up, 0)
            return
        yield _gauge(*up, 1)
        yield from families

    @staticmethod
    def _families(depths: QueueDepths) -> list[Metric]:
        return [
            _gauge("maild_spool_depth", "Messages stored but not yet processed.", depths.spool),
            _gauge(
                "maild_spool_oldest_seconds",
                "Age of the oldest unprocessed message, 0 when none.",
                depths.spool_oldest_seconds,
            ),
            _gauge(
                "maild_outbox_depth", "Outgoing mails due or waiting for a retry.", depths.outbox
            ),
            _gauge(
                "maild_outbox_oldest_seconds",
                "Age of the oldest outgoing mail due or waiting, 0 when none.",
                depths.outbox_oldest_seconds,
            ),
            _gauge(
                "maild_outbox_failed",
                "Outgoing mails that gave up (state failed).",
                depths.outbox_failed,
            ),
        ]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    """All metrics of one process, registered in `registry` and nowhere else."""

    def __init__(
        self, role: str, version: str, depths: Callable[[], QueueDepths] | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.messages_received = Counter(
            "maild_messages_received", "Messages accepted, by source.", ["source"], registry=reg
        )
        self.decisions = Counter(
            "maild_decisions",
            "Pipeline decisions, by action and reason.",
            ["action", "reason"],
            registry=reg,
        )
        self.pipeline_seconds = Histogram(
            "maild_pipeline_seconds",
            "Time to process one message through the pipeline.",
            buckets=PIPELINE_BUCKETS,
            registry=reg,
        )
        self.deliveries = Counter(
            "maild_deliveries",
            "Outgoing delivery attempts, by result (sent, retry, failed).",
            ["result"],
            registry=reg,
        )
        self.sla_breaches = Counter(
            "maild_sla_breaches",
            "SLA deadlines missed, by kind (first_response, resolution).",
            ["kind"],
            registry=reg,
        )
        self.imap_reconnects = Counter(
            "maild_imap_reconnects",
            "IMAP connections re-established, by mailbox.",
            ["mailbox"],
            registry=reg,
        )
        self.build_info = Gauge(
            "maild_build_info",
            "Version and role of this process; always 1.",
            ["version", "role"],
            registry=reg,
        )
        self.build_info.labels(version=version, role=role).set(1)
        if depths is not None:
            reg.register(_QueueDepthsCollector(depths))

    def render(self) -> bytes:
        """The text exposition format, as served on /metrics."""
        return generate_latest(self.registry)


_LISTEN = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]\s]+)):(?P<port>[0-9]{1,5})")


def parse_listen(listen: str) -> tuple[str, int, socket.AddressFamily]:
    """`host:port` or `[v6]:port` to (host, port, family); a typo fails loudly at startup."""
    match = _LISTEN.fullmatch(listen)
    port = int(match["port"]) if match else -1
    if match is None or port > 65535:
        raise ValueError(
            f"metrics listen address {listen!r}: expected host:port or [ipv6]:port "
            "with a port from 0 to 65535, e.g. 127.0.0.1:9464 or [::1]:9464"
        )
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(match["v6"])
        except ValueError:
            raise ValueError(
                f"metrics listen address {listen!r}: {match['v6']!r} is not an IPv6 address"
            ) from None
        return match["v6"], port, socket.AF_INET6
    return match["host"], port, socket.AF_INET


class _Server(ThreadingHTTPServer):
    """Knows its `Metrics`; binds without the reverse DNS lookup HTTPServer would make."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], family: socket.AddressFamily, metrics: Metrics
    ) -> None:
        self.address_family = family  # read by TCPServer.__init__ to create the socket
        self.metrics = metrics
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    """GET /metrics only; no access log (a scrape every 15 s is noise)."""

    timeout = 10  # a client that stalls must not hold a thread for ever

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = cast(_Server, self.server).metrics.render()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class MetricsServer:
    """The HTTP endpoint: GET /metrics returns render(); runs in a daemon thread."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        self._metrics = metrics
        self._host, self._port, self._family = parse_listen(listen)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Bind and serve (once per instance); an address in use raises OSError here."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("MetricsServer already started")
            server = _Server((self._host, self._port), self._family, self._metrics)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="maild-metrics",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): with port 0 in `listen`, the port the system picked."""
        if self._server is None:
            raise RuntimeError("MetricsServer not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Shut down and join the thread; safe to call twice, or before start()."""
        with self._lock:
            server, thread = self._server, self._thread
            self._thread = None
            if server is None or thread is None:
                return
            server.shutdown()
            server.server_close()
            thread.join()
